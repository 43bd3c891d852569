//! `extract`: the VDVAE, CLIP-Vision and CLIP-Text features of a subject's training and test
//! stimuli, written in row chunks (see [`super::features`]); `--shard K/N` takes the K-th of N
//! parts of the chunks.

use std::ops::Range;
use std::path::Path;

use image::RgbImage;
use tracing::info;

use super::features::{CHUNK_ROWS, chunk_path, chunks, write_chunk};
use super::integrity::{check_npy, fingerprint, ids_fingerprint, reusable};
use super::overlap::overlapped;
use super::prepare::StimulusSource;
use super::{Progress, WorkflowError, check_settings};
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
/// the items of a row range. Chunks already on disk are kept; see [`extract_rows_with`].
pub fn extract_rows<I: Send>(
    dir: &Path,
    encoder: &dyn Encoder<Input = I>,
    n: usize,
    shard: Shard,
    load: &Loader<'_, I>,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    extract_rows_with(dir, encoder, n, "", shard, load, label)
}

/// Loads the items of a row range for [`extract_rows`]; it runs on a reader thread, one chunk
/// ahead of the encoder.
pub type Loader<'a, I> = dyn Fn(Range<usize>) -> Result<Vec<I>, WorkflowError> + Sync + 'a;

/// [`extract_rows`] whose settings record also holds `inputs` (lines naming what the features
/// depend on beyond the encoder's name: its options, the fingerprint of the ids or captions).
/// A chunk already on disk is kept only when it is whole (its `.npy` header, dtype, shape `rows x
/// feature width` and length check out); a damaged chunk is computed again, with a warning.
/// While the encoder works on one chunk, a reader thread loads the next one and a writer thread
/// writes the previous one.
pub fn extract_rows_with<I: Send>(
    dir: &Path,
    encoder: &dyn Encoder<Input = I>,
    n: usize,
    inputs: &str,
    shard: Shard,
    load: &Loader<'_, I>,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    let shape = encoder.feature_shape();
    if shape.is_empty() || shape.contains(&0) {
        return Err(WorkflowError::Invalid(format!(
            "encoder '{}' declares feature shape {shape:?}: every item needs at least one feature",
            encoder.name()
        )));
    }
    let settings = format!(
        "encoder = {:?}\nfeature_shape = {shape:?}\nrows = {n}\nchunk_rows = {CHUNK_ROWS}\n{inputs}",
        encoder.name()
    );
    check_settings(dir, &settings)?;
    let all = chunks(n);
    let mine = &all[shard.range(all.len())];
    let width: usize = shape.iter().product();
    let mut outcome = Extracted::default();
    let bar = Progress::each(mine.iter().map(Range::len).sum(), label);
    let mut todo = Vec::new();
    for range in mine {
        let whole = |p: &Path| check_npy(p, "<f4", &[Some(range.len()), Some(width)]).map(|_| ());
        if reusable(&chunk_path(dir, range), whole) {
            outcome.reused += 1;
            bar.skip(range.len() as u64);
        } else {
            todo.push(range.clone());
        }
    }
    let whole_set = mine.len() == all.len();
    /// A chunk's rows and its features.
    type Chunk = (Range<usize>, ndarray::Array2<f32>);
    let write = |(range, rows): Chunk| -> Result<(), WorkflowError> {
        write_chunk(dir, &range, &rows)?;
        bar.inc_with(range.len() as u64, |done, len| match whole_set {
            true => format!("{label}: {done} of {len} stimuli"),
            false => format!("{label}: {done} of {len} stimuli (shard {shard} of {n})"),
        });
        Ok(())
    };
    let encode = |range: &Range<usize>, items: Vec<I>| -> Result<Vec<Chunk>, WorkflowError> {
        let rows = encoder.encode_at(range.start, &items)?;
        if rows.dim() != (range.len(), width) {
            return Err(WorkflowError::Invalid(format!(
                "encoder '{}' returned {:?} for {} items of {width} values",
                encoder.name(),
                rows.dim(),
                range.len()
            )));
        }
        Ok(vec![(range.clone(), rows)])
    };
    overlapped(&todo, 1, &|range: &Range<usize>| load(range.clone()), encode, &write)?;
    outcome.computed += todo.len();
    bar.finish_and_clear();
    info!(dir = %dir.display(), computed = outcome.computed, reused = outcome.reused, "features");
    Ok(outcome)
}

/// The feature shape recorded in the settings record of the feature folder `dir` (the encoder's
/// [`Encoder::feature_shape`] when it extracted them); `what` names the features in errors.
pub fn recorded_feature_shape(dir: &Path, what: &str) -> Result<Vec<usize>, WorkflowError> {
    let record = super::integrity::read_record(dir, what, "extract")?;
    let path = dir.join("settings.toml");
    // The line `extract_rows_with` writes (the record's other lines are not all TOML values).
    let shape = record.lines().find_map(|line| line.strip_prefix("feature_shape = ")).and_then(|list| {
        let value: toml::Table = format!("shape = {list}").parse().ok()?;
        let values = value.get("shape")?.as_array()?;
        values.iter().map(|v| v.as_integer().and_then(|d| usize::try_from(d).ok())).collect::<Option<Vec<usize>>>()
    });
    shape.ok_or_else(|| WorkflowError::File {
        path,
        message: format!(
            "no `feature_shape = [..]` list of sizes in the record of {what} (made by an older version?): run \
             `brain-diffuser extract` again"
        ),
    })
}

/// [`extract_rows_with`] for images read from the stimulus set by NSD id; the record holds
/// `options` (the encoder's settings) and the fingerprint of `ids`.
pub fn extract_images(
    dir: &Path,
    encoder: &dyn Encoder<Input = RgbImage>,
    options: &str,
    ids: &[usize],
    stimuli: &dyn StimulusSource,
    shard: Shard,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    let inputs = format!("{options}ids = \"{}\"\n", ids_fingerprint(ids));
    extract_rows_with(dir, encoder, ids.len(), &inputs, shard, &|range| stimuli.images(&ids[range]), label)
}

/// [`extract_rows_with`] for the captions of each image; the record holds `options`, the
/// fingerprint of the images' `ids` and of the captions themselves.
pub fn extract_captions(
    dir: &Path,
    encoder: &dyn Encoder<Input = Vec<String>>,
    options: &str,
    ids: &[usize],
    captions: &[Vec<String>],
    shard: Shard,
    label: &str,
) -> Result<Extracted, WorkflowError> {
    if ids.len() != captions.len() {
        return Err(WorkflowError::Invalid(format!(
            "{} caption rows for {} images ({})",
            captions.len(),
            ids.len(),
            dir.display()
        )));
    }
    let text: String = captions.iter().map(|row| format!("{row:?}\n")).collect();
    let inputs = format!("{options}ids = \"{}\"\ncaptions = \"{}\"\n", ids_fingerprint(ids), fingerprint(&text));
    extract_rows_with(dir, encoder, captions.len(), &inputs, shard, &|range| Ok(captions[range].to_vec()), label)
}
