//! Stage 1 and stage 2 image by image, so that `reconstruct`, `ablate`, `average` and `roi` resume
//! at the first missing image and shards split the images.
//!
//! Image `i` of a folder is generated alone with the seed `image_seed(seed, i)`: its pixels depend
//! only on its own condition, the configured seed and its index — never on the shard, the batch or
//! an interrupted earlier run.

use std::ops::Range;
use std::path::Path;

use image::{Rgb, RgbImage};
use ndarray::{ArrayView2, Axis};

use super::{WorkflowError, check_settings, load_png, progress_bar, save_png};
use crate::stages::versatile_diffusion::image_seed;
use crate::{Generator, GuidedCondition, LatentCondition};

/// Stage 1: decodes latent row `i` into `folder/names[i]` for every `i` in `range` not yet there.
/// Returns the number of images made now.
pub fn stage1_images(
    folder: &Path,
    names: &[String],
    latents: ArrayView2<f32>,
    range: Range<usize>,
    decoder: &dyn Generator<Condition = LatentCondition>,
    seed: u64,
) -> Result<usize, WorkflowError> {
    check_lengths(names.len(), &[("latent rows", latents.nrows())])?;
    check_settings(folder, &format!("generator = {:?}\nseed = {seed}\n", decoder.name()))?;
    let todo: Vec<usize> = range.filter(|&i| !folder.join(&names[i]).exists()).collect();
    let bar = progress_bar(todo.len(), "stage 1 (VDVAE)");
    for &i in &todo {
        let condition = LatentCondition { latents: latents.slice(ndarray::s![i..i + 1, ..]).to_owned() };
        let image = decoder.generate(&condition, image_seed(seed, i))?.into_iter().next();
        let image = image.ok_or_else(|| WorkflowError::Invalid(format!("'{}' returned no image", decoder.name())))?;
        save_png(&folder.join(&names[i]), &image)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(todo.len())
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
/// `[tokens, width]` embedding) into `folder/names[i]`, for every `i` in `range` not yet there.
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
) -> Result<usize, WorkflowError> {
    check_lengths(names.len(), &[("CLIP-Vision rows", vision.nrows()), ("CLIP-Text rows", text.nrows())])?;
    let init_name = match &init {
        InitImages::Folder(_) => "stage-1 images".to_owned(),
        InitImages::Grey(side) => format!("grey {side}x{side}"),
    };
    check_settings(folder, &format!("generator = {:?}\nseed = {seed}\ninit = {init_name:?}\n", refiner.name()))?;
    let todo: Vec<usize> = range.filter(|&i| !folder.join(&names[i]).exists()).collect();
    let bar = progress_bar(todo.len(), "stage 2 (Versatile Diffusion)");
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
        let image = refiner.generate(&condition, image_seed(seed, i))?.into_iter().next();
        let image = image.ok_or_else(|| WorkflowError::Invalid(format!("'{}' returned no image", refiner.name())))?;
        save_png(&folder.join(&names[i]), &image)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(todo.len())
}

fn check_lengths(names: usize, inputs: &[(&str, usize)]) -> Result<(), WorkflowError> {
    for (what, n) in inputs {
        if *n != names {
            return Err(WorkflowError::Invalid(format!("{n} {what} for {names} images")));
        }
    }
    Ok(())
}
