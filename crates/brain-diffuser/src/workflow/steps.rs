//! The command line's steps over every configured subject: what `brain-diffuser <step>` runs, as
//! methods of a [`Session`] so that examples and tests drive exactly the same code.

use std::path::{Path, PathBuf};

use image::RgbImage;
use metrics::Extractors;
use nsd_io::NsdLayout;
use tch::Device;
use tracing::info;

use super::fit::{
    PredictedFeatures, PredictedGroup, cache_ids, group_shapes, load_predicted, load_subject_predicted,
    load_subject_predicted_ids, predicted_folder, require_predicted,
};
use super::generate::{InitImages, check_image_settings, generate_images, image_settings};
use super::integrity::record_fingerprint;
use super::loaders::StageLoader;
use super::prepare::{Prepared, image_name};
use super::weights::RoiSummary;
use super::{DataSplit, OutputDir, RunDir, SubjectDir, Variant, WorkflowError, save_png};
use crate::config::{Config, DiffusionSection};
use crate::models::ModelsDir;
use crate::report::{BarSeries, bar_chart};
use crate::shard::Shard;
use crate::stages::clip_metric::ClipImageEmbedding;
use crate::stages::ridge::RidgeRegressor;
use crate::{AnyGenerator, Encoder, Generator, Regressor, TargetGroup};

/// The features one image folder is made from, and the fingerprint of their settings record
/// (which goes into the image folders' records).
struct Conditions {
    out: OutputDir,
    features: PredictedFeatures,
    fingerprint: String,
}

/// The caption rows of one split of a subject cache, one row per image of `ids_path`; a missing
/// or short file names itself and the repair (`prepare` rebuilds it from the NSD caption array).
fn cached_captions(
    dir: &SubjectDir,
    split: DataSplit,
    ids_path: &Path,
    n: usize,
    nsd: &NsdLayout,
) -> Result<Vec<Vec<String>>, WorkflowError> {
    let [.., train, test] = nsd_io::SubjectData::cache_paths(&dir.fmri(), dir.subject);
    let path = if split == DataSplit::Train { train } else { test };
    let what = format!(
        "the subject {} {} captions (`prepare` rebuilds them from the NSD caption array {})",
        dir.subject,
        split.name(),
        nsd.captions.display()
    );
    if !path.exists() {
        return Err(WorkflowError::missing(what, &path, "prepare"));
    }
    let rows = nsd_io::CaptionTable::read_npy(&path)?.rows;
    if rows.len() != n {
        return Err(WorkflowError::Invalid(format!(
            "{}: {} caption rows for the {n} {} images of {}; run `brain-diffuser prepare` to rebuild it from \
             the NSD caption array {}",
            path.display(),
            rows.len(),
            split.name(),
            ids_path.display(),
            nsd.captions.display()
        )));
    }
    Ok(rows)
}

/// Everything the steps share: where the run, the data and the models are, the configuration,
/// the subjects, the device, and the stages.
///
/// The stages are the models folder's (loaded when a step needs them, on [`Session::device`])
/// unless replaced through the builder methods: [`Session::with_regressor`],
/// [`Session::with_image_encoder`] and [`Session::with_caption_encoder`] (for one of the paper's
/// target groups, or a new group that `extract`, `fit` and `predict` then handle like the others),
/// [`Session::with_decoder`] (stage 1) and [`Session::with_refiner`] (stage 2). The command line,
/// the examples and the tests all run the steps through this type.
pub struct Session {
    pub run: RunDir,
    pub config: Config,
    pub nsd: NsdLayout,
    pub models: ModelsDir,
    pub subjects: Vec<u8>,
    /// Where the models folder's stages run (the loader builds them on it).
    pub device: Device,
    /// The regressor `fit` runs, and whose settings `predict` and the image steps check in the
    /// regressions' records: ridge with the configured alphas ([`Session::new`]) unless replaced
    /// ([`Session::with_regressor`]).
    pub regressor: Box<dyn Regressor>,
    /// Encoders that replace the models folder's for their target group, or add a group.
    pub encoders: Vec<(TargetGroup, GroupEncoder)>,
    /// A stage-1 generator that replaces the VDVAE decoder ([`Session::with_decoder`]).
    pub decoder: Option<Box<dyn AnyGenerator>>,
    /// Makes the stage-2 generator of a variant's diffusion settings in place of Versatile
    /// Diffusion's ([`Session::with_refiner`]).
    pub refiner: Option<Box<RefinerFactory>>,
    /// Images per generator call in the image steps ([`default_image_batch`] of the device unless
    /// set with [`Session::with_image_batch`]): it changes speed and memory, never an image.
    pub image_batch: usize,
}

/// The default [`Session::image_batch`] (the command line's `--batch`) on `device`: 4 on CUDA
/// (8 U-Net rows per forward with guidance at 512x512), 1 on the CPU, which runs a batch image by
/// image anyway (`versatile_diffusion::BatchForward::Auto`) and measured no gain from larger ones.
pub fn default_image_batch(device: Device) -> usize {
    match device {
        Device::Cpu => 1,
        _ => 4,
    }
}

/// An encoder handed to a [`Session`] for one target group: of the stimulus images, or of their
/// captions.
pub enum GroupEncoder {
    Images(Box<dyn Encoder<Input = RgbImage>>),
    Captions(Box<dyn Encoder<Input = Vec<String>>>),
}

impl GroupEncoder {
    fn name(&self) -> &str {
        match self {
            GroupEncoder::Images(e) => e.name(),
            GroupEncoder::Captions(e) => e.name(),
        }
    }
}

/// Makes a stage-2 generator for the diffusion settings of one variant (the full model's, or an
/// ablation's: text weight 0 or 1, strength 1 without VDVAE).
pub type RefinerFactory = dyn Fn(&DiffusionSection) -> Result<Box<dyn AnyGenerator>, WorkflowError>;

/// An output folder `evaluate` scores: its label (`subj01`, `average`), the ground truths its rows
/// follow, the fingerprint of its predictions' record, and the subject whose test order (and
/// extracted features) its rows follow.
struct EvaluatedOutput {
    label: String,
    out: OutputDir,
    truth: PathBuf,
    fingerprint: String,
    order: u8,
}

/// A stage the session holds (a downstream one) or has just loaded from the models folder.
enum StageRef<'a, T: ?Sized> {
    Held(&'a T),
    Loaded(Box<T>),
}

impl<T: ?Sized> std::ops::Deref for StageRef<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        match self {
            StageRef::Held(stage) => stage,
            StageRef::Loaded(stage) => stage,
        }
    }
}

impl Session {
    /// A session with the default stages: the models of `models` (built on `device`) and ridge
    /// regressions with the alphas of `config`.
    pub fn new(
        run: RunDir,
        config: Config,
        nsd: NsdLayout,
        models: ModelsDir,
        subjects: Vec<u8>,
        device: Device,
    ) -> Self {
        let regressor = Box::new(RidgeRegressor::from_config(&config.regression));
        Self {
            run,
            config,
            nsd,
            models,
            subjects,
            device,
            regressor,
            encoders: Vec::new(),
            decoder: None,
            refiner: None,
            image_batch: default_image_batch(device),
        }
    }

    /// The session with `batch` images per generator call in the image steps (at least 1).
    pub fn with_image_batch(mut self, batch: usize) -> Self {
        self.image_batch = batch.max(1);
        self
    }

    /// The target groups of this session: the paper's three, then the groups of the encoders
    /// given for new groups, in the order they were given.
    pub fn groups(&self) -> Vec<TargetGroup> {
        let mut groups = TargetGroup::PAPER.to_vec();
        groups.extend(self.encoders.iter().map(|(g, _)| g.clone()).filter(|g| !TargetGroup::PAPER.contains(g)));
        groups
    }

    /// The same session with `decoder` making the stage-1 images of `reconstruct`, `ablate`,
    /// `average` and `roi` from the predicted groups it consumes. Its name goes into the images'
    /// records.
    pub fn with_decoder(mut self, decoder: impl Generator + 'static) -> Self {
        self.decoder = Some(Box::new(decoder));
        self
    }

    /// The same session with `make_refiner` making the stage-2 generator of each variant's
    /// diffusion settings.
    pub fn with_refiner(
        mut self,
        make_refiner: impl Fn(&DiffusionSection) -> Result<Box<dyn AnyGenerator>, WorkflowError> + 'static,
    ) -> Self {
        self.refiner = Some(Box::new(make_refiner));
        self
    }

    /// The same session with `encoder` making the features of `group` from the stimulus images
    /// in `extract`: one of the paper's image groups (VDVAE, CLIP-Vision) in place of the models
    /// folder's encoder, or a new group, fitted and predicted like the others (a regressor needs
    /// settings for it: `RidgeRegressor::with_alpha`) and handed to the generators that consume
    /// it. Its [`Encoder::name`] keys the features' record, so features of another encoder are
    /// refused, never mixed; its [`Encoder::feature_shape`] is recorded with them and reaches the
    /// generators.
    pub fn with_image_encoder(mut self, group: TargetGroup, encoder: impl Encoder<Input = RgbImage> + 'static) -> Self {
        self.encoders.retain(|(g, _)| *g != group);
        self.encoders.push((group, GroupEncoder::Images(Box::new(encoder))));
        self
    }

    /// The same session with `encoder` making the features of `group` from the stimuli's captions
    /// (CLIP-Text's group, or a new one; see [`Session::with_image_encoder`]).
    pub fn with_caption_encoder(
        mut self,
        group: TargetGroup,
        encoder: impl Encoder<Input = Vec<String>> + 'static,
    ) -> Self {
        self.encoders.retain(|(g, _)| *g != group);
        self.encoders.push((group, GroupEncoder::Captions(Box::new(encoder))));
        self
    }

    /// The same session with another regressor for `fit` (a downstream project's): every later
    /// step reads its outputs the same way, and outputs of another regressor are refused.
    pub fn with_regressor(mut self, regressor: impl Regressor + 'static) -> Self {
        self.regressor = Box::new(regressor);
        self
    }

    /// The loader of the models folder's stages, on the session's device.
    fn loader(&self) -> StageLoader<'_> {
        StageLoader { models: &self.models, config: &self.config, device: self.device }
    }

    /// Checks that the session's encoders keep the paper's groups' meaning: CLIP-Text features
    /// come from captions, the VDVAE and CLIP-Vision features from images.
    fn check_encoder_inputs(&self) -> Result<(), WorkflowError> {
        for (group, encoder) in &self.encoders {
            let captions = matches!(encoder, GroupEncoder::Captions(_));
            if *group == TargetGroup::CLIP_TEXT && !captions {
                return Err(WorkflowError::Invalid(format!(
                    "image encoder '{}' was given for the clip-text group, whose features come from captions: \
                     give a caption encoder (Session::with_caption_encoder)",
                    encoder.name()
                )));
            }
            if (*group == TargetGroup::VDVAE || *group == TargetGroup::CLIP_VISION) && captions {
                return Err(WorkflowError::Invalid(format!(
                    "caption encoder '{}' was given for the {group} group, whose features come from the stimulus \
                     images: give an image encoder (Session::with_image_encoder)",
                    encoder.name()
                )));
            }
        }
        Ok(())
    }

    /// The encoder of `group`: the session's, or the models folder's for the paper's groups.
    fn encoder(&self, group: &TargetGroup) -> Result<StageRef<'_, GroupEncoder>, WorkflowError> {
        if let Some((_, encoder)) = self.encoders.iter().find(|(g, _)| g == group) {
            return Ok(StageRef::Held(encoder));
        }
        let loader = self.loader();
        Ok(StageRef::Loaded(Box::new(if *group == TargetGroup::VDVAE {
            GroupEncoder::Images(Box::new(loader.vdvae_encoder(loader.vdvae()?)?))
        } else if *group == TargetGroup::CLIP_VISION {
            GroupEncoder::Images(Box::new(loader.clip_vision()?))
        } else if *group == TargetGroup::CLIP_TEXT {
            GroupEncoder::Captions(Box::new(loader.clip_text()?))
        } else {
            return Err(self.unknown_group(group));
        })))
    }

    /// The error for a group that is neither the paper's nor given with an encoder.
    fn unknown_group(&self, group: &TargetGroup) -> WorkflowError {
        let known: Vec<String> = self.groups().iter().map(|g| g.name().to_owned()).collect();
        WorkflowError::Invalid(format!(
            "target group '{group}' has no encoder in this session (its groups: {known:?}): give one with \
             Session::with_image_encoder or with_caption_encoder"
        ))
    }

    /// Checks that every group of `groups` is one of the session's.
    fn check_groups(&self, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
        let known = self.groups();
        match groups.iter().find(|g| !known.contains(g)) {
            Some(group) => Err(self.unknown_group(group)),
            None => Ok(()),
        }
    }

    /// The stage-1 generator: the session's, or the models folder's VDVAE decoder.
    fn stage1_generator(&self) -> Result<StageRef<'_, dyn AnyGenerator>, WorkflowError> {
        Ok(match &self.decoder {
            Some(decoder) => StageRef::Held(decoder.as_ref()),
            None => {
                let loader = self.loader();
                StageRef::Loaded(Box::new(loader.vdvae_decoder(loader.vdvae()?)?))
            }
        })
    }

    /// The stage-2 generator of `diffusion`: the session's factory's, or Versatile Diffusion.
    fn stage2_generator(&self, diffusion: &DiffusionSection) -> Result<Box<dyn AnyGenerator>, WorkflowError> {
        match &self.refiner {
            Some(make) => make(diffusion),
            None => Ok(Box::new(self.loader().refiner(diffusion)?)),
        }
    }

    /// The NSD stimulus file, checked against `data.stimulus_size`.
    fn stimuli(&self) -> Result<nsd_io::hdf5::StimulusBrick, WorkflowError> {
        super::prepare::open_stimuli(&self.nsd, &self.config)
    }

    /// The settings of the models folder's encoder of `group` that its features depend on (into
    /// the features' record); a session's own encoder says its settings in its name.
    fn encoder_options(&self, group: &TargetGroup) -> String {
        let c = &self.config;
        if self.encoders.iter().any(|(g, _)| g == group) {
            String::new()
        } else if *group == TargetGroup::VDVAE {
            // The batch size too: libtorch picks kernels by batch, so the features' bits depend on it.
            format!(
                "layers = {}\ntarget = {:?}\nseed = {}\nbatch_size = {}\n",
                c.vdvae.layers, c.vdvae.target, c.seeds.vdvae_targets, c.vdvae.batch_size
            )
        } else if *group == TargetGroup::CLIP_VISION {
            format!("vision_resize = {}\ncuda_precision = {:?}\n", c.clip.vision_resize, c.clip.cuda_precision)
        } else if *group == TargetGroup::CLIP_TEXT {
            format!("cuda_precision = {:?}\n", c.clip.cuda_precision)
        } else {
            String::new()
        }
    }

    /// A subject's predicted features of every group, made by `predict` with the settings the
    /// configuration implies, their ids checked against the subject cache.
    fn subject_conditions(&self, subject: u8) -> Result<Conditions, WorkflowError> {
        let dir = self.run.subject(subject);
        let groups = self.groups();
        require_predicted(&dir, &self.config, self.regressor.as_ref(), &groups)?;
        let features = load_subject_predicted(&dir, &groups)?;
        let what = format!("the subject {subject} predicted features");
        let fingerprint = record_fingerprint(&predicted_folder(&dir.outputs), &what, "predict")?;
        Ok(Conditions { out: dir.outputs, features, fingerprint })
    }

    /// The subjects' predictions averaged (see [`super::average::average_subjects`]), their ids
    /// checked against the first subject's cache; the feature shapes are the first subject's.
    fn average_conditions(&self) -> Result<Conditions, WorkflowError> {
        let groups = self.groups();
        for &s in &self.subjects {
            require_predicted(&self.run.subject(s), &self.config, self.regressor.as_ref(), &groups)?;
        }
        let out = super::average::average_subjects(&self.run, &self.subjects, &groups)?;
        let (_, first) = super::average::load_average_ids(&self.run)?;
        let features = load_predicted(&out, &group_shapes(&self.run.subject(first), &groups)?)?;
        let fingerprint = record_fingerprint(out.root(), "the subject average", "average")?;
        Ok(Conditions { out, features, fingerprint })
    }

    /// `prepare`: the subject caches, ROI patterns and ground-truth images.
    pub fn prepare(&self) -> Result<Vec<(u8, Prepared)>, WorkflowError> {
        let stimuli = self.stimuli()?;
        self.subjects
            .iter()
            .map(|&s| {
                Ok((s, super::prepare::prepare_subject(&self.nsd, &stimuli, &self.config, &self.run.subject(s))?))
            })
            .collect()
    }

    /// `extract`: the features of `groups` (the session's: [`Session::groups`]) for the training
    /// and test stimuli of this shard. Each model is loaded once and serves every subject.
    pub fn extract(&self, shard: Shard, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
        self.check_groups(groups)?;
        self.check_encoder_inputs()?;
        let stimuli = self.stimuli()?;
        // Only the ids are read from the subject cache (and the captions for caption groups), not the fMRI.
        let subjects = self
            .subjects
            .iter()
            .map(|&s| {
                let dir = self.run.subject(s);
                if !nsd_io::SubjectData::cache_paths(&dir.fmri(), s)[0].exists() {
                    return Err(WorkflowError::missing(format!("subject {s} fMRI"), &dir.fmri(), "prepare"));
                }
                let splits = [DataSplit::Train, DataSplit::Test]
                    .map(|split| cache_ids(&dir, split).map(|(path, ids)| (split, path, ids)));
                let [train, test] = splits;
                Ok((s, dir, [train?, test?]))
            })
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        for group in groups {
            let options = self.encoder_options(group);
            let encoder = self.encoder(group)?;
            for (s, dir, splits) in &subjects {
                for (split, ids_path, ids) in splits {
                    let label = format!("subj{s:02} {group} {}", split.name());
                    let folder = dir.features(group, *split);
                    match &*encoder {
                        GroupEncoder::Captions(encoder) => {
                            let captions = cached_captions(dir, *split, ids_path, ids.len(), &self.nsd)?;
                            let encoder = encoder.as_ref();
                            super::extract::extract_captions(
                                &folder, encoder, &options, ids, &captions, shard, &label,
                            )?;
                        }
                        GroupEncoder::Images(encoder) => {
                            let encoder = encoder.as_ref();
                            super::extract::extract_images(&folder, encoder, &options, ids, &stimuli, shard, &label)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// `fit`: the regressions of `groups` (the session's).
    pub fn fit(&self, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
        self.check_groups(groups)?;
        for &s in &self.subjects {
            super::fit::fit_subject(&self.run.subject(s), &self.config, self.regressor.as_ref(), groups)?;
        }
        Ok(())
    }

    /// `predict`: the renormalised test predictions of every group of the session.
    pub fn predict(&self) -> Result<(), WorkflowError> {
        for &s in &self.subjects {
            super::fit::predict_subject(&self.run.subject(s), &self.config, self.regressor.as_ref(), &self.groups())?;
        }
        Ok(())
    }

    /// `reconstruct`: stage 1 and the full model's stage 2 for every subject.
    pub fn reconstruct(&self, shard: Shard) -> Result<(), WorkflowError> {
        let conditions = self.subjects.iter().map(|&s| self.subject_conditions(s)).collect::<Result<Vec<_>, _>>()?;
        self.generate(&conditions, &[Variant::BrainDiffuser], shard)
    }

    /// `ablate`: stage 1 and the `variants` of stage 2 for one subject.
    pub fn ablate(&self, subject: u8, variants: &[Variant], shard: Shard) -> Result<(), WorkflowError> {
        self.generate(&[self.subject_conditions(subject)?], variants, shard)
    }

    /// `average`: predictions averaged over the subjects, then reconstructed. The average's
    /// record holds the subject list: another list for the same run is refused.
    pub fn average(&self, shard: Shard) -> Result<(), WorkflowError> {
        self.generate(&[self.average_conditions()?], &[Variant::BrainDiffuser], shard)
    }

    /// Stage 1 for every output folder, then stage 2 of each variant.
    fn generate(&self, conditions: &[Conditions], variants: &[Variant], shard: Shard) -> Result<(), WorkflowError> {
        {
            let decoder = self.stage1_generator()?;
            for c in conditions {
                let names: Vec<String> = (0..c.features.ids.len()).map(image_name).collect();
                let folder = c.out.reconstructions(Variant::OnlyVdvae);
                let settings = image_settings(&self.config, Variant::OnlyVdvae, &c.fingerprint);
                let seed = self.config.seeds.vdvae_decode;
                let range = shard.range(names.len());
                let made = generate_images(
                    &folder,
                    &names,
                    &c.features,
                    None,
                    range,
                    &*decoder,
                    seed,
                    &settings,
                    self.image_batch,
                )?;
                info!(folder = %folder.display(), made, %shard, "stage 1");
            }
        }
        for &variant in variants {
            let Some(diffusion) = variant.diffusion(&self.config.diffusion) else { continue };
            let refiner = self.stage2_generator(&diffusion)?;
            for c in conditions {
                let names: Vec<String> = (0..c.features.ids.len()).map(image_name).collect();
                let stage1 = c.out.reconstructions(Variant::OnlyVdvae);
                let init = if variant.starts_from_stage1() {
                    InitImages::Folder(&stage1)
                } else {
                    InitImages::Grey(diffusion.resolution)
                };
                let folder = c.out.reconstructions(variant);
                let settings = image_settings(&self.config, variant, &c.fingerprint);
                let (range, seed) = (shard.range(names.len()), self.config.seeds.diffusion);
                let made = generate_images(
                    &folder,
                    &names,
                    &c.features,
                    Some(init),
                    range,
                    refiner.as_ref(),
                    seed,
                    &settings,
                    self.image_batch,
                )?;
                info!(folder = %folder.display(), made, %shard, "stage 2");
            }
        }
        Ok(())
    }

    /// `roi`: ROI-optimal features and images for every subject (and their average when there
    /// are several subjects).
    pub fn roi(&self, shard: Shard) -> Result<Vec<PathBuf>, WorkflowError> {
        for &s in &self.subjects {
            super::roi::roi_features(&self.run.subject(s), &self.config, self.regressor.as_ref())?;
        }
        let mut outputs: Vec<(OutputDir, u8)> =
            self.subjects.iter().map(|&s| (self.run.subject(s).outputs, s)).collect();
        if self.subjects.len() > 1 {
            let out = self.average_conditions()?.out;
            outputs.push((out, super::average::load_average_ids(&self.run)?.1));
        }
        let names = super::roi::roi_image_names();
        let range = shard.range(names.len());
        // The ROI-optimal features exist for the paper's groups, in the shapes of the subject's
        // (for the average: the first subject's) features.
        let features = |(out, shapes_of): (OutputDir, u8)| -> Result<Conditions, WorkflowError> {
            let groups = group_shapes(&self.run.subject(shapes_of), &TargetGroup::PAPER)?
                .into_iter()
                .map(|(group, shape)| {
                    let rows = super::load_npy(&out.roi_features(&group))?;
                    Ok(PredictedGroup { group, shape, rows })
                })
                .collect::<Result<Vec<_>, WorkflowError>>()?;
            let features = PredictedFeatures { ids: Vec::new(), groups };
            let fingerprint = record_fingerprint(&out.roi_features_folder(), "the ROI-optimal features", "roi")?;
            Ok(Conditions { out, features, fingerprint })
        };
        let all = outputs.into_iter().map(features).collect::<Result<Vec<_>, _>>()?;
        {
            let decoder = self.stage1_generator()?;
            for c in &all {
                let folder = c.out.roi_images(Variant::OnlyVdvae);
                let settings = image_settings(&self.config, Variant::OnlyVdvae, &c.fingerprint);
                let seed = self.config.seeds.vdvae_decode;
                generate_images(
                    &folder,
                    &names,
                    &c.features,
                    None,
                    range.clone(),
                    &*decoder,
                    seed,
                    &settings,
                    self.image_batch,
                )?;
            }
        }
        let refiner = self.stage2_generator(&self.config.diffusion)?;
        let mut folders = Vec::new();
        for c in &all {
            let stage1 = c.out.roi_images(Variant::OnlyVdvae);
            let folder = c.out.roi_images(Variant::BrainDiffuser);
            let settings = image_settings(&self.config, Variant::BrainDiffuser, &c.fingerprint);
            generate_images(
                &folder,
                &names,
                &c.features,
                Some(InitImages::Folder(&stage1)),
                range.clone(),
                refiner.as_ref(),
                self.config.seeds.diffusion,
                &settings,
                self.image_batch,
            )?;
            folders.push(folder);
        }
        Ok(folders)
    }

    /// The output folders `evaluate` scores (each subject, and the average when there is one), with
    /// the ground truths their rows follow and the fingerprint of their predictions' record; their
    /// predicted ids are checked against the subject caches.
    fn evaluated_outputs(&self) -> Result<Vec<EvaluatedOutput>, WorkflowError> {
        let has_images = |out: &OutputDir| Variant::ALL.iter().any(|&v| out.reconstructions(v).is_dir());
        let mut outputs = Vec::new();
        for &s in &self.subjects {
            let dir = self.run.subject(s);
            if !has_images(&dir.outputs) {
                continue;
            }
            require_predicted(&dir, &self.config, self.regressor.as_ref(), &self.groups())?;
            load_subject_predicted_ids(&dir)?;
            let fingerprint = record_fingerprint(&predicted_folder(&dir.outputs), "the predicted features", "predict")?;
            outputs.push(EvaluatedOutput {
                label: format!("subj{s:02}"),
                out: dir.outputs.clone(),
                truth: dir.ground_truth(),
                fingerprint,
                order: s,
            });
        }
        let average = self.run.average();
        if average.predicted_ids().exists() && has_images(&average) {
            // The average's rows follow its first subject's test order, and so do its ground truths.
            let (_, first) = super::average::load_average_ids(&self.run)?;
            let fingerprint = record_fingerprint(average.root(), "the subject average", "average")?;
            let truth = self.run.subject(first).ground_truth();
            outputs.push(EvaluatedOutput { label: "average".into(), out: average, truth, fingerprint, order: first });
        }
        Ok(outputs)
    }

    /// `evaluate`: every variant present, for every subject and the average, under `protocols`.
    pub fn evaluate(
        &self,
        protocols: &[String],
        batch_size: usize,
    ) -> Result<Vec<(String, Variant, metrics::EvaluationReport)>, WorkflowError> {
        // A tiny CLIP (the demo's) takes 28x28 images, not the protocols' 224: no CLIP column then.
        let clip = match self.models.is_tiny() {
            true => None,
            false => self.models.load_clip_metric(self.device)?.map(ClipImageEmbedding::new),
        };
        let outputs = self.evaluated_outputs()?;
        // Images made with other settings than the configuration's, or from other predictions,
        // are refused before anything is scored.
        for o in &outputs {
            for variant in Variant::ALL {
                let folder = o.out.reconstructions(variant);
                if folder.is_dir() {
                    check_image_settings(&folder, &image_settings(&self.config, variant, &o.fingerprint))?;
                }
            }
        }
        // Retrieval compares the predictions with the extracted embeddings: one score per folder.
        let retrieval = outputs
            .iter()
            .map(|o| super::evaluate::clip_vision_retrieval(&o.out, &self.run.subject(o.order), &self.config))
            .collect::<Result<Vec<_>, _>>()?;
        let mut reports = Vec::new();
        let bar = super::Progress::each(protocols.len() * outputs.len() * Variant::ALL.len(), "evaluate");
        for protocol in protocols {
            let run_as = self.config.evaluation.protocol(protocol)?;
            let networks = self.models.load_metric_networks(self.device, &run_as)?;
            if networks.is_empty() {
                tracing::warn!(models = %self.models.root().display(), protocol, "no metric networks: pixel metrics only");
            }
            let mut extractors = Extractors::new();
            for (slot, net) in &networks {
                extractors = extractors.with(slot, net);
            }
            if let Some(clip) = &clip {
                extractors = extractors.with(metrics::protocol::slots::CLIP, clip);
            }
            for (o, retrieval) in outputs.iter().zip(&retrieval) {
                for variant in Variant::ALL {
                    let scored = super::evaluate::evaluate_variant(
                        &o.out,
                        &o.truth,
                        variant,
                        &run_as,
                        &extractors,
                        batch_size,
                        retrieval.as_ref(),
                    )?;
                    if let Some(r) = scored {
                        reports.push((format!("{} {protocol}", o.label), variant, r));
                    }
                    bar.inc(1);
                }
            }
        }
        bar.finish_and_clear();
        Ok(reports)
    }

    /// `weights-roi`: the Figure 7 table over the subjects and its bar chart (`figure7.png`).
    pub fn weights_roi(&self) -> Result<Vec<RoiSummary>, WorkflowError> {
        let summary = super::weights::weight_roi_summary(&self.run, &self.config, &self.subjects)?;
        let labels: Vec<String> = summary.iter().map(|r| r.roi.to_owned()).collect();
        let series = |name: &str, pick: fn(&RoiSummary) -> (f64, f64), color| BarSeries {
            name: name.to_owned(),
            values: summary.iter().map(|r| pick(r).0).collect(),
            errors: Some(summary.iter().map(|r| pick(r).1).collect()),
            color,
        };
        let chart = bar_chart(
            &format!("Regression weights per ROI: CLIP vs VDVAE, subjects {:?} (error bars: SEM)", self.subjects),
            &labels,
            &[
                series("CLIP-Vision", |r| r.clip_vision, image::Rgb([31, 119, 180])),
                series("CLIP-Text", |r| r.clip_text, image::Rgb([255, 127, 14])),
            ],
            "(CLIP - VDVAE) / VDVAE percentile",
        );
        save_png(&self.run.weights_roi().join("figure7.png"), &chart)?;
        Ok(summary)
    }

    /// `report`: the grid, the metrics table and the self-contained page `report/index.html`.
    pub fn report(&self, images: usize, cell: u32) -> Result<super::report::ReportFiles, WorkflowError> {
        super::report::write_report(&self.run, &self.subjects, &self.config.evaluation.protocols, images, cell)
    }
}
