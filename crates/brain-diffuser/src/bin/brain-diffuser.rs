//! `brain-diffuser`: reconstruct seen images from NSD fMRI, step by step.
//!
//! Steps, in order: `prepare`, `extract`, `fit`, `predict`, `reconstruct`, `evaluate`; then the
//! analyses `ablate`, `average`, `roi`, `weights-roi` and `report`. `models` checks a models
//! folder; `demo` writes a synthetic NSD and tiny random models to try everything without data.
//! Every step resumes where an interrupted run stopped; `extract`, `reconstruct`, `ablate`,
//! `average` and `roi` take `--shard K/N` to split their images over machines.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use brain_diffuser::TargetGroup;
use brain_diffuser::config::Config;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::runtime::{default_device, parse_device};
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{self, RunDir, Variant};
use clap::{Args, Parser, Subcommand};
use nsd_io::NsdLayout;

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
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug, Clone)]
struct Global {
    /// Run folder: every step writes below it.
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_RUN", default_value = "runs/brain-diffuser")]
    run: PathBuf,
    /// Configuration (TOML; see configs/paper.toml). Default: the run's config.toml, else the paper's.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// The NSD root folder (holding nsddata/, nsddata_betas/, nsddata_stimuli/).
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_NSD", default_value = "nsd")]
    nsd: PathBuf,
    /// The curated caption array (COCO_73k_annots_curated.npy). Default: <nsd>/annots/COCO_73k_annots_curated.npy.
    #[arg(long, global = true)]
    captions: Option<PathBuf>,
    /// The models folder (see `brain-diffuser models`).
    #[arg(long, global = true, env = "BRAIN_DIFFUSER_MODELS", default_value = "models")]
    models: PathBuf,
    /// cpu, cuda or cuda:N. Default: BRAIN_DIFFUSER_DEVICE, else the first GPU, else the CPU.
    #[arg(long, global = true)]
    device: Option<String>,
    /// Subjects to process, e.g. 1,2 (default: the configuration's data.subjects).
    #[arg(long, global = true, value_delimiter = ',')]
    subjects: Vec<u8>,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// NSD -> subject cache: trial-averaged, z-scored fMRI, image ids, captions, ROI patterns, test images.
    Prepare,
    /// VDVAE, CLIP-Vision and CLIP-Text features of the training and test stimuli, cached in chunks.
    Extract {
        /// Take the K-th of N parts of the stimuli (e.g. 2/8, or $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT).
        #[arg(long, default_value = "1/1")]
        shard: Shard,
        /// Feature groups: vdvae, clip-vision, clip-text.
        #[arg(long, value_delimiter = ',', default_values_t = all_groups())]
        groups: Vec<String>,
    },
    /// The three ridge regressions (fMRI -> features), one Gram matrix per subject.
    Fit {
        #[arg(long, value_delimiter = ',', default_values_t = all_groups())]
        groups: Vec<String>,
    },
    /// Renormalised test predictions, the inputs of the generators.
    Predict,
    /// Stage 1 (VDVAE) then stage 2 (Versatile Diffusion) images of the test set.
    Reconstruct {
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// Scores the reconstructions of every variant present under both protocols.
    Evaluate {
        /// Protocols (default: the configuration's evaluation.protocols).
        #[arg(long, value_delimiter = ',')]
        protocols: Vec<String>,
        /// Images per network call.
        #[arg(long, default_value_t = 32)]
        batch_size: usize,
    },
    /// The paper's ablations (Table 2): no-vdvae, no-clip-text, no-clip-vision (only-vdvae is stage 1).
    Ablate {
        #[arg(long, default_value = "1/1")]
        shard: Shard,
        #[arg(long, value_delimiter = ',', default_values_t = ["no-vdvae".to_owned(), "no-clip-text".to_owned(), "no-clip-vision".to_owned()])]
        variants: Vec<String>,
        /// The subject whose test set is ablated (the paper: subject 1).
        #[arg(long, default_value_t = 1)]
        subject: u8,
    },
    /// Predictions averaged over subjects (per NSD image), then reconstructed ("Sub Avg").
    Average {
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// ROI-optimal images: faces, words, places, bodies, V1-V4, five eccentricity bands.
    Roi {
        #[arg(long, default_value = "1/1")]
        shard: Shard,
    },
    /// The paper's Figure 7: per-ROI regression-weight percentiles, CLIP vs VDVAE (table and bar chart).
    WeightsRoi,
    /// A grid of ground truth | stage 1 | final per subject, with the metrics table.
    Report {
        /// Test images shown.
        #[arg(long, default_value_t = 8)]
        images: usize,
        /// Side of each image in the grid.
        #[arg(long, default_value_t = 128)]
        cell: u32,
    },
    /// Checks the models folder: every expected file present with valid keys and shapes.
    Models,
    /// Writes a synthetic mini-NSD, tiny random-weight models and a matching config, to try every step.
    Demo {
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
        /// Seed of the data and the models.
        #[arg(long, default_value_t = 2023)]
        seed: u64,
    },
    /// Prints the effective configuration as TOML.
    Config,
}

fn all_groups() -> Vec<String> {
    TargetGroup::ALL.iter().map(|g| g.name().to_owned()).collect()
}

fn parse_groups(names: &[String]) -> Result<Vec<TargetGroup>> {
    names
        .iter()
        .map(|n| {
            TargetGroup::ALL
                .into_iter()
                .find(|g| g.name() == n)
                .with_context(|| format!("unknown feature group '{n}': expected vdvae, clip-vision or clip-text"))
        })
        .collect()
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration of the run: `--config`, else the run's recorded one, else the paper's. The
/// first step records it in the run folder; a different `--config` for an existing run is refused.
fn load_config(global: &Global, run: &RunDir, record: bool) -> Result<Config> {
    let recorded = run.config_file();
    let config = match (&global.config, recorded.exists()) {
        (Some(path), _) => Config::load(path)?,
        (None, true) => Config::load(&recorded)?,
        (None, false) => Config::default(),
    };
    if recorded.exists() {
        let previous = Config::load(&recorded)?;
        if previous != config {
            bail!(
                "{} was made with another configuration ({}); use another --run folder or the same --config",
                run.root().display(),
                recorded.display()
            );
        }
    } else if record {
        workflow::write_text(&recorded, &config.to_toml())?;
    }
    Ok(config)
}

fn session(global: &Global) -> Result<Session> {
    let run = RunDir::new(&global.run);
    let config = load_config(global, &run, true)?;
    let device = match &global.device {
        Some(name) => parse_device(name),
        None => default_device(),
    }
    .map_err(anyhow::Error::msg)?;
    let nsd = match &global.captions {
        Some(path) => NsdLayout::new(&global.nsd).with_captions(path),
        None => NsdLayout::new(&global.nsd),
    };
    let subjects = if global.subjects.is_empty() { config.data.subjects.clone() } else { global.subjects.clone() };
    Ok(Session { run, config, nsd, models: ModelsDir::new(&global.models), subjects, device })
}

fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    let s = match cli.command {
        Command::Demo { out, seed } => {
            println!("{}", brain_diffuser::demo::write_demo(&out, seed)?);
            return Ok(());
        }
        Command::Models => {
            let report = ModelsDir::new(&global.models).check();
            println!("{report}");
            if !report.all_present_and_valid() {
                bail!("the models folder {} is incomplete or invalid (see above)", global.models.display());
            }
            return Ok(());
        }
        Command::Config => {
            print!("{}", load_config(global, &RunDir::new(&global.run), false)?.to_toml());
            return Ok(());
        }
        _ => session(global)?,
    };
    match cli.command {
        Command::Prepare => {
            for (subject, p) in s.prepare()? {
                println!(
                    "subject {subject}: {} train and {} test images, {} voxels{}{}",
                    p.train_images,
                    p.test_images,
                    p.voxels,
                    if p.roi_patterns { ", ROI patterns" } else { ", no ROI volumes" },
                    if p.reused { " (cached)" } else { "" }
                );
            }
        }
        Command::Extract { shard, groups } => {
            s.extract(shard, &parse_groups(&groups)?)?;
            println!("features of shard {shard} in {}/subjNN/features", s.run.root().display());
        }
        Command::Fit { groups } => {
            s.fit(&parse_groups(&groups)?)?;
            println!("regressions in {}/subjNN/regression", s.run.root().display());
        }
        Command::Predict => {
            s.predict()?;
            println!("predictions in {}/subjNN/predicted", s.run.root().display());
        }
        Command::Reconstruct { shard } => {
            s.reconstruct(shard)?;
            println!("reconstructions of shard {shard} in {}/subjNN/reconstructions", s.run.root().display());
        }
        Command::Ablate { shard, variants, subject } => {
            let variants = variants
                .iter()
                .map(|v| Variant::from_name(v).with_context(|| format!("unknown variant '{v}'")))
                .collect::<Result<Vec<_>>>()?;
            s.ablate(subject, &variants, shard)?;
            println!(
                "ablations of subject {subject} in {}",
                s.run.subject(subject).outputs.root().join("reconstructions").display()
            );
        }
        Command::Average { shard } => {
            s.average(shard)?;
            println!("average of subjects {:?} in {}", s.subjects, s.run.average().root().display());
        }
        Command::Roi { shard } => {
            for folder in s.roi(shard)? {
                println!("ROI-optimal images in {}", folder.display());
            }
        }
        Command::Evaluate { protocols, batch_size } => {
            let protocols = if protocols.is_empty() { s.config.evaluation.protocols.clone() } else { protocols };
            for (label, variant, report) in s.evaluate(&protocols, batch_size)? {
                println!("{label}, {}:\n{}", variant.name(), report.summary());
            }
        }
        Command::WeightsRoi => {
            let summary = s.weights_roi()?;
            println!("{:<8} {:>24} {:>24}", "ROI", "CLIP-Vision (SEM)", "CLIP-Text (SEM)");
            for r in &summary {
                println!(
                    "{:<8} {:>14.4} ({:.4}) {:>14.4} ({:.4})",
                    r.roi, r.clip_vision.0, r.clip_vision.1, r.clip_text.0, r.clip_text.1
                );
            }
            println!("wrote {}/figure7.csv and figure7.png", s.run.weights_roi().display());
        }
        Command::Report { images, cell } => println!("wrote {}", s.report(images, cell)?.display()),
        Command::Demo { .. } | Command::Models | Command::Config => {}
    }
    Ok(())
}
