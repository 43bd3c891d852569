//! The command line's steps over every configured subject: what `brain-diffuser <step>` runs, as
//! methods of a [`Session`] so that examples and tests drive exactly the same code.

use std::path::PathBuf;

use image::RgbImage;
use metrics::Extractors;
use nsd_io::NsdLayout;
use tch::Device;
use tracing::info;

use super::fit::{PredictedFeatures, load_predicted, load_subject};
use super::generate::{InitImages, stage1_images, stage2_images};
use super::loaders::StageLoader;
use super::prepare::{Prepared, image_name};
use super::weights::RoiSummary;
use super::{DataSplit, OutputDir, RunDir, Variant, WorkflowError, save_png};
use crate::config::Config;
use crate::models::ModelsDir;
use crate::report::{BarSeries, bar_chart};
use crate::shard::Shard;
use crate::stages::clip_metric::ClipImageEmbedding;
use crate::{Encoder, Generator, GuidedCondition, TargetGroup};

/// The stimuli of one subject: NSD ids and caption rows.
struct StimulusLists {
    train_ids: Vec<usize>,
    test_ids: Vec<usize>,
    train_captions: nsd_io::CaptionTable,
    test_captions: nsd_io::CaptionTable,
}

/// Everything the steps share: where the run, the data and the models are, the configuration,
/// the subjects and the device.
pub struct Session {
    pub run: RunDir,
    pub config: Config,
    pub nsd: NsdLayout,
    pub models: ModelsDir,
    pub subjects: Vec<u8>,
    pub device: Device,
}

impl Session {
    fn loader(&self) -> StageLoader<'_> {
        StageLoader { models: &self.models, config: &self.config, device: self.device }
    }

    fn stimuli(&self) -> Result<nsd_io::hdf5::StimulusBrick, WorkflowError> {
        Ok(nsd_io::hdf5::StimulusBrick::open(&self.nsd.stimuli())?)
    }

    fn subject_outputs(&self) -> Vec<OutputDir> {
        self.subjects.iter().map(|&s| self.run.subject(s).outputs).collect()
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

    /// `extract`: the features of `groups` for the training and test stimuli of this shard. Each
    /// model is loaded once and serves every subject.
    pub fn extract(&self, shard: Shard, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
        let stimuli = self.stimuli()?;
        let loader = self.loader();
        let subjects = self
            .subjects
            .iter()
            .map(|&s| {
                // Only the ids and captions are kept (not the fMRI).
                let nsd_io::SubjectData { train_ids, test_ids, train_captions, test_captions, .. } =
                    load_subject(&self.run.subject(s))?;
                Ok((s, self.run.subject(s), StimulusLists { train_ids, test_ids, train_captions, test_captions }))
            })
            .collect::<Result<Vec<_>, WorkflowError>>()?;
        for &group in groups {
            if group == TargetGroup::ClipText {
                let encoder = loader.clip_text()?;
                for (s, dir, subject) in &subjects {
                    for (split, rows, n) in [
                        (DataSplit::Train, &subject.train_captions.rows, subject.train_ids.len()),
                        (DataSplit::Test, &subject.test_captions.rows, subject.test_ids.len()),
                    ] {
                        if rows.len() != n {
                            return Err(WorkflowError::Invalid(format!(
                                "subject {s}: {} caption rows for {n} {} images; prepare with the NSD caption array",
                                rows.len(),
                                split.name()
                            )));
                        }
                        let label = format!("subj{s:02} clip-text {}", split.name());
                        super::extract::extract_captions(&dir.features(group, split), &encoder, rows, shard, &label)?;
                    }
                }
                continue;
            }
            let encoder: Box<dyn Encoder<Input = RgbImage>> = match group {
                TargetGroup::Vdvae => Box::new(loader.vdvae_encoder(loader.vdvae()?)?),
                _ => Box::new(loader.clip_vision()?),
            };
            for (s, dir, subject) in &subjects {
                for (split, ids) in [(DataSplit::Train, &subject.train_ids), (DataSplit::Test, &subject.test_ids)] {
                    let label = format!("subj{s:02} {} {}", group.name(), split.name());
                    super::extract::extract_images(
                        &dir.features(group, split),
                        encoder.as_ref(),
                        ids,
                        &stimuli,
                        shard,
                        &label,
                    )?;
                }
            }
        }
        Ok(())
    }

    /// `fit`: the regressions of `groups`.
    pub fn fit(&self, groups: &[TargetGroup]) -> Result<(), WorkflowError> {
        for &s in &self.subjects {
            super::fit::fit_subject(&self.run.subject(s), &self.config, groups)?;
        }
        Ok(())
    }

    /// `predict`: the renormalised test predictions.
    pub fn predict(&self) -> Result<(), WorkflowError> {
        for &s in &self.subjects {
            super::fit::predict_subject(&self.run.subject(s), &self.config, &TargetGroup::ALL)?;
        }
        Ok(())
    }

    /// `reconstruct`: stage 1 and the full model's stage 2 for every subject.
    pub fn reconstruct(&self, shard: Shard) -> Result<(), WorkflowError> {
        self.generate(&self.subject_outputs(), &[Variant::BrainDiffuser], shard)
    }

    /// `ablate`: stage 1 and the `variants` of stage 2 for one subject.
    pub fn ablate(&self, subject: u8, variants: &[Variant], shard: Shard) -> Result<(), WorkflowError> {
        self.generate(&[self.run.subject(subject).outputs], variants, shard)
    }

    /// `average`: predictions averaged over the subjects, then reconstructed.
    pub fn average(&self, shard: Shard) -> Result<(), WorkflowError> {
        let average = super::average::average_subjects(&self.run, &self.subjects)?;
        self.generate(&[average], &[Variant::BrainDiffuser], shard)
    }

    /// Stage 1 for every output folder, then stage 2 of each variant.
    fn generate(&self, outputs: &[OutputDir], variants: &[Variant], shard: Shard) -> Result<(), WorkflowError> {
        let loader = self.loader();
        let predicted = outputs.iter().map(load_predicted).collect::<Result<Vec<_>, _>>()?;
        {
            let decoder = loader.vdvae_decoder(loader.vdvae()?);
            for (out, p) in outputs.iter().zip(&predicted) {
                let names: Vec<String> = (0..p.ids.len()).map(image_name).collect();
                let folder = out.reconstructions(Variant::OnlyVdvae);
                let range = shard.range(names.len());
                let made =
                    stage1_images(&folder, &names, p.vdvae.view(), range, &decoder, self.config.seeds.vdvae_decode)?;
                info!(folder = %folder.display(), made, %shard, "stage 1");
            }
        }
        for &variant in variants {
            let Some(diffusion) = variant.diffusion(&self.config.diffusion) else { continue };
            let refiner = loader.refiner(&diffusion)?;
            for (out, p) in outputs.iter().zip(&predicted) {
                let names: Vec<String> = (0..p.ids.len()).map(image_name).collect();
                let stage1 = out.reconstructions(Variant::OnlyVdvae);
                let init = if variant.starts_from_stage1() {
                    InitImages::Folder(&stage1)
                } else {
                    InitImages::Grey(diffusion.resolution)
                };
                let folder = out.reconstructions(variant);
                let made = self.refine(&folder, &names, init, p, &refiner, shard.range(names.len()))?;
                info!(folder = %folder.display(), made, %shard, "stage 2");
            }
        }
        Ok(())
    }

    fn token_shapes(&self) -> ([usize; 2], [usize; 2]) {
        let c = &self.config.clip;
        ([c.vision_tokens, c.embedding_dim], [c.text_tokens, c.embedding_dim])
    }

    fn refine(
        &self,
        folder: &std::path::Path,
        names: &[String],
        init: InitImages<'_>,
        p: &PredictedFeatures,
        refiner: &dyn Generator<Condition = GuidedCondition>,
        range: std::ops::Range<usize>,
    ) -> Result<usize, WorkflowError> {
        let (vision_shape, text_shape) = self.token_shapes();
        stage2_images(
            folder,
            names,
            init,
            p.clip_vision.view(),
            vision_shape,
            p.clip_text.view(),
            text_shape,
            range,
            refiner,
            self.config.seeds.diffusion,
        )
    }

    /// `roi`: ROI-optimal features and images for every subject (and their average when there
    /// are several subjects).
    pub fn roi(&self, shard: Shard) -> Result<Vec<PathBuf>, WorkflowError> {
        for &s in &self.subjects {
            super::roi::roi_features(&self.run.subject(s), &self.config)?;
        }
        let mut outputs = self.subject_outputs();
        if self.subjects.len() > 1 {
            outputs.push(super::average::average_subjects(&self.run, &self.subjects)?);
        }
        let loader = self.loader();
        let names = super::roi::roi_image_names();
        let range = shard.range(names.len());
        let features = |out: &OutputDir| -> Result<PredictedFeatures, WorkflowError> {
            let read = |g| super::load_npy(&out.roi_features(g));
            Ok(PredictedFeatures {
                ids: Vec::new(),
                vdvae: read(TargetGroup::Vdvae)?,
                clip_vision: read(TargetGroup::ClipVision)?,
                clip_text: read(TargetGroup::ClipText)?,
            })
        };
        let all = outputs.iter().map(features).collect::<Result<Vec<_>, _>>()?;
        {
            let decoder = loader.vdvae_decoder(loader.vdvae()?);
            for (out, f) in outputs.iter().zip(&all) {
                let folder = out.roi_images(Variant::OnlyVdvae);
                stage1_images(
                    &folder,
                    &names,
                    f.vdvae.view(),
                    range.clone(),
                    &decoder,
                    self.config.seeds.vdvae_decode,
                )?;
            }
        }
        let refiner = loader.refiner(&self.config.diffusion)?;
        let mut folders = Vec::new();
        for (out, f) in outputs.iter().zip(&all) {
            let stage1 = out.roi_images(Variant::OnlyVdvae);
            let folder = out.roi_images(Variant::BrainDiffuser);
            self.refine(&folder, &names, InitImages::Folder(&stage1), f, &refiner, range.clone())?;
            folders.push(folder);
        }
        Ok(folders)
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
        let mut outputs: Vec<(String, OutputDir, PathBuf)> = self
            .subjects
            .iter()
            .map(|&s| (format!("subj{s:02}"), self.run.subject(s).outputs, self.run.subject(s).ground_truth()))
            .collect();
        if let (Some(&first), true) = (self.subjects.first(), self.run.average().predicted_ids().exists()) {
            // The average's rows follow the first subject's test order, and so do its ground truths.
            outputs.push(("average".into(), self.run.average(), self.run.subject(first).ground_truth()));
        }
        let mut reports = Vec::new();
        let bar = super::progress_bar(protocols.len() * outputs.len() * Variant::ALL.len(), "evaluate");
        for protocol in protocols {
            let networks = self.models.load_metric_networks(self.device, &metrics::Protocol::by_name(protocol)?)?;
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
            for (label, out, truth) in &outputs {
                for variant in Variant::ALL {
                    if let Some(r) =
                        super::evaluate::evaluate_variant(out, truth, variant, protocol, &extractors, batch_size)?
                    {
                        reports.push((format!("{label} {protocol}"), variant, r));
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

    /// `report`: the grid and the metrics table.
    pub fn report(&self, images: usize, cell: u32) -> Result<PathBuf, WorkflowError> {
        super::report::write_report(&self.run, &self.subjects, &self.config.evaluation.protocols, images, cell)?;
        Ok(self.run.report().join("grid.png"))
    }
}
