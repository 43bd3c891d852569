//! Stage 1 and stage 2 in batches of images, so that `reconstruct`, `ablate`, `average` and `roi`
//! resume at the first missing image and shards split the images.
//!
//! Image `i` of a folder is generated with the seed [`item_seed`]`(seed, i)` (the rule of
//! [`crate::seeds`]), and a generator draws every random number of an image from its own seed:
//! its pixels depend only on its own condition, the configured seed and its index — never on the
//! shard, the batch or an interrupted earlier run. While the generator works on one batch, a
//! reader thread loads the next batch's start images and a writer thread encodes and writes the
//! previous batch's PNGs.

use std::ops::Range;
use std::path::Path;

use image::{Rgb, RgbImage};

use super::fit::PredictedFeatures;
use super::integrity::{check_png, read_record, record_fingerprint, reusable};
use super::overlap::overlapped;
use super::{Progress, Variant, WorkflowError, check_settings, load_png, save_png};
use crate::AnyGenerator;
use crate::config::{Config, DiffusionSection};
use crate::seeds::{ITEM_SEED_RULE, item_seed};
use crate::stage::checked_images;

/// The part of an image folder's settings record that the configuration and the conditions
/// determine (everything but the generator's name and the groups it consumes, which the folder's
/// record holds before it): `seed` and the rule that derives each image's seed from it
/// ([`ITEM_SEED_RULE`]), the decoder's or the variant's diffusion settings, and `conditions`, the
/// fingerprint of the record of the features the images are made from. Image steps write it into
/// the record of every image folder; `evaluate` checks it there.
pub fn image_settings(config: &Config, variant: Variant, conditions: &str) -> String {
    let c = config;
    let options = match variant.diffusion(&c.diffusion) {
        None => format!(
            "seed = {}\nlayers = {}\ntemperature = {}\npixel_sampling = {:?}\nupscale_size = {}\n",
            c.seeds.vdvae_decode, c.vdvae.layers, c.vdvae.temperature, c.vdvae.pixel_sampling, c.vdvae.upscale_size
        ),
        Some(DiffusionSection { img2img: d, resolution, cuda_precision }) => format!(
            "seed = {}\nsteps = {}\nstrength = {}\nguidance_scale = {}\ntext_weight = {}\neta = {}\n\
             noise_start = {:?}\nresolution = {}\ncuda_precision = {:?}\n",
            c.seeds.diffusion,
            d.steps,
            d.strength,
            d.guidance_scale,
            d.text_weight,
            d.eta,
            d.noise_timestep,
            resolution,
            cuda_precision,
        ),
    };
    format!("{options}image_seeds = {ITEM_SEED_RULE:?}\nconditions = \"{conditions}\"\n")
}

/// Checks that the images in `folder` were made with `settings` ([`image_settings`]: the
/// configuration's, from the current predictions), for a step that reads them (`evaluate`):
/// images made with other settings are [`WorkflowError::Stale`], both records shown.
pub fn check_image_settings(folder: &Path, settings: &str) -> Result<(), WorkflowError> {
    let what = format!("the settings record of the images in {}", folder.display());
    let recorded = read_record(folder, &what, "reconstruct")?;
    if recorded.contains(&format!("\n{settings}")) {
        Ok(())
    } else {
        Err(WorkflowError::Stale { dir: folder.to_owned(), recorded, now: settings.to_owned() })
    }
}

/// Makes image `i` of `folder` (`folder/names[i]`) with `generator` from row `i` of the predicted
/// groups it consumes (and start image `i` when `init` is given: stage 2), for every `i` in
/// `range` not yet there (or there but damaged: every existing image is decoded first, and one
/// that does not decode is made again, with a warning). The folder's record holds the generator's
/// name, the groups it consumes with their feature shapes, `settings` ([`image_settings`]) and
/// the start images (with the fingerprint of the stage-1 folder's record); images made otherwise
/// are refused. Image `i` is made with the seed [`item_seed`]`(seed, i)`, in calls of at most
/// `batch` consecutive images (which changes no image). Returns the number of images made now.
#[allow(clippy::too_many_arguments)]
pub fn generate_images(
    folder: &Path,
    names: &[String],
    features: &PredictedFeatures,
    init: Option<InitImages<'_>>,
    range: Range<usize>,
    generator: &dyn AnyGenerator,
    seed: u64,
    settings: &str,
    batch: usize,
) -> Result<usize, WorkflowError> {
    let stage = if init.is_some() { "stage 2" } else { "stage 1" };
    let consumed = generator.consumes();
    for group in &consumed {
        let rows = features.rows(group)?.nrows();
        if rows != names.len() {
            return Err(WorkflowError::Invalid(format!("{rows} predicted {group} rows for {} images", names.len())));
        }
    }
    let init_line = match &init {
        None => String::new(),
        Some(InitImages::Folder(dir)) => format!(
            "init = \"stage-1 images\"\ninit_images = \"{}\"\n",
            record_fingerprint(dir, "stage-1 images", "reconstruct")?
        ),
        Some(InitImages::Grey(side)) => format!("init = \"grey {side}x{side}\"\n"),
    };
    if let Some(first) = range.clone().next() {
        // The condition of the first image, with a placeholder start image: rows of shapes the
        // generator cannot take are refused before anything is written.
        let placeholder = if init.is_some() { vec![RgbImage::new(1, 1)] } else { Vec::new() };
        generator.check_inputs(&features.inputs(&consumed, first..first + 1, placeholder)?)?;
    }
    let record =
        format!("generator = {:?}\n{}{settings}{init_line}", generator.name(), features.shapes_line(&consumed)?);
    check_settings(folder, &record)?;
    let part = range.clone();
    let todo: Vec<usize> = range.filter(|&i| !reusable(&folder.join(&names[i]), check_png)).collect();
    let bar = Progress::each(todo.len(), &format!("{stage} ({})", short_name(generator.name())));
    let batches = contiguous_batches(&todo, batch.max(1));
    let start_images = |batch: &Range<usize>| -> Result<Vec<RgbImage>, WorkflowError> {
        batch
            .clone()
            .map(|i| match &init {
                None => Ok(None),
                Some(InitImages::Folder(dir)) => {
                    let path = dir.join(&names[i]);
                    if !path.exists() {
                        return Err(WorkflowError::missing(
                            format!("stage-1 image {}", names[i]),
                            &path,
                            "reconstruct",
                        ));
                    }
                    load_png(&path).map(Some)
                }
                Some(InitImages::Grey(side)) => Ok(Some(RgbImage::from_pixel(*side, *side, Rgb([127, 127, 127])))),
            })
            .filter_map(Result::transpose)
            .collect()
    };
    let write = |(i, image): (usize, RgbImage)| -> Result<(), WorkflowError> {
        save_png(&folder.join(&names[i]), &image)?;
        bar.inc_with(1, |done, len| position_line(stage, i, names.len(), &part, done, len, folder));
        Ok(())
    };
    let generate = |b: &Range<usize>, start: Vec<RgbImage>| -> Result<Vec<(usize, RgbImage)>, WorkflowError> {
        let inputs = features.inputs(&consumed, b.clone(), start)?;
        let seeds: Vec<u64> = b.clone().map(|i| item_seed(seed, i)).collect();
        let images = checked_images(generator.name(), generator.generate_from(&inputs, &seeds)?, b.len())?;
        Ok(b.clone().zip(images).collect())
    };
    overlapped(&batches, batch.max(1), &start_images, generate, &write)?;
    bar.finish_and_clear();
    Ok(todo.len())
}

/// `todo` (ascending image indices) cut into runs of consecutive indices of at most `batch`.
fn contiguous_batches(todo: &[usize], batch: usize) -> Vec<Range<usize>> {
    let mut out: Vec<Range<usize>> = Vec::new();
    for &i in todo {
        match out.last_mut() {
            Some(last) if last.end == i && last.len() < batch => last.end = i + 1,
            _ => out.push(i..i + 1),
        }
    }
    out
}

/// A generator's name up to its first `:` or `@` (`versatile-diffusion`), for progress labels.
fn short_name(name: &str) -> &str {
    name.split([':', '@']).next().unwrap_or(name)
}

/// The log line of image `i` (of `total`) just made, the `done`-th of the `todo` images to make
/// now in `part` (the shard's images): `stage 2 image 37 of 982 (shard images 246..492: 12 of
/// 246; 3 of 10 to make now) in <folder>`.
fn position_line(
    stage: &str,
    i: usize,
    total: usize,
    part: &Range<usize>,
    done: u64,
    todo: u64,
    folder: &Path,
) -> String {
    let mut line = format!("{stage} image {} of {total}", i + 1);
    let mut notes = Vec::new();
    if part.len() != total {
        notes.push(format!("shard images {}..{}: {} of {}", part.start + 1, part.end, i + 1 - part.start, part.len()));
    }
    if todo != part.len() as u64 {
        notes.push(format!("{done} of {todo} to make now"));
    }
    if !notes.is_empty() {
        line.push_str(&format!(" ({})", notes.join("; ")));
    }
    line.push_str(&format!(" in {}", folder.display()));
    line
}

/// Where stage 2 starts from.
pub enum InitImages<'a> {
    /// The stage-1 images of this folder, same names.
    Folder(&'a Path),
    /// A uniform grey image of this side (for the ablation without VDVAE, whose img2img strength
    /// of 1 makes the start pure noise anyway).
    Grey(u32),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_lines_give_the_position_in_the_whole_set_and_in_the_shard() {
        let folder = Path::new("run/subj01/reconstructions/brain-diffuser");
        // Shard 2/4 of 982 images is 245..491 (246 images); its 12th image is image 257 of 982.
        let line = position_line("stage 2", 256, 982, &(245..491), 12, 246, folder);
        assert_eq!(
            line,
            format!("stage 2 image 257 of 982 (shard images 246..491: 12 of 246) in {}", folder.display())
        );
        let resumed = position_line("stage 1", 9, 10, &(0..10), 3, 4, folder);
        assert_eq!(resumed, format!("stage 1 image 10 of 10 (3 of 4 to make now) in {}", folder.display()));
        let whole = position_line("stage 1", 0, 10, &(0..10), 1, 10, folder);
        assert_eq!(whole, format!("stage 1 image 1 of 10 in {}", folder.display()));
    }
}

#[cfg(test)]
mod cache_tests {
    use super::*;
    use crate::workflow::fit::PredictedGroup;
    use crate::{ConditionInputs, Generator, GuidedCondition, LatentCondition, StageError, TargetGroup};
    use ndarray::Array2;

    /// Paints each image from its latent row and the seed: a deterministic stand-in for VDVAE.
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

        fn generate(&self, condition: &LatentCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
            let paint = |k: usize| {
                let (v, seed) = (condition.latents[[k, 0]], seeds[k]);
                RgbImage::from_fn(24, 24, |x, y| Rgb([(v as u32 + x) as u8, (seed as u32 + y) as u8, 7]))
            };
            Ok((0..seeds.len()).map(paint).collect())
        }
    }

    /// Refines by inverting the start image: a deterministic stand-in for stage 2.
    struct Inverter;

    impl Generator for Inverter {
        type Condition = GuidedCondition;

        fn name(&self) -> &str {
            "inverter"
        }

        fn consumes(&self) -> Vec<TargetGroup> {
            vec![TargetGroup::CLIP_VISION, TargetGroup::CLIP_TEXT]
        }

        fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<GuidedCondition, StageError> {
            GuidedCondition::from_inputs("inverter", inputs, &TargetGroup::CLIP_VISION, &TargetGroup::CLIP_TEXT)
        }

        fn generate(&self, condition: &GuidedCondition, _seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
            let invert = |image: &RgbImage| {
                let mut image = image.clone();
                image.pixels_mut().for_each(|p| p.0 = p.0.map(|c| 255 - c));
                image
            };
            Ok(condition.init_images.iter().map(invert).collect())
        }
    }

    fn predicted(n: usize, groups: &[(TargetGroup, Vec<usize>)]) -> PredictedFeatures {
        let groups = groups
            .iter()
            .map(|(group, shape)| {
                let width = shape.iter().product();
                let rows = Array2::from_shape_fn((n, width), |(i, j)| (10 * i + j) as f32);
                PredictedGroup { group: group.clone(), shape: shape.clone(), rows }
            })
            .collect();
        PredictedFeatures { ids: (0..n).collect(), groups }
    }

    #[test]
    fn damaged_images_are_made_again_and_other_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (stage1, stage2) = (dir.path().join("only-vdvae"), dir.path().join("brain-diffuser"));
        let names: Vec<String> = (0..4).map(|i| format!("{i:04}.png")).collect();
        let features = predicted(
            4,
            &[
                (TargetGroup::VDVAE, vec![3]),
                (TargetGroup::CLIP_VISION, vec![1, 2]),
                (TargetGroup::CLIP_TEXT, vec![2, 1]),
            ],
        );
        let config = Config::default();
        let s1 = image_settings(&config, Variant::OnlyVdvae, "fnv1a64:0000000000000001");
        let s2 = image_settings(&config, Variant::BrainDiffuser, "fnv1a64:0000000000000001");
        let run_in =
            |out: &Path, range: Range<usize>, s1: &str, batch: usize| -> Result<(usize, usize), WorkflowError> {
                let (stage1, stage2) = (out.join("only-vdvae"), out.join("brain-diffuser"));
                let a = generate_images(&stage1, &names, &features, None, range.clone(), &Painter, 5, s1, batch)?;
                let b = generate_images(
                    &stage2,
                    &names,
                    &features,
                    Some(InitImages::Folder(&stage1)),
                    range,
                    &Inverter,
                    5,
                    &s2,
                    batch,
                )?;
                Ok((a, b))
            };
        let run = |range: Range<usize>, s1: &str| run_in(dir.path(), range, s1, 3);
        assert_eq!(run(0..4, &s1).unwrap(), (4, 4));
        let record = std::fs::read_to_string(stage2.join("settings.toml")).unwrap();
        assert!(
            record.starts_with("generator = \"inverter\"\nconsumes = [\"clip-vision [1, 2]\", \"clip-text [2, 1]\"]\n"),
            "{record}"
        );
        let bytes =
            |folder: &Path| -> Vec<Vec<u8>> { names.iter().map(|n| std::fs::read(folder.join(n)).unwrap()).collect() };
        let (first1, first2) = (bytes(&stage1), bytes(&stage2));
        // One image per call, and in two shards: the same bytes as batches of 3.
        let single = dir.path().join("single");
        assert_eq!(run_in(&single, 2..4, &s1, 1).unwrap(), (2, 2));
        assert_eq!(run_in(&single, 0..2, &s1, 1).unwrap(), (2, 2));
        let (single1, single2) = (single.join("only-vdvae"), single.join("brain-diffuser"));
        assert_eq!((bytes(&single1), bytes(&single2)), (first1.clone(), first2.clone()));
        assert_eq!(run(0..4, &s1).unwrap(), (0, 0), "whole images are kept");
        // A truncated stage-1 image and an empty final image: both made again, identical.
        std::fs::write(stage1.join(&names[1]), &first1[1][..first1[1].len() / 2]).unwrap();
        std::fs::write(stage2.join(&names[2]), b"").unwrap();
        assert_eq!(run(0..4, &s1).unwrap(), (1, 1));
        assert_eq!((bytes(&stage1), bytes(&stage2)), (first1, first2));
        // Other decoder settings (a configuration edited since) are refused with both records.
        let mut edited = config.clone();
        edited.vdvae.temperature = 0.5;
        let other = image_settings(&edited, Variant::OnlyVdvae, "fnv1a64:0000000000000001");
        let err = run(0..4, &other).unwrap_err();
        assert!(matches!(err, WorkflowError::Stale { .. }), "{err}");
        assert!(err.to_string().contains("temperature = 0.5") && err.to_string().contains("temperature = 1"), "{err}");
        // A reader (`evaluate`) accepts the folder for its own settings only: other settings, or
        // images made from other predictions, are refused.
        check_image_settings(&stage1, &s1).unwrap();
        check_image_settings(&stage2, &s2).unwrap();
        assert!(matches!(check_image_settings(&stage1, &other), Err(WorkflowError::Stale { .. })));
        let newer = image_settings(&config, Variant::OnlyVdvae, "fnv1a64:0000000000000002");
        let err = check_image_settings(&stage1, &newer).unwrap_err().to_string();
        assert!(err.contains("fnv1a64:0000000000000001") && err.contains("fnv1a64:0000000000000002"), "{err}");
        let mut steps = config.clone();
        steps.diffusion.img2img.steps = 20;
        let err =
            check_image_settings(&stage2, &image_settings(&steps, Variant::BrainDiffuser, "fnv1a64:0000000000000001"));
        assert!(err.unwrap_err().to_string().contains("steps = 20"));
        assert!(matches!(check_image_settings(dir.path(), &s1), Err(WorkflowError::Missing { .. })));
    }

    /// Predictions of other shapes than the groups' (made under another encoder) or without a
    /// group the generator consumes are refused before anything is written.
    #[test]
    fn groups_a_generator_consumes_must_be_predicted_in_their_recorded_shapes() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..2).map(crate::workflow::prepare::image_name).collect();
        let run = |features: &PredictedFeatures| {
            generate_images(dir.path(), &names, features, Some(InitImages::Grey(4)), 0..2, &Inverter, 5, "", 2)
        };
        let no_text = predicted(2, &[(TargetGroup::CLIP_VISION, vec![3, 2])]);
        let err = run(&no_text).unwrap_err().to_string();
        assert!(err.contains("no predicted features of target group 'clip-text'"), "{err}");
        let flat = predicted(2, &[(TargetGroup::CLIP_VISION, vec![6]), (TargetGroup::CLIP_TEXT, vec![2, 2])]);
        let err = run(&flat).unwrap_err().to_string();
        assert!(err.contains("group 'clip-vision' has feature shape [6]"), "{err}");
        let short = predicted(1, &[(TargetGroup::CLIP_VISION, vec![3, 2]), (TargetGroup::CLIP_TEXT, vec![2, 2])]);
        let err = run(&short).unwrap_err().to_string();
        assert!(err.contains("1 predicted clip-vision rows for 2 images"), "{err}");
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written before the checks");
    }
}
