//! `extract`: the VDVAE, CLIP-Vision and CLIP-Text features of a subject's training and test
//! stimuli, written in row chunks (see [`super::features`]); `--shard K/N` takes the K-th of N
//! parts of the chunks.

use std::ops::Range;
use std::path::Path;

use image::RgbImage;
use tracing::info;

use super::features::{CHUNK_ROWS, chunk_path, chunks, write_chunk};
use super::prepare::StimulusSource;
use super::{WorkflowError, check_settings, progress_bar};
use crate::Encoder;
use crate::shard::Shard;

/// What one extraction did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extracted {
    /// Chunks computed now.
    pub computed: usize,
    /// Chunks of this shard already on disk.
    pub reused: usize,
}

/// Encodes items `0..n` (those of `shard`) with `encoder` into chunk files in `dir`; `load` gives
/// the items of a row range. Chunks already on disk are kept.
pub fn extract_rows<I>(
    dir: &Path,
    encoder: &dyn Encoder<Input = I>,
    n: usize,
    shard: Shard,
    load: &dyn Fn(Range<usize>) -> Result<Vec<I>, WorkflowError>,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    let settings = format!("encoder = {:?}\nrows = {n}\nchunk_rows = {CHUNK_ROWS}\n", encoder.name());
    check_settings(dir, &settings)?;
    let all = chunks(n);
    let mine = &all[shard.range(all.len())];
    let width: usize = encoder.feature_shape().iter().product();
    let mut outcome = Extracted::default();
    let bar = progress_bar(mine.iter().map(Range::len).sum(), label);
    for range in mine {
        if chunk_path(dir, range).exists() {
            outcome.reused += 1;
        } else {
            let items = load(range.clone())?;
            let rows = encoder.encode_at(range.start, &items)?;
            if rows.dim() != (range.len(), width) {
                return Err(WorkflowError::Invalid(format!(
                    "encoder '{}' returned {:?} for {} items of {width} values",
                    encoder.name(),
                    rows.dim(),
                    range.len()
                )));
            }
            write_chunk(dir, range, &rows)?;
            outcome.computed += 1;
        }
        bar.inc(range.len() as u64);
    }
    bar.finish_and_clear();
    info!(dir = %dir.display(), computed = outcome.computed, reused = outcome.reused, "features");
    Ok(outcome)
}

/// [`extract_rows`] for images read from the stimulus set by NSD id.
pub fn extract_images(
    dir: &Path,
    encoder: &dyn Encoder<Input = RgbImage>,
    ids: &[usize],
    stimuli: &dyn StimulusSource,
    shard: Shard,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    extract_rows(dir, encoder, ids.len(), shard, &|range| stimuli.images(&ids[range]), label)
}

/// [`extract_rows`] for the captions of each image.
pub fn extract_captions(
    dir: &Path,
    encoder: &dyn Encoder<Input = Vec<String>>,
    captions: &[Vec<String>],
    shard: Shard,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    extract_rows(dir, encoder, captions.len(), shard, &|range| Ok(captions[range].to_vec()), label)
}
