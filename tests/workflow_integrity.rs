//! The steps' settings records and cache checks on the synthetic demo: a step refuses outputs of an
//! earlier step made with other settings (or for other subjects, or misaligned ids), and repairs
//! or recomputes cached files that are missing or damaged instead of trusting them.
//!
//! One run of `prepare`, `extract`, `fit` and `predict` for both demo subjects is made once and
//! shared; every test works on its own copy of that run folder (the demo's NSD files and models
//! are only read).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use brain_diffuser::config::Config;
use brain_diffuser::demo::write_demo;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::average::average_subjects;
use brain_diffuser::workflow::generate::{check_image_settings, generate_images, image_settings};
use brain_diffuser::workflow::integrity::record_fingerprint;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{RunDir, Variant, WorkflowError};
use brain_diffuser::{ConditionInputs, Generator, GuidedCondition, LatentCondition, StageError, TargetGroup};
use nsd_io::{NsdLayout, SubjectData};

#[path = "common/tree.rs"]
mod tree;
use tree::copy_tree;

/// The demo and the shared run (prepared, extracted, fitted and predicted).
struct Base {
    root: PathBuf,
    nsd: PathBuf,
    models: PathBuf,
    config: Config,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        // Under the target folder (a static is never dropped, so no TempDir): wiped at each start.
        let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workflow-integrity");
        let _ = std::fs::remove_dir_all(&root);
        let demo = write_demo(&root.join("demo"), 2023).expect("demo data and models");
        let config = Config::load(&demo.config).expect("demo configuration");
        let base = Base { root: root.clone(), nsd: demo.nsd, models: demo.models, config };
        let session = base.session(root.join("run"), base.config.clone(), &[1, 2]);
        session.prepare().expect("prepare");
        session.extract(Shard::WHOLE, &TargetGroup::PAPER).expect("extract");
        session.fit(&TargetGroup::PAPER).expect("fit");
        session.predict().expect("predict");
        base
    })
}

impl Base {
    fn session(&self, run: PathBuf, config: Config, subjects: &[u8]) -> Session {
        Session::new(
            RunDir::new(run),
            config,
            NsdLayout::new(&self.nsd),
            ModelsDir::new(&self.models),
            subjects.to_vec(),
            tch::Device::Cpu,
        )
    }
}

/// A copy of the shared run for one test, and a session on it.
struct Copy {
    _dir: tempfile::TempDir,
    run: PathBuf,
}

fn copy() -> Copy {
    let base = base();
    let dir = tempfile::tempdir().expect("temp dir");
    let run = dir.path().join("run");
    copy_tree(&base.root.join("run"), &run);
    Copy { _dir: dir, run }
}

impl Copy {
    fn session(&self, config: &Config, subjects: &[u8]) -> Session {
        base().session(self.run.clone(), config.clone(), subjects)
    }

    fn dir(&self) -> RunDir {
        RunDir::new(&self.run)
    }
}

fn stale(err: WorkflowError, recorded: &str, now: &str) {
    let message = err.to_string();
    assert!(matches!(err, WorkflowError::Stale { .. }), "not a stale-settings error: {message}");
    assert!(message.contains(recorded) && message.contains(now), "both settings must be shown: {message}");
}

fn truncate(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    std::fs::write(path, &bytes[..bytes.len() / 2]).unwrap();
    bytes
}

#[test]
fn the_average_is_refused_for_another_subject_list() {
    let c = copy();
    let config = &base().config;
    average_subjects(&c.dir(), &[1, 2], &TargetGroup::PAPER).unwrap();
    // `--subjects 1 average` (or 2,1) after `--subjects 1,2 average`: refused before anything is
    // made, both lists shown.
    stale(c.session(config, &[1]).average(Shard::WHOLE).unwrap_err(), "subjects = [1, 2]", "subjects = [1]");
    stale(c.session(config, &[2, 1]).roi(Shard::WHOLE).unwrap_err(), "subjects = [1, 2]", "subjects = [2, 1]");
    let err = c.session(config, &[1, 1]).average(Shard::WHOLE).unwrap_err().to_string();
    assert!(err.contains("listed twice"), "{err}");
    // A subject predicted again since (with a record that differs): the average is out of date.
    let predicted = c.dir().subject(2).root().join("predicted/settings.toml");
    let record = std::fs::read_to_string(&predicted).unwrap();
    std::fs::write(&predicted, record.replace("renormalisation", "renormalisation_was")).unwrap();
    let err = average_subjects(&c.dir(), &[1, 2], &TargetGroup::PAPER).unwrap_err();
    assert!(matches!(err, WorkflowError::Stale { .. }) && err.to_string().contains("subj02_predicted"), "{err}");
}

#[test]
fn settings_edited_after_fit_stop_every_step_that_reads_the_regressions() {
    let c = copy();
    let mut edited = base().config.clone();
    edited.regression.vdvae_alpha = 123.0;
    let (recorded, now) = ("alpha = 100\n", "alpha = 123\n");
    let s = c.session(&edited, &[1, 2]);
    stale(s.fit(&TargetGroup::PAPER).unwrap_err(), recorded, now);
    stale(s.predict().unwrap_err(), recorded, now);
    stale(s.weights_roi().unwrap_err(), recorded, now);
    stale(s.roi(Shard::WHOLE).unwrap_err(), recorded, now);
    stale(s.reconstruct(Shard::WHOLE).unwrap_err(), recorded, now);
    stale(s.ablate(1, &[Variant::NoClipText], Shard::WHOLE).unwrap_err(), recorded, now);
    stale(s.average(Shard::WHOLE).unwrap_err(), recorded, now);
    // The renormalisation (fit's and predict's): regressions and predictions made otherwise are refused.
    let mut renormalised = base().config.clone();
    renormalised.regression.renormalisation = brain_diffuser::config::Renormalisation::TrainOnly;
    stale(c.session(&renormalised, &[1]).reconstruct(Shard::WHOLE).unwrap_err(), "TestSet", "TrainOnly");
    // With the configuration of the fit, the same steps accept the regressions.
    c.session(&base().config, &[1, 2]).predict().unwrap();
}

/// Replaces `file` (relative to a models folder) in `models` by the same file of other tiny models
/// (another seed: the same names, shapes and sizes, other values).
fn replace_with_other_weights(models: &Path, file: &str) {
    static OTHER: OnceLock<PathBuf> = OnceLock::new();
    let other = OTHER.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("workflow-integrity-other-models");
        let _ = std::fs::remove_dir_all(&dir);
        brain_diffuser::models::write_tiny_models(&dir, 99).expect("other tiny models");
        dir
    });
    let (from, to) = (other.join(file), models.join(file));
    assert_eq!(std::fs::metadata(&from).unwrap().len(), std::fs::metadata(&to).unwrap().len(), "{file}");
    assert_ne!(std::fs::read(&from).unwrap(), std::fs::read(&to).unwrap(), "{file}");
    std::fs::copy(from, to).unwrap();
}

#[test]
fn replaced_checkpoints_make_the_steps_that_used_them_refuse_their_outputs() {
    let c = copy();
    let base = base();
    let models = c._dir.path().join("models");
    copy_tree(&base.models, &models);
    let session = |models: &Path| Session { models: ModelsDir::new(models), ..c.session(&base.config, &[1]) };
    // Features cached under a VDVAE (or CLIP) checkpoint are never reused for another one with the
    // same shapes: `extract` refuses them, both weight fingerprints shown.
    replace_with_other_weights(&models, "vdvae/model.safetensors");
    let err = session(&models).extract(Shard::WHOLE, &[TargetGroup::VDVAE]).unwrap_err();
    assert!(
        matches!(err, WorkflowError::Stale { .. }) && err.to_string().matches("vdvae@fnv1a64:").count() >= 2,
        "{err}"
    );
    replace_with_other_weights(&models, "versatile-diffusion/image_encoder/model.safetensors");
    let err = session(&models).extract(Shard::WHOLE, &[TargetGroup::CLIP_VISION]).unwrap_err();
    assert!(matches!(err, WorkflowError::Stale { .. }) && err.to_string().contains("vd-clip-vit-l14@"), "{err}");
    // The CLIP-Text features were made with the text tower, which is unchanged: still reused.
    session(&models).extract(Shard::WHOLE, &[TargetGroup::CLIP_TEXT]).unwrap();
    // Images: made with the original models, then the U-Net is replaced: `reconstruct` refuses the
    // images of the old one instead of mixing them with new ones.
    let original = c._dir.path().join("original-models");
    copy_tree(&base.models, &original);
    session(&original).reconstruct(Shard::WHOLE).unwrap();
    replace_with_other_weights(&original, "versatile-diffusion/image_unet/diffusion_pytorch_model.safetensors");
    let err = session(&original).reconstruct(Shard::WHOLE).unwrap_err();
    assert!(matches!(err, WorkflowError::Stale { .. }) && err.to_string().contains("vd-Float@"), "{err}");
}

/// A deterministic stand-in for the VDVAE decoder (stage 1 is all `evaluate` needs to check).
struct Painter;

impl Generator for Painter {
    type Condition = LatentCondition;

    fn name(&self) -> &str {
        "painter"
    }

    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::VDVAE]
    }

    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<LatentCondition, StageError> {
        LatentCondition::from_inputs("painter", inputs, &TargetGroup::VDVAE)
    }

    fn generate(&self, condition: &LatentCondition, _seeds: &[u64]) -> Result<Vec<image::RgbImage>, StageError> {
        let grey = |v: f32| (v.abs() * 50.0) as u8;
        Ok(condition
            .latents
            .rows()
            .into_iter()
            .map(|row| image::RgbImage::from_pixel(64, 64, image::Rgb([grey(row[0]); 3])))
            .collect())
    }
}

/// A deterministic stand-in for stage 2: the start image with its channels swapped, tinted by
/// the first CLIP-Text value and the text weight of the variant's settings.
struct Swapper(f64);

impl Generator for Swapper {
    type Condition = GuidedCondition;

    fn name(&self) -> &str {
        "channel-swapper"
    }

    fn consumes(&self) -> Vec<TargetGroup> {
        vec![TargetGroup::CLIP_VISION, TargetGroup::CLIP_TEXT]
    }

    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<GuidedCondition, StageError> {
        GuidedCondition::from_inputs("channel-swapper", inputs, &TargetGroup::CLIP_VISION, &TargetGroup::CLIP_TEXT)
    }

    fn generate(&self, condition: &GuidedCondition, seeds: &[u64]) -> Result<Vec<image::RgbImage>, StageError> {
        brain_diffuser::check_seed_count(self.name(), condition.init_images.len(), seeds)?;
        Ok(condition
            .init_images
            .iter()
            .enumerate()
            .map(|(k, img)| {
                let tint = (condition.text[[k, 0, 0]].abs() * 10.0 + self.0 as f32 * 100.0) as u8;
                image::RgbImage::from_fn(32, 32, |x, y| {
                    let p = img.get_pixel(x % img.width(), y % img.height()).0;
                    image::Rgb([p[2], p[0], tint])
                })
            })
            .collect())
    }
}

#[test]
fn downstream_generators_make_every_image_step_s_images() {
    let c = copy();
    let session = c
        .session(&base().config, &[1])
        .with_decoder(Painter)
        .with_refiner(|diffusion| Ok(Box::new(Swapper(diffusion.img2img.text_weight))));
    session.reconstruct(Shard::WHOLE).unwrap();
    session.ablate(1, &[Variant::NoClipText], Shard::WHOLE).unwrap();
    let subject = c.dir().subject(1);
    let predicted = brain_diffuser::workflow::fit::load_subject_predicted(&subject, &TargetGroup::PAPER).unwrap();
    let png = |variant: Variant, i: usize| {
        brain_diffuser::workflow::load_png(&subject.outputs.reconstructions(variant).join(format!("{i:04}.png")))
            .unwrap()
    };
    for i in [0, predicted.ids.len() - 1] {
        let stage1 = png(Variant::OnlyVdvae, i);
        let v = (predicted.rows(&TargetGroup::VDVAE).unwrap()[[i, 0]].abs() * 50.0) as u8;
        assert_eq!(stage1, image::RgbImage::from_pixel(64, 64, image::Rgb([v, v, v])), "stage 1 is the painter's");
        let text = predicted.rows(&TargetGroup::CLIP_TEXT).unwrap();
        let tint = |weight: f64| (text[[i, 0]].abs() * 10.0 + weight as f32 * 100.0) as u8;
        let weight = base().config.diffusion.img2img.text_weight;
        assert_eq!(
            png(Variant::BrainDiffuser, i),
            image::RgbImage::from_pixel(32, 32, image::Rgb([v, v, tint(weight)]))
        );
        // The ablation without CLIP-Text gets the refiner of its own settings (text weight 0).
        assert_eq!(png(Variant::NoClipText, i), image::RgbImage::from_pixel(32, 32, image::Rgb([v, v, tint(0.0)])));
    }
    let record =
        std::fs::read_to_string(subject.outputs.reconstructions(Variant::BrainDiffuser).join("settings.toml")).unwrap();
    assert!(record.contains("generator = \"channel-swapper\""), "{record}");
    // The models folder's generators refuse the downstream ones' images.
    let err = c.session(&base().config, &[1]).reconstruct(Shard::WHOLE).unwrap_err();
    assert!(matches!(err, WorkflowError::Stale { .. }) && err.to_string().contains("painter"), "{err}");
}

/// An image encoder of one zero feature per image.
struct Blank;

impl brain_diffuser::Encoder for Blank {
    type Input = image::RgbImage;

    fn name(&self) -> &str {
        "blank"
    }

    fn feature_shape(&self) -> &[usize] {
        &[1]
    }

    fn encode(&self, batch: &[image::RgbImage]) -> Result<ndarray::Array2<f32>, StageError> {
        Ok(ndarray::Array2::zeros((batch.len(), 1)))
    }
}

#[test]
fn an_image_encoder_for_the_caption_group_is_refused_naming_the_fix() {
    let c = copy();
    let session = c.session(&base().config, &[1]).with_image_encoder(TargetGroup::CLIP_TEXT, Blank);
    let err = session.extract(Shard::WHOLE, &[TargetGroup::VDVAE]).unwrap_err().to_string();
    assert!(err.contains("'blank'") && err.contains("with_caption_encoder"), "{err}");
}

#[test]
fn evaluate_refuses_images_made_with_other_settings_or_from_other_predictions() {
    let c = copy();
    let config = &base().config;
    let dir = c.dir().subject(1);
    let predicted = record_fingerprint(&dir.root().join("predicted"), "predictions", "predict").unwrap();
    let p = brain_diffuser::workflow::fit::load_subject_predicted(&dir, &TargetGroup::PAPER).unwrap();
    let names: Vec<String> = (0..p.ids.len()).map(|i| format!("{i:04}.png")).collect();
    let folder = dir.outputs.reconstructions(Variant::OnlyVdvae);
    let settings = image_settings(config, Variant::OnlyVdvae, &predicted);
    generate_images(&folder, &names, &p, None, 0..names.len(), &Painter, config.seeds.vdvae_decode, &settings, 1)
        .unwrap();
    check_image_settings(&folder, &settings).unwrap();
    // The decoder's temperature edited in the configuration after `reconstruct`.
    let mut edited = config.clone();
    edited.vdvae.temperature = 0.25;
    let err = c.session(&edited, &[1]).evaluate(&["brain-diffuser".to_owned()], 8).unwrap_err();
    stale(err, "temperature = 1\n", "temperature = 0.25\n");
    // Images made from other predictions (an earlier `predict`, say) are refused too.
    let record = folder.join("settings.toml");
    let text = std::fs::read_to_string(&record).unwrap();
    std::fs::write(&record, text.replace(&predicted, "fnv1a64:0123456789abcdef")).unwrap();
    let err = c.session(config, &[1]).evaluate(&["brain-diffuser".to_owned()], 8).unwrap_err();
    stale(err, "conditions = \"fnv1a64:0123456789abcdef\"", &format!("conditions = \"{predicted}\""));
}

#[test]
fn rotated_predicted_ids_are_refused_by_every_reader() {
    let c = copy();
    let config = &base().config;
    let dir = c.dir().subject(1);
    let ids_path = dir.outputs.predicted_ids();
    let text = std::fs::read_to_string(&ids_path).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.rotate_left(1);
    std::fs::write(&ids_path, lines.iter().map(|l| format!("{l}\n")).collect::<String>()).unwrap();
    std::fs::create_dir_all(dir.outputs.reconstructions(Variant::OnlyVdvae)).unwrap();
    let cache = SubjectData::cache_paths(&dir.fmri(), 1)[3].clone();
    let s = c.session(config, &[1, 2]);
    for (step, err) in [
        ("reconstruct", s.reconstruct(Shard::WHOLE).unwrap_err()),
        ("ablate", s.ablate(1, &[Variant::NoVdvae], Shard::WHOLE).unwrap_err()),
        ("average", s.average(Shard::WHOLE).unwrap_err()),
        ("evaluate", s.evaluate(&["brain-diffuser".to_owned()], 8).unwrap_err()),
        ("report", s.report(4, 32).unwrap_err()),
    ] {
        let message = err.to_string();
        assert!(
            message.contains(&ids_path.display().to_string()) && message.contains(&cache.display().to_string()),
            "{step} must name both files: {message}"
        );
    }
}

#[test]
fn stimulus_size_is_checked_against_the_stimulus_file() {
    let c = copy();
    let mut config = base().config.clone();
    config.data.stimulus_size = 425;
    let s = c.session(&config, &[1]);
    for err in [s.prepare().unwrap_err(), s.extract(Shard::WHOLE, &[TargetGroup::VDVAE]).unwrap_err()] {
        let message = err.to_string();
        for part in ["data.stimulus_size", "425", "64x64", "nsd_stimuli.hdf5"] {
            assert!(message.contains(part), "{part} missing from: {message}");
        }
    }
}

#[test]
fn prepare_rebuilds_missing_and_damaged_cache_files() {
    let c = copy();
    let config = &base().config;
    let dir = c.dir().subject(1);
    let paths = SubjectData::cache_paths(&dir.fmri(), 1);
    let original = |p: &Path| std::fs::read(p).unwrap();
    let captions = original(&paths[4]);
    std::fs::remove_file(&paths[4]).unwrap();
    // extract names the exact file and the repair.
    let s = c.session(config, &[1, 2]);
    let err = s.extract(Shard::WHOLE, &[TargetGroup::CLIP_TEXT]).unwrap_err().to_string();
    assert!(err.contains(&paths[4].display().to_string()) && err.contains("brain-diffuser prepare"), "{err}");
    // prepare repairs it (not "cached"), and leaves the whole subject 2 alone.
    let prepared = s.prepare().unwrap();
    assert_eq!(prepared.iter().map(|(s, p)| (*s, p.reused)).collect::<Vec<_>>(), vec![(1, false), (2, true)]);
    assert_eq!(original(&paths[4]), captions);
    // A caption file of the wrong length, a truncated fMRI file, ROI patterns and a ground truth.
    std::fs::copy(&paths[1 + 4], &paths[4]).unwrap();
    let fmri = truncate(&paths[1]);
    let patterns = truncate(&dir.roi_patterns());
    let truth = truncate(&dir.ground_truth().join("0003.png"));
    let prepared = c.session(config, &[1]).prepare().unwrap();
    assert!(!prepared[0].1.reused);
    assert_eq!(original(&paths[4]), captions);
    assert_eq!(original(&paths[1]), fmri);
    assert_eq!(original(&dir.roi_patterns()), patterns);
    assert_eq!(original(&dir.ground_truth().join("0003.png")), truth);
    assert!(c.session(config, &[1]).prepare().unwrap()[0].1.reused);
    // ROI patterns made from another V1-V4 source are refused, both settings shown.
    let mut floc = config.clone();
    floc.roi.visual_rois = brain_diffuser::config::VisualRoiSource::FlocFaces;
    stale(c.session(&floc, &[1]).prepare().unwrap_err(), "PrfVisualrois", "FlocFaces");
}

#[test]
fn damaged_features_regressions_and_norms_are_recomputed() {
    let c = copy();
    let config = &base().config;
    let dir = c.dir().subject(1);
    let s = c.session(config, &[1]);
    let folder = dir.features(&TargetGroup::VDVAE, brain_diffuser::workflow::DataSplit::Train);
    let mut chunks: Vec<PathBuf> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("rows-"))
        .collect();
    chunks.sort();
    assert!(chunks.len() >= 3, "{chunks:?}");
    let chunk = chunks[1].clone();
    let whole = truncate(&chunk);
    // Another chunk replaced by a valid .npy of the wrong shape.
    let other = std::fs::read(&chunks[0]).unwrap();
    let wrong_rows = chunks[2].clone();
    let third = std::fs::read(&wrong_rows).unwrap();
    let small = ndarray::Array2::<f32>::zeros((3, 5));
    brain_diffuser::workflow::save_npy(&wrong_rows, &small).unwrap();
    s.extract(Shard::WHOLE, &[TargetGroup::VDVAE]).unwrap();
    assert_eq!(std::fs::read(&chunk).unwrap(), whole, "the truncated chunk is computed again");
    assert_eq!(std::fs::read(&wrong_rows).unwrap(), third, "the chunk of the wrong shape is computed again");
    assert_eq!(std::fs::read(&chunks[0]).unwrap(), other);
    // Regression outputs: a truncated test prediction and ROI response are fitted again.
    let regression = dir.regression(&TargetGroup::CLIP_TEXT);
    let test = truncate(&regression.join("test.npy"));
    let response = truncate(&dir.regression(&TargetGroup::VDVAE).join("roi_response.npy"));
    s.fit(&TargetGroup::PAPER).unwrap();
    assert_eq!(std::fs::read(regression.join("test.npy")).unwrap(), test);
    assert_eq!(std::fs::read(dir.regression(&TargetGroup::VDVAE).join("roi_response.npy")).unwrap(), response);
    // Cached weight norms of weights-roi.
    s.weights_roi().unwrap();
    let norms = dir.weights_roi().join("clip-vision_l1.npy");
    let whole = truncate(&norms);
    s.weights_roi().unwrap();
    assert_eq!(std::fs::read(&norms).unwrap(), whole);
}

#[test]
fn a_report_before_evaluate_says_it_is_not_evaluated() {
    let c = copy();
    c.session(&base().config, &[1, 2]).report(4, 32).unwrap();
    let md = std::fs::read_to_string(c.dir().report().join("metrics.md")).unwrap();
    assert!(md.contains(brain_diffuser::workflow::report::NOT_EVALUATED), "{md}");
    assert!(md.contains("run `brain-diffuser evaluate`"), "{md}");
}
