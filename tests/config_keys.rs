//! The configuration says only what it does: every key of `configs/paper.toml` (read from the file,
//! so a new key is covered as soon as it is written there) changes something, or its new value is
//! refused. For each key, one of:
//! - `Config` refuses the value, naming the key;
//! - a step refuses to go on: the settings record of outputs it would reuse holds the old value
//!   (a stale-settings error showing both records), or the data or models contradict the key (an
//!   error naming it);
//! - a step's outputs change (its files, or what it returns).
//!
//! A key that changes nothing fails `every_key_of_the_paper_file_changes_the_outcome_or_is_refused`,
//! and so does a key without a probe here. One run of the demo (subject 1: prepare, extract, fit,
//! predict, reconstruct, roi, evaluate) is made once and shared; each probe copies it, changes one
//! key of the demo's configuration and runs the steps again in order until one refuses or changes
//! something.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brain_diffuser::config::Config;
use brain_diffuser::demo::write_demo;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::loaders::StageLoader;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{DataSplit, RunDir, WorkflowError};
use brain_diffuser::{Encoder, Generator, LatentCondition, TargetGroup};
use metrics::protocol::SsimVariant;
use metrics::{Extractors, Protocol};
use nsd_io::NsdLayout;

#[path = "common/tree.rs"]
mod tree;
use tree::copy_tree;

/// The steps a probe runs, in order.
const STEPS: [&str; 7] = ["prepare", "extract", "fit", "predict", "reconstruct", "roi", "evaluate"];

/// What changing a key does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Effect {
    /// `Config` refuses the value (the message names the key).
    Invalid,
    /// The step refuses to run (stale settings, or a message naming the key).
    Refused(&'static str),
    /// The step runs and its outputs differ.
    Changed(&'static str),
}

use Effect::{Changed, Invalid, Refused};

/// `(key, new value in TOML, effect)`: at least one probe per key of `configs/paper.toml`, applied
/// to the demo's configuration (subject 1 only).
const PROBES: &[(&str, &str, Effect)] = &[
    ("data.subjects", "[2]", Changed("prepare")),
    ("data.sessions", "3", Refused("prepare")),
    ("data.fmri_divisor", "100.0", Refused("prepare")),
    ("data.stimulus_size", "32", Refused("prepare")),
    ("data.trials_per_session", "100", Refused("prepare")),
    ("data.test_threshold", "30", Refused("prepare")),
    ("data.test_threshold", "601", Invalid),
    ("data.n_images", "700", Refused("prepare")),
    ("data.train_trials", "\"single\"", Refused("prepare")),
    ("vdvae.layers", "3", Refused("extract")),
    ("vdvae.target", "\"posterior-mean\"", Refused("extract")),
    ("vdvae.temperature", "0.5", Refused("reconstruct")),
    ("vdvae.pixel_sampling", "\"mode\"", Refused("reconstruct")),
    ("vdvae.image_size", "32", Refused("extract")),
    ("vdvae.upscale_size", "32", Refused("reconstruct")),
    ("vdvae.batch_size", "7", Refused("extract")),
    ("clip.vision_tokens", "6", Refused("extract")),
    ("clip.text_tokens", "9", Refused("extract")),
    ("clip.embedding_dim", "32", Refused("extract")),
    ("clip.vision_resize", "48", Refused("extract")),
    ("clip.cuda_precision", "\"bf16\"", Refused("extract")),
    ("regression.vdvae_alpha", "123.0", Refused("fit")),
    ("regression.clip_vision_alpha", "123.0", Refused("fit")),
    ("regression.clip_text_alpha", "123.0", Refused("fit")),
    ("regression.fit_intercept", "false", Refused("fit")),
    ("regression.renormalisation", "\"none\"", Refused("fit")),
    ("diffusion.steps", "12", Refused("reconstruct")),
    ("diffusion.strength", "0.5", Refused("reconstruct")),
    ("diffusion.strength", "1.0", Invalid),
    ("diffusion.guidance_scale", "5.0", Refused("reconstruct")),
    ("diffusion.text_weight", "0.5", Refused("reconstruct")),
    ("diffusion.eta", "0.5", Refused("reconstruct")),
    ("diffusion.noise_start", "\"consistent\"", Refused("reconstruct")),
    ("diffusion.resolution", "32", Refused("reconstruct")),
    ("diffusion.cuda_precision", "\"f32\"", Refused("reconstruct")),
    ("evaluation.protocols", "[\"mindeye\"]", Changed("evaluate")),
    ("evaluation.ssim", "\"two-d\"", Changed("evaluate")),
    ("evaluation.retrieval_candidates", "10", Changed("evaluate")),
    ("evaluation.retrieval_candidates", "1", Invalid),
    ("evaluation.retrieval_repeats", "5", Changed("evaluate")),
    ("evaluation.retrieval_repeats", "0", Invalid),
    ("roi.visual_rois", "\"floc-faces\"", Refused("prepare")),
    ("roi.vdvae_scale", "40.0", Refused("roi")),
    ("roi.vdvae_norm", "60.0", Refused("roi")),
    ("roi.clip_text_scale", "5.0", Refused("roi")),
    ("roi.clip_vision_scale", "10.0", Refused("roi")),
    ("seeds.vdvae_targets", "1", Refused("extract")),
    ("seeds.vdvae_decode", "1", Refused("reconstruct")),
    ("seeds.diffusion", "1", Refused("reconstruct")),
    ("seeds.retrieval", "1", Changed("evaluate")),
];

/// Every leaf key of a TOML table of sections, as `section.key`.
fn leaf_keys(table: &toml::Table) -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (section, value) in table {
        let toml::Value::Table(entries) = value else { panic!("{section} is not a section") };
        keys.extend(entries.keys().map(|k| format!("{section}.{k}")));
    }
    keys
}

fn paper_keys() -> BTreeSet<String> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/paper.toml");
    let text = std::fs::read_to_string(path).expect("configs/paper.toml is readable");
    leaf_keys(&toml::from_str(&text).expect("configs/paper.toml is TOML"))
}

/// `config` with `key` set to `value` (TOML), through the configuration's own parser. The value
/// must differ from the one there.
fn with_key(config: &Config, key: &str, value: &str) -> Result<Config, brain_diffuser::config::ConfigError> {
    let mut table: toml::Table = toml::from_str(&config.to_toml()).expect("the configuration is TOML");
    let (section, name) = key.split_once('.').expect("section.key");
    let value: toml::Table = toml::from_str(&format!("v = {value}")).expect("the probe's value is TOML");
    let entries = table.get_mut(section).and_then(toml::Value::as_table_mut).expect("the section is there");
    let old = entries.insert(name.to_owned(), value["v"].clone()).unwrap_or_else(|| panic!("{key} is not written"));
    assert_ne!(old, value["v"], "{key}: the probe must change the value");
    Config::from_toml_str(&toml::to_string(&table).expect("TOML"), key)
}

/// The demo, and the finished run of subject 1 with what each step returns when run again.
struct Base {
    root: PathBuf,
    nsd: PathBuf,
    models: PathBuf,
    config: Config,
    returned: BTreeMap<&'static str, String>,
    files: BTreeMap<PathBuf, u64>,
}

impl Base {
    fn session(&self, run: &Path, config: &Config) -> Session {
        Session::new(
            RunDir::new(run),
            config.clone(),
            NsdLayout::new(&self.nsd),
            ModelsDir::new(&self.models),
            config.data.subjects_or(&[]),
            tch::Device::Cpu,
        )
    }

    /// A copy of the finished run, in its own temporary folder.
    fn copy(&self) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("temp dir");
        let run = dir.path().join("run");
        copy_tree(&self.root.join("run"), &run);
        (dir, run)
    }
}

/// Every file under `root` (relative name) and a hash of its bytes.
fn files(root: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                let mut hasher = DefaultHasher::new();
                std::fs::read(&path).unwrap().hash(&mut hasher);
                out.insert(path.strip_prefix(root).unwrap().to_owned(), hasher.finish());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

/// Runs `step` of `session` and describes what it returned (paths relative to the run folder).
fn run_step(session: &Session, step: &str) -> Result<String, WorkflowError> {
    let relative = |p: &Path| p.strip_prefix(session.run.root()).unwrap_or(p).display().to_string();
    Ok(match step {
        "prepare" => format!("{:?}", session.prepare()?),
        "extract" => format!("{:?}", session.extract(Shard::WHOLE, &TargetGroup::PAPER)?),
        "fit" => format!("{:?}", session.fit(&TargetGroup::PAPER)?),
        "predict" => format!("{:?}", session.predict()?),
        "reconstruct" => format!("{:?}", session.reconstruct(Shard::WHOLE)?),
        "roi" => session.roi(Shard::WHOLE)?.iter().map(|p| relative(p)).collect::<Vec<_>>().join("\n"),
        "evaluate" => {
            let protocols = session.config.evaluation.protocols_or(&[]);
            let reports = session.evaluate(&protocols, 8)?;
            reports.iter().map(|(label, variant, r)| format!("{label} {variant:?} {}", r.to_json().unwrap())).collect()
        }
        other => panic!("no step {other}"),
    })
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        // Under the target folder (a static is never dropped, so no TempDir): wiped at each start.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-keys");
        let _ = std::fs::remove_dir_all(&root);
        let demo = write_demo(&root.join("demo"), 2023).expect("demo data and models");
        let mut config = Config::load(&demo.config).expect("demo configuration");
        config.data.subjects = vec![1];
        let mut base = Base {
            root: root.clone(),
            nsd: demo.nsd,
            models: demo.models,
            config,
            returned: BTreeMap::new(),
            files: BTreeMap::new(),
        };
        let run = root.join("run");
        let session = base.session(&run, &base.config);
        for step in STEPS {
            run_step(&session, step).unwrap_or_else(|e| panic!("{step}: {e}"));
        }
        base.files = files(&run);
        // Run again with the same configuration: nothing is refused and nothing changes, so that
        // what a probe sees comes from its key alone.
        let (_dir, again) = base.copy();
        let session = base.session(&again, &base.config);
        for step in STEPS {
            let returned = run_step(&session, step).unwrap_or_else(|e| panic!("{step} again: {e}"));
            assert_eq!(files(&again), base.files, "{step} run again changed its outputs");
            base.returned.insert(step, returned);
        }
        base
    })
}

/// What `config` changes over the finished run: the first step that refuses (with its error) or
/// whose outputs differ (with what differs), or `None`.
fn observe(config: &Config) -> Option<(Effect, String)> {
    let base = base();
    let (_dir, run) = base.copy();
    let session = base.session(&run, config);
    for step in STEPS {
        match run_step(&session, step) {
            Err(e) => {
                let stale = matches!(e, WorkflowError::Stale { .. });
                return Some((Refused(step), format!("{}{e}", if stale { "stale: " } else { "" })));
            }
            Ok(returned) => {
                let now = files(&run);
                let changed: Vec<String> = now
                    .iter()
                    .filter(|(path, hash)| base.files.get(*path) != Some(hash))
                    .map(|(path, _)| path.display().to_string())
                    .collect();
                if returned != base.returned[step] || !changed.is_empty() {
                    return Some((Changed(step), format!("files {changed:?}; returned {returned:.400}")));
                }
            }
        }
    }
    None
}

#[test]
fn every_key_of_the_paper_file_changes_the_outcome_or_is_refused() {
    let keys = paper_keys();
    // Every key the configuration has is in the paper's file (so it is probed here).
    let written = leaf_keys(&toml::from_str(&Config::default().to_toml()).unwrap());
    assert_eq!(keys, written, "configs/paper.toml and Config differ in their keys");
    let probed: BTreeSet<String> = PROBES.iter().map(|(key, _, _)| key.to_string()).collect();
    let missing: Vec<&String> = keys.difference(&probed).collect();
    assert!(missing.is_empty(), "keys of configs/paper.toml without a probe in this test: {missing:?}");
    let unknown: Vec<&String> = probed.difference(&keys).collect();
    assert!(unknown.is_empty(), "probes of keys that configs/paper.toml does not have: {unknown:?}");

    let base = base();
    let mut wrong = Vec::new();
    for &(key, value, expected) in PROBES {
        let (seen, detail) = match with_key(&base.config, key, value) {
            Err(e) => {
                let message = e.to_string();
                assert!(message.contains(key), "{key} = {value}: the error does not name the key: {message}");
                (Some(Invalid), message)
            }
            Ok(config) => match observe(&config) {
                Some((effect, detail)) => (Some(effect), detail),
                None => (None, "no step refused, no output changed".to_owned()),
            },
        };
        if let (Some(Refused(_)), false) = (seen, detail.starts_with("stale: ")) {
            // Not a settings record: the data or the models contradict the key, which the error names.
            assert!(detail.contains(key), "{key} = {value}: the refusal does not name the key: {detail}");
        }
        if seen != Some(expected) {
            wrong.push(format!("{key} = {value}: expected {expected:?}, saw {seen:?}: {detail}"));
        }
    }
    assert!(wrong.is_empty(), "keys that do not do what they say:\n{}", wrong.join("\n"));
}

#[test]
fn ssim_two_d_makes_evaluate_compute_the_2d_ssim_for_the_brain_diffuser_protocol() {
    let base = base();
    let (_dir, run) = base.copy();
    let two_d = with_key(&base.config, "evaluation.ssim", "\"two-d\"").expect("valid");
    let protocols = ["brain-diffuser".to_owned(), "mindeye".to_owned()];
    let columns = base.session(&run, &base.config).evaluate(&protocols, 8).unwrap();
    let gaussian = base.session(&run, &two_d).evaluate(&protocols, 8).unwrap();
    assert_eq!(columns.len(), gaussian.len());
    assert!(!columns.is_empty());
    let subject = RunDir::new(&run).subject(1);
    let mut brain_diffuser = 0;
    for ((label, variant, a), (label_b, variant_b, b)) in columns.iter().zip(&gaussian) {
        assert_eq!((label, variant), (label_b, variant_b));
        if a.protocol.name == "mindeye" {
            assert_eq!(a, b, "{label} {variant:?}: mindeye keeps its own 2-D SSIM");
            continue;
        }
        brain_diffuser += 1;
        assert_eq!((a.protocol.ssim, b.protocol.ssim), (SsimVariant::Columns1d, SsimVariant::Gaussian2d));
        assert_eq!(a.pixcorr_per_image, b.pixcorr_per_image, "{label} {variant:?}: PixCorr does not change");
        assert_ne!(a.ssim_per_image, b.ssim_per_image, "{label} {variant:?}: the SSIM values change");
        assert_ne!(a.value("SSIM"), b.value("SSIM"));
        // They are the 2-D SSIM of the metrics crate on the same pairs.
        let protocol = Protocol { ssim: SsimVariant::Gaussian2d, ..Protocol::brain_diffuser() };
        let expected = metrics::evaluate_folders(
            &subject.ground_truth(),
            &subject.outputs.reconstructions(*variant),
            &protocol,
            &Extractors::new(),
            8,
        )
        .unwrap();
        assert_eq!(b.ssim_per_image, expected.ssim_per_image, "{label} {variant:?}");
        // What is written names the SSIM it used.
        let written = std::fs::read_to_string(subject.outputs.metrics(*variant, "brain-diffuser").join("metrics.json"));
        assert!(written.unwrap().contains("\"ssim\": \"gaussian2d\""), "{label} {variant:?}");
    }
    assert_eq!(brain_diffuser, gaussian.len() / 2, "one brain-diffuser report per mindeye report");
    // The report's table says that the brain-diffuser protocol ran with the 2-D SSIM.
    let outputs = [("subj01".to_owned(), subject.outputs.clone())];
    let (_, rows) = brain_diffuser::workflow::report::metrics_table(&outputs, &protocols).unwrap();
    let shown: BTreeSet<&str> = rows.iter().map(|row| row[2].as_str()).collect();
    assert_eq!(shown, BTreeSet::from(["brain-diffuser (2-D SSIM)", "mindeye"]), "{rows:?}");
}

#[test]
fn vdvae_batch_size_reaches_the_stages_and_is_recorded_with_the_features() {
    let base = base();
    let one = with_key(&base.config, "vdvae.batch_size", "1").expect("valid");
    assert_ne!(base.config.vdvae.batch_size, 1);
    let models = ModelsDir::new(&base.models);
    let loader = StageLoader { models: &models, config: &one, device: tch::Device::Cpu };
    let model = loader.vdvae().unwrap();
    let encoder = loader.vdvae_encoder(model.clone()).unwrap();
    let decoder = loader.vdvae_decoder(model.clone()).unwrap();
    assert_eq!((encoder.options().batch_size, decoder.options().batch_size), (1, 1), "the stages get the key");
    // Features extracted one image at a time agree with the demo's batches to float rounding
    // (libtorch picks its kernels by batch size), so the features' record holds the batch size.
    let (_dir, run) = base.copy();
    let subject = RunDir::new(&run).subject(1);
    let base_subject = RunDir::new(base.root.join("run")).subject(1);
    for split in [DataSplit::Train, DataSplit::Test] {
        std::fs::remove_dir_all(subject.features(&TargetGroup::VDVAE, split)).unwrap();
    }
    base.session(&run, &one).extract(Shard::WHOLE, &[TargetGroup::VDVAE]).unwrap();
    for split in [DataSplit::Train, DataSplit::Test] {
        let (folder, before) =
            (subject.features(&TargetGroup::VDVAE, split), base_subject.features(&TargetGroup::VDVAE, split));
        let record = std::fs::read_to_string(folder.join("settings.toml")).unwrap();
        assert!(record.contains("batch_size = 1\n"), "{record}");
        for entry in std::fs::read_dir(&folder).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "npy") {
                let a: ndarray::Array2<f32> = ndarray_npy::read_npy(&path).unwrap();
                let b: ndarray::Array2<f32> = ndarray_npy::read_npy(before.join(path.file_name().unwrap())).unwrap();
                let diff = (&a - &b).iter().fold(0f32, |m, v| m.max(v.abs()));
                let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
                assert!(diff <= 1e-5 * scale, "{}: differs by {diff} (values up to {scale})", path.display());
            }
        }
    }
    // Images decoded in batches of one are those decoded together.
    let demo = StageLoader { models: &models, config: &base.config, device: tch::Device::Cpu };
    let together = demo.vdvae_decoder(model).unwrap();
    let width = encoder.feature_shape()[0];
    let latents = ndarray::Array2::from_shape_fn((3, width), |(i, j)| ((i * 31 + j) % 17) as f32 / 17.0 - 0.5);
    let condition = LatentCondition { latents };
    let seeds = [11, 12, 13];
    assert_eq!(decoder.generate(&condition, &seeds).unwrap(), together.generate(&condition, &seeds).unwrap());
}
