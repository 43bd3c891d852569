//! Stage 1 and stage 2 image by image, so that `reconstruct`, `ablate`, `average` and `roi` resume
//! at the first missing image and shards split the images.
//!
//! Image `i` of a folder is generated alone with the seed [`item_seed`]`(seed, i)` (the rule of
//! [`crate::seeds`]): its pixels depend only on its own condition, the configured seed and its
//! index — never on the shard, the batch or an interrupted earlier run.

use std::ops::Range;
use std::path::Path;

use image::{Rgb, RgbImage};
use ndarray::{ArrayView2, Axis};

use super::integrity::{check_png, read_record, record_fingerprint, reusable};
use super::{Progress, Variant, WorkflowError, check_settings, load_png, save_png};
use crate::config::{Config, DiffusionSection};
use crate::seeds::{ITEM_SEED_RULE, item_seed};
use crate::stage::single_image;
use crate::{Generator, GuidedCondition, LatentCondition};

/// The part of an image folder's settings record that the configuration and the conditions
/// determine (everything but the generator's name, which also says the device's precision):
/// `seed` and the rule that derives each image's seed from it ([`ITEM_SEED_RULE`]), the decoder's
/// or the variant's diffusion settings, the token shapes, and `conditions`,
/// the fingerprint of the record of the features the images are made from. `generate` writes it
/// into the record of every image folder; `evaluate` checks it there.
pub fn image_settings(config: &Config, variant: Variant, conditions: &str) -> String {
    let c = config;
    let options = match variant.diffusion(&c.diffusion) {
        None => format!(
            "seed = {}\nlayers = {}\ntemperature = {}\npixel_sampling = {:?}\nupscale_size = {}\n",
            c.seeds.vdvae_decode, c.vdvae.layers, c.vdvae.temperature, c.vdvae.pixel_sampling, c.vdvae.upscale_size
        ),
        Some(DiffusionSection { img2img: d, resolution, cuda_precision }) => format!(
            "seed = {}\nsteps = {}\nstrength = {}\nguidance_scale = {}\ntext_weight = {}\neta = {}\n\
             noise_start = {:?}\nresolution = {}\ncuda_precision = {:?}\nvision_shape = [{}, {}]\n\
             text_shape = [{}, {}]\n",
            c.seeds.diffusion,
            d.steps,
            d.strength,
            d.guidance_scale,
            d.text_weight,
            d.eta,
            d.noise_timestep,
            resolution,
            cuda_precision,
            c.clip.vision_tokens,
            c.clip.embedding_dim,
            c.clip.text_tokens,
            c.clip.embedding_dim
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

/// Stage 1: decodes latent row `i` into `folder/names[i]` for every `i` in `range` not yet there
/// (or there but damaged: every existing image is decoded first, and one that does not decode
/// is made again, with a warning). `settings` ([`image_settings`]) goes into the folder's record
/// after the decoder's name; images made with other settings are refused. Returns the number of
/// images made now.
pub fn stage1_images(
    folder: &Path,
    names: &[String],
    latents: ArrayView2<f32>,
    range: Range<usize>,
    decoder: &dyn Generator<Condition = LatentCondition>,
    seed: u64,
    settings: &str,
) -> Result<usize, WorkflowError> {
    check_lengths(names.len(), &[("latent rows", latents.nrows())])?;
    check_settings(folder, &format!("generator = {:?}\n{settings}", decoder.name()))?;
    let part = range.clone();
    let todo: Vec<usize> = range.filter(|&i| !reusable(&folder.join(&names[i]), check_png)).collect();
    let bar = Progress::each(todo.len(), "stage 1 (VDVAE)");
    for &i in &todo {
        let condition = LatentCondition { latents: latents.slice(ndarray::s![i..i + 1, ..]).to_owned() };
        let image = single_image(decoder.name(), decoder.generate(&condition, &[item_seed(seed, i)])?)?;
        save_png(&folder.join(&names[i]), &image)?;
        bar.inc_with(1, |done, len| position_line("stage 1", i, names.len(), &part, done, len, folder));
    }
    bar.finish_and_clear();
    Ok(todo.len())
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

/// Stage 2: refines image `i` under CLIP-Vision row `i` and CLIP-Text row `i` (each a flattened
/// `[tokens, width]` embedding) into `folder/names[i]`, for every `i` in `range` not yet there or
/// damaged (as in [`stage1_images`]). The folder's record holds the refiner's name, `settings`
/// ([`image_settings`]) and the start images (with the fingerprint of the stage-1 folder's record).
#[allow(clippy::too_many_arguments)]
pub fn stage2_images(
    folder: &Path,
    names: &[String],
    init: InitImages<'_>,
    vision: ArrayView2<f32>,
    vision_shape: [usize; 2],
    text: ArrayView2<f32>,
    text_shape: [usize; 2],
    range: Range<usize>,
    refiner: &dyn Generator<Condition = GuidedCondition>,
    seed: u64,
    settings: &str,
) -> Result<usize, WorkflowError> {
    check_lengths(names.len(), &[("CLIP-Vision rows", vision.nrows()), ("CLIP-Text rows", text.nrows())])?;
    check_token_width("CLIP-Vision", vision.ncols(), vision_shape, "vision_tokens")?;
    check_token_width("CLIP-Text", text.ncols(), text_shape, "text_tokens")?;
    let init_name = match &init {
        InitImages::Folder(dir) => {
            format!(
                "\"stage-1 images\"\ninit_images = \"{}\"",
                record_fingerprint(dir, "stage-1 images", "reconstruct")?
            )
        }
        InitImages::Grey(side) => format!("\"grey {side}x{side}\""),
    };
    check_settings(folder, &format!("generator = {:?}\n{settings}init = {init_name}\n", refiner.name()))?;
    let part = range.clone();
    let todo: Vec<usize> = range.filter(|&i| !reusable(&folder.join(&names[i]), check_png)).collect();
    let bar = Progress::each(todo.len(), "stage 2 (Versatile Diffusion)");
    let tokens = |rows: ArrayView2<f32>, i: usize, [t, w]: [usize; 2]| -> Result<ndarray::Array3<f32>, WorkflowError> {
        let row = rows.index_axis(Axis(0), i).to_owned();
        row.into_shape_with_order((1, t, w))
            .map_err(|e| WorkflowError::Invalid(format!("embedding row as [{t}, {w}]: {e}")))
    };
    for &i in &todo {
        let init_image = match &init {
            InitImages::Folder(dir) => {
                let path = dir.join(&names[i]);
                if !path.exists() {
                    return Err(WorkflowError::missing(format!("stage-1 image {}", names[i]), &path, "reconstruct"));
                }
                load_png(&path)?
            }
            InitImages::Grey(side) => RgbImage::from_pixel(*side, *side, Rgb([127, 127, 127])),
        };
        let condition = GuidedCondition {
            init_images: vec![init_image],
            vision: tokens(vision, i, vision_shape)?,
            text: tokens(text, i, text_shape)?,
        };
        let image = single_image(refiner.name(), refiner.generate(&condition, &[item_seed(seed, i)])?)?;
        save_png(&folder.join(&names[i]), &image)?;
        bar.inc_with(1, |done, len| position_line("stage 2", i, names.len(), &part, done, len, folder));
    }
    bar.finish_and_clear();
    Ok(todo.len())
}

/// A predicted embedding row must hold `[tokens, width]` values: a mismatch means the predictions
/// were made under another `[clip]` configuration than the one the generator is built from.
fn check_token_width(what: &str, values: usize, [t, w]: [usize; 2], tokens_key: &str) -> Result<(), WorkflowError> {
    if values == t * w {
        return Ok(());
    }
    Err(WorkflowError::Invalid(format!(
        "predicted {what} rows have {values} values each, but the config's [clip] {tokens_key} x embedding_dim = \
         {t} x {w} = {} (the predictions were made with another CLIP configuration: run extract, fit and \
         predict again, or restore the config)",
        t * w
    )))
}

fn check_lengths(names: usize, inputs: &[(&str, usize)]) -> Result<(), WorkflowError> {
    for (what, n) in inputs {
        if *n != names {
            return Err(WorkflowError::Invalid(format!("{n} {what} for {names} images")));
        }
    }
    Ok(())
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
    use crate::StageError;
    use ndarray::Array2;

    /// Paints each image from its latent row and the seed: a deterministic stand-in for VDVAE.
    struct Painter;

    impl Generator for Painter {
        type Condition = LatentCondition;

        fn name(&self) -> &str {
            "painter"
        }

        fn generate(&self, condition: &LatentCondition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
            let (v, seed) = (condition.latents[[0, 0]], seeds[0]);
            Ok(vec![RgbImage::from_fn(24, 24, |x, y| Rgb([(v as u32 + x) as u8, (seed as u32 + y) as u8, 7]))])
        }
    }

    /// Refines by inverting the start image: a deterministic stand-in for stage 2.
    struct Inverter;

    impl Generator for Inverter {
        type Condition = GuidedCondition;

        fn name(&self) -> &str {
            "inverter"
        }

        fn generate(&self, condition: &GuidedCondition, _seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
            let mut image = condition.init_images[0].clone();
            image.pixels_mut().for_each(|p| p.0 = p.0.map(|c| 255 - c));
            Ok(vec![image])
        }
    }

    #[test]
    fn damaged_images_are_made_again_and_other_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let (stage1, stage2) = (dir.path().join("only-vdvae"), dir.path().join("brain-diffuser"));
        let names: Vec<String> = (0..4).map(|i| format!("{i:04}.png")).collect();
        let latents = Array2::from_shape_fn((4, 3), |(i, j)| (10 * i + j) as f32);
        let config = Config::default();
        let s1 = image_settings(&config, Variant::OnlyVdvae, "fnv1a64:0000000000000001");
        let s2 = image_settings(&config, Variant::BrainDiffuser, "fnv1a64:0000000000000001");
        let tokens = Array2::zeros((4, 2));
        let run = |range: Range<usize>, s1: &str| -> Result<(usize, usize), WorkflowError> {
            let a = stage1_images(&stage1, &names, latents.view(), range.clone(), &Painter, 5, s1)?;
            let b = stage2_images(
                &stage2,
                &names,
                InitImages::Folder(&stage1),
                tokens.view(),
                [1, 2],
                tokens.view(),
                [1, 2],
                range,
                &Inverter,
                5,
                &s2,
            )?;
            Ok((a, b))
        };
        assert_eq!(run(0..4, &s1).unwrap(), (4, 4));
        let bytes =
            |folder: &Path| -> Vec<Vec<u8>> { names.iter().map(|n| std::fs::read(folder.join(n)).unwrap()).collect() };
        let (first1, first2) = (bytes(&stage1), bytes(&stage2));
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

    #[test]
    fn predictions_of_another_clip_width_are_refused_naming_the_config_keys() {
        let dir = tempfile::tempdir().unwrap();
        let names: Vec<String> = (0..2).map(crate::workflow::prepare::image_name).collect();
        let (vision, text) = (Array2::<f32>::zeros((2, 6)), Array2::<f32>::zeros((2, 4)));
        let run = |vision_shape: [usize; 2], text_shape: [usize; 2]| {
            stage2_images(
                dir.path(),
                &names,
                InitImages::Grey(4),
                vision.view(),
                vision_shape,
                text.view(),
                text_shape,
                0..2,
                &Inverter,
                5,
                "",
            )
        };
        let err = run([2, 2], [2, 2]).unwrap_err().to_string();
        assert!(
            err.contains("CLIP-Vision rows have 6 values") && err.contains("vision_tokens x embedding_dim = 2 x 2"),
            "{err}"
        );
        let err = run([3, 2], [1, 2]).unwrap_err().to_string();
        assert!(
            err.contains("CLIP-Text rows have 4 values") && err.contains("text_tokens x embedding_dim = 1 x 2"),
            "{err}"
        );
        assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written before the check");
    }
}
