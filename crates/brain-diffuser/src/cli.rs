//! The `brain-diffuser` command line: its arguments ([`Cli`]), their checks ([`Cli::validate`]) and
//! how errors are printed ([`error_chain`]).
//!
//! The definitions live in the library, not in the binary, so that tests can parse arbitrary
//! arguments with [`clap::Parser::try_parse_from`] and run the same checks the binary runs before
//! any step. Every numeric argument has a range checked by clap; what clap cannot check (duplicate
//! subjects, paths that point at the wrong kind of thing, devices this machine lacks) is checked by
//! [`Cli::validate`], whose errors name the argument and what was expected.

use std::error::Error;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use clap::builder::RangedU64ValueParser;
use clap::{Args, Parser, Subcommand};

use crate::TargetGroup;
use crate::report::{MAX_CELL, MIN_CELL};
use crate::runtime::{DeviceError, check_device, parse_device_name};
use crate::shard::Shard;
use crate::workflow::Variant;

/// The largest `evaluate --batch-size`.
pub const MAX_BATCH_SIZE: u64 = 1024;
/// The protocols `evaluate --protocols` accepts (as `evaluation.protocols`).
pub const PROTOCOLS: [&str; 2] = ["brain-diffuser", "mindeye"];

/// The command line.
#[derive(Parser, Debug)]
#[command(
    name = "brain-diffuser",
    version,
    about = "Reconstruct the images a person saw from their fMRI (Brain-Diffuser, Ozcelik & VanRullen 2023)",
    long_about = "Reconstruct the images a person saw from their NSD fMRI (Brain-Diffuser, Ozcelik & VanRullen \
                  2023).\n\nRun the steps in order: prepare, extract, fit, predict, reconstruct, evaluate; then \
                  ablate, average, roi, weights-roi, report. Every step resumes an interrupted run. Try it \
                  without data: `brain-diffuser demo --out demo` prints the commands to run."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes (before or after its name).
#[derive(Args, Debug, Clone)]
pub struct Global {
    /// Run folder: every step writes below it.
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_RUN", default_value = "runs/brain-diffuser")]
    pub run: PathBuf,
    /// Configuration (TOML; see configs/paper.toml). Default: the run's config.toml, else the paper's.
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    /// The NSD root folder (holding nsddata/, nsddata_betas/, nsddata_stimuli/).
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_NSD", default_value = "nsd")]
    pub nsd: PathBuf,
    /// The curated caption array (COCO_73k_annots_curated.npy). Default: annots/COCO_73k_annots_curated.npy under --nsd.
    #[arg(long, global = true)]
    pub captions: Option<PathBuf>,
    /// The models folder (see `brain-diffuser models`).
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// cpu, cuda or cuda:N. Default: BRAIN_DIFFUSER_DEVICE, else the first GPU, else the CPU.
    #[arg(long, global = true)]
    pub device: Option<String>,
    /// Images per generator call in reconstruct, ablate, average and roi (1 to 1024; default 4 on
    /// CUDA, 1 on the CPU). Every image is the same whatever the batch (each draws from its own
    /// seed); larger batches keep a GPU busier and take more memory.
    #[arg(long, global = true, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH_SIZE))]
    pub batch: Option<usize>,
    /// Subjects to process, distinct, from 1 to 8, e.g. 1,2 (default: the configuration's data.subjects).
    #[arg(long, global = true, value_delimiter = ',', value_parser = clap::value_parser!(u8).range(1..=8))]
    pub subjects: Vec<u8>,
}

/// The steps and tools.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// NSD -> subject cache: trial-averaged, z-scored fMRI, image ids, captions, ROI patterns, test images.
    Prepare,
    /// VDVAE, CLIP-Vision and CLIP-Text features of the training and test stimuli, cached in chunks.
    Extract {
        /// Take the K-th of N parts of the stimuli (e.g. 2/8, or $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).
        #[arg(long, default_value = "1/1")]
        shard: Shard,
        /// Feature groups: vdvae, clip-vision, clip-text.
        #[arg(long, value_delimiter = ',', value_parser = parse_group, default_values = group_names())]
        groups: Vec<TargetGroup>,
    },
    /// The three ridge regressions (fMRI -> features), one Gram matrix per subject.
    Fit {
        /// Feature groups: vdvae, clip-vision, clip-text.
        #[arg(long, value_delimiter = ',', value_parser = parse_group, default_values = group_names())]
        groups: Vec<TargetGroup>,
    },
    /// Renormalised test predictions, the inputs of the generators.
    Predict,
    /// Stage 1 (VDVAE) then stage 2 (Versatile Diffusion) images of the test set.
    Reconstruct {
        /// Take the K-th of N parts of the test images.
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// Scores the reconstructions of every variant present under both protocols.
    Evaluate {
        /// Protocols: brain-diffuser, mindeye (default: the configuration's evaluation.protocols).
        #[arg(long, value_delimiter = ',', value_parser = PROTOCOLS)]
        protocols: Vec<String>,
        /// Images per network call (1 to 1024).
        #[arg(long, default_value_t = 32, value_parser = RangedU64ValueParser::<usize>::new().range(1..=MAX_BATCH_SIZE))]
        batch_size: usize,
    },
    /// The paper's ablations (Table 2): no-vdvae, no-clip-text, no-clip-vision (only-vdvae is stage 1).
    Ablate {
        /// Take the K-th of N parts of the test images.
        #[arg(long, default_value = "1/1")]
        shard: Shard,
        /// Variants: no-vdvae, no-clip-text, no-clip-vision (also brain-diffuser, only-vdvae).
        #[arg(long, value_delimiter = ',', value_parser = parse_variant, default_values = ["no-vdvae", "no-clip-text", "no-clip-vision"])]
        variants: Vec<Variant>,
        /// The subject whose test set is ablated (the paper: subject 1; NSD has 1 to 8).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
        subject: u8,
    },
    /// Predictions averaged over subjects (per NSD image), then reconstructed ("Sub Avg").
    Average {
        /// Take the K-th of N parts of the test images.
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// ROI-optimal images: faces, words, places, bodies, V1-V4, five eccentricity bands.
    Roi {
        /// Take the K-th of N parts of the ROI images.
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// The paper's Figure 7: per-ROI regression-weight percentiles, CLIP vs VDVAE (table and bar chart).
    WeightsRoi,
    /// A grid of ground truth | stage 1 | final per subject, with the metrics table.
    Report {
        /// Test images shown (at least 1; at most the test set).
        #[arg(long, default_value_t = 8, value_parser = RangedU64ValueParser::<usize>::new().range(1..))]
        images: usize,
        /// Side of each image in the grid, in pixels (16 to 1024).
        #[arg(long, default_value_t = 128, value_parser = clap::value_parser!(u32).range(i64::from(MIN_CELL)..=i64::from(MAX_CELL)))]
        cell: u32,
    },
    /// Checks the models folder: every expected file present with valid keys and shapes.
    Models,
    /// Writes a synthetic mini-NSD, tiny models and a matching config, to try every step.
    Demo {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the data and the models (0 to 2^63-1: it is recorded in TOML).
        #[arg(long, default_value_t = 2023, value_parser = clap::value_parser!(u64).range(0..=i64::MAX as u64))]
        seed: u64,
        /// What the stimuli are: decoded by the demo's VDVAE from latents the fMRI encode (stage 1
        /// has a known answer), or the earlier colour gratings.
        #[arg(long, value_enum, default_value_t = crate::demo::DemoWorld::VdvaeLatents)]
        world: crate::demo::DemoWorld,
    },
    /// Prints the effective configuration as TOML.
    Config,
}

/// The names of [`TargetGroup::PAPER`] (clap needs them as `'static` strings).
fn group_names() -> [&'static str; 3] {
    ["vdvae", "clip-vision", "clip-text"]
}

/// Parses a feature group name (`vdvae`, `clip-vision`, `clip-text`).
fn parse_group(name: &str) -> Result<TargetGroup, String> {
    TargetGroup::PAPER
        .into_iter()
        .find(|g| g.name() == name)
        .ok_or_else(|| format!("unknown feature group '{name}': expected vdvae, clip-vision or clip-text"))
}

/// Parses a variant name (`no-vdvae`, ...).
fn parse_variant(name: &str) -> Result<Variant, String> {
    Variant::from_name(name).ok_or_else(|| {
        let names: Vec<&str> = Variant::ALL.iter().map(|v| v.name()).collect();
        format!("unknown variant '{name}': expected one of {}", names.join(", "))
    })
}

/// An argument that parses but cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// A value that is wrong with respect to the others (e.g. a subject listed twice).
    #[error("{argument} {value}: {message}")]
    Invalid { argument: &'static str, value: String, message: String },
    /// A path that points at the wrong kind of thing, or at nothing where something must be.
    #[error("{argument} {path} {problem}; expected {expected}")]
    Path { argument: &'static str, path: PathBuf, problem: String, expected: &'static str },
    /// A device that is not understood or not on this machine.
    #[error(transparent)]
    Device(#[from] DeviceError),
}

/// What a path argument must be.
#[derive(Clone, Copy)]
enum Want {
    /// A folder that may not exist yet (it is created): nothing on its way may be a file.
    NewFolder,
    /// An existing folder.
    Folder,
    /// An existing file.
    File,
}

/// Checks `path` for `argument`; `expected` says in words what it should be.
fn check_path(argument: &'static str, path: &Path, want: Want, expected: &'static str) -> Result<(), CliError> {
    let fail = |problem: String| CliError::Path { argument, path: path.to_owned(), problem, expected };
    if path.as_os_str().is_empty() {
        return Err(CliError::Invalid {
            argument,
            value: "''".to_owned(),
            message: format!("an empty path; expected {expected}"),
        });
    }
    match std::fs::metadata(path) {
        Ok(m) if matches!(want, Want::File) && m.is_dir() => Err(fail("is a folder".to_owned())),
        Ok(m) if matches!(want, Want::Folder | Want::NewFolder) && !m.is_dir() => Err(fail("is a file".to_owned())),
        Ok(_) => Ok(()),
        Err(e) => {
            // The nearest ancestor that exists must be a folder (a folder to create needs it too).
            let existing = path.ancestors().skip(1).find(|a| !a.as_os_str().is_empty() && a.symlink_metadata().is_ok());
            match existing {
                Some(a) if !a.is_dir() => Err(fail(format!("is inside {}, which is a file", a.display()))),
                _ if matches!(want, Want::NewFolder) => Ok(()),
                _ if e.kind() == std::io::ErrorKind::NotFound => Err(fail("does not exist".to_owned())),
                _ => Err(fail(format!("cannot be read ({e})"))),
            }
        }
    }
}

/// The first value of `values` that an earlier one repeats, with its 1-based position.
fn first_repeat<T: PartialEq>(values: &[T]) -> Option<(usize, &T)> {
    values.iter().enumerate().find(|(i, v)| values[..*i].contains(v)).map(|(i, v)| (i + 1, v))
}

/// `values` joined with commas, as the command line takes them.
fn list<T: std::fmt::Display>(values: impl IntoIterator<Item = T>) -> String {
    values.into_iter().map(|v| v.to_string()).collect::<Vec<_>>().join(",")
}

impl Command {
    /// Whether the command reads the NSD folder (`prepare`, `extract`).
    pub fn reads_nsd(&self) -> bool {
        matches!(self, Command::Prepare | Command::Extract { .. })
    }

    /// Whether the command loads models from the models folder.
    pub fn loads_models(&self) -> bool {
        matches!(
            self,
            Command::Extract { .. }
                | Command::Reconstruct { .. }
                | Command::Ablate { .. }
                | Command::Average { .. }
                | Command::Roi { .. }
                | Command::Models
        )
    }

    /// Whether the command runs on a device (every step of a run).
    pub fn uses_device(&self) -> bool {
        !matches!(self, Command::Demo { .. } | Command::Models | Command::Config)
    }

    /// Whether the command reads or writes a run folder.
    pub fn uses_run(&self) -> bool {
        !matches!(self, Command::Demo { .. } | Command::Models)
    }
}

impl Cli {
    /// Checks what clap cannot: distinct subjects, groups, variants and protocols; that each path
    /// argument the command uses points at the right kind of thing (`--run` a folder or nothing,
    /// `--nsd` and `--models` existing folders where the step reads them, `--config` and
    /// `--captions` existing files); and that the device asked for (`--device`, else
    /// `BRAIN_DIFFUSER_DEVICE`) exists here. Reads the file system; runs no step.
    pub fn validate(&self) -> Result<(), CliError> {
        let g = &self.global;
        if let Some((position, subject)) = first_repeat(&g.subjects) {
            return Err(CliError::Invalid {
                argument: "--subjects",
                value: list(&g.subjects),
                message: format!(
                    "subject {subject} is listed twice (position {position}); expected distinct subjects from 1 to 8"
                ),
            });
        }
        match &self.command {
            Command::Extract { groups, .. } | Command::Fit { groups } => {
                if let Some((_, group)) = first_repeat(groups) {
                    return Err(CliError::Invalid {
                        argument: "--groups",
                        value: list(groups.iter().map(|g| g.name())),
                        message: format!("'{}' is listed twice; expected distinct feature groups", group.name()),
                    });
                }
            }
            Command::Ablate { variants, .. } => {
                if let Some((_, variant)) = first_repeat(variants) {
                    return Err(CliError::Invalid {
                        argument: "--variants",
                        value: list(variants.iter().map(|v| v.name())),
                        message: format!("'{}' is listed twice; expected distinct variants", variant.name()),
                    });
                }
            }
            Command::Evaluate { protocols, .. } => {
                if let Some((_, protocol)) = first_repeat(protocols) {
                    return Err(CliError::Invalid {
                        argument: "--protocols",
                        value: list(protocols),
                        message: format!("'{protocol}' is listed twice; expected distinct protocols"),
                    });
                }
            }
            _ => {}
        }

        const RUN: &str = "a run folder (it is created if missing)";
        if self.command.uses_run() {
            check_path("--run", &g.run, Want::NewFolder, RUN)?;
        }
        if let Command::Demo { out, .. } = &self.command {
            check_path("--out", out, Want::NewFolder, "a folder for the demo (it is created if missing)")?;
        }
        if let Some(config) = &g.config {
            check_path("--config", config, Want::File, "a configuration file (TOML, see configs/paper.toml)")?;
        }
        if let Some(captions) = &g.captions {
            check_path("--captions", captions, Want::File, "the curated caption array (COCO_73k_annots_curated.npy)")?;
        }
        if self.command.reads_nsd() {
            check_path("--nsd", &g.nsd, Want::Folder, "the NSD root folder (holding nsddata/, nsddata_stimuli/)")?;
        }
        if self.command.loads_models() {
            check_path("--models", &g.models, Want::Folder, "the models folder (see docs/models.md)")?;
        }
        match &g.device {
            Some(name) => {
                let device = parse_device_name("--device", name)?;
                if self.command.uses_device() {
                    check_device("--device", name, device)?;
                }
            }
            None if self.command.uses_device() => {
                crate::runtime::default_device()?;
            }
            None => {}
        }
        Ok(())
    }
}

/// Renders an error and its causes (`source()` chain) on one line, `: `-separated, skipping every
/// cause whose text is already part of what was written: many errors repeat their cause in their
/// own message (`cannot read x: No such file or directory (os error 2)`) and also return it as
/// their source, which `{:#}` would print twice.
pub fn error_chain(error: &(dyn Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        let message = e.to_string();
        if !text.contains(&message) {
            let _ = write!(text, ": {message}");
        }
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;

    #[test]
    fn the_default_groups_are_the_papers() {
        let parsed: Vec<TargetGroup> = group_names().iter().map(|n| parse_group(n).unwrap()).collect();
        assert_eq!(parsed, TargetGroup::PAPER);
    }

    /// A chain link with a message and an optional cause.
    #[derive(Debug)]
    struct Link {
        message: String,
        source: Option<Box<Link>>,
    }

    impl fmt::Display for Link {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&self.message)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.source.as_deref().map(|s| s as &(dyn Error + 'static))
        }
    }

    fn chain(messages: &[&str]) -> Link {
        messages
            .iter()
            .rev()
            .fold(None, |source, m| Some(Link { message: m.to_string(), source: source.map(Box::new) }))
            .expect("at least one message")
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        // A model-load error that repeats its cause chain in its messages.
        let e = chain(&[
            "loading VDVAE from m/vdvae.safetensors: bad tensor enc.w: expected F32, got I32",
            "bad tensor enc.w: expected F32, got I32",
            "expected F32, got I32",
        ]);
        assert_eq!(error_chain(&e), "loading VDVAE from m/vdvae.safetensors: bad tensor enc.w: expected F32, got I32");
        // Causes that add something are kept, in order.
        let e = chain(&["extract failed", "reading chunk 3", "unexpected end of file"]);
        assert_eq!(error_chain(&e), "extract failed: reading chunk 3: unexpected end of file");
        // A cause repeated only further down is dropped there, what is new is kept.
        let e = chain(&["a: b", "b", "c", "b"]);
        assert_eq!(error_chain(&e), "a: b: c");
        assert_eq!(error_chain(&chain(&["alone"])), "alone");
    }

    /// An error in the convention that prints its source in its own message and also returns it
    /// from `source()` (as `NsdError::Io` and `ConfigError::Io` did).
    #[derive(Debug, thiserror::Error)]
    #[error("cannot access {path}: {source}")]
    struct IoLike {
        path: String,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn an_io_error_inside_an_io_like_error_is_printed_once() {
        let io = std::io::Error::from_raw_os_error(2);
        let io_text = io.to_string();
        assert!(io_text.contains("os error 2"), "{io_text}");
        let wrapped = anyhow::Error::new(IoLike { path: "nsd/x.mat".into(), source: io }).context("prepare subject 1");
        // `{:#}` prints the OS error twice; the chain prints it once.
        assert_eq!(format!("{wrapped:#}").matches("os error 2").count(), 2);
        let text = error_chain(wrapped.as_ref());
        assert_eq!(text, format!("prepare subject 1: cannot access nsd/x.mat: {io_text}"));
        // nsd-io's own error, whichever convention it follows.
        let nsd = nsd_io::NsdError::Io { path: "nsd/x.mat".into(), source: std::io::Error::from_raw_os_error(2) };
        let text = error_chain(&nsd);
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
        assert!(text.starts_with("cannot access nsd/x.mat: "), "{text}");
        // The configuration's I/O error, too.
        let config = crate::config::Config::load(Path::new("/nonexistent/brain-diffuser.toml")).unwrap_err();
        let text = error_chain(&config);
        assert!(text.starts_with("cannot read configuration /nonexistent/brain-diffuser.toml: "), "{text}");
        assert_eq!(text.matches("os error 2").count(), 1, "{text}");
    }
}
