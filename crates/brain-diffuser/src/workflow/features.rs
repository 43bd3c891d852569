//! Feature matrices cached on disk in row chunks (`rows-000000-000064.npy`, ...).
//!
//! `extract` writes one file per chunk of [`CHUNK_ROWS`] stimuli, named by its row range, so
//! shards running on different machines never write the same file and their outputs merge by
//! copying folders together. Readers check that the chunks tile all rows exactly once.

use std::ops::Range;
use std::path::{Path, PathBuf};

use ndarray::{Array2, s};
use ridge::{NpyTargets, TargetSource};

use super::{WorkflowError, load_npy, save_npy};
use crate::renormalise::{ColumnAccumulator, ColumnStats};

/// Stimuli per feature file: the unit of extraction, sharding and resumption.
pub const CHUNK_ROWS: usize = 64;

/// The row ranges of the chunks of `rows` rows.
pub fn chunks(rows: usize) -> Vec<Range<usize>> {
    (0..rows).step_by(CHUNK_ROWS).map(|start| start..(start + CHUNK_ROWS).min(rows)).collect()
}

/// The file of one chunk.
pub fn chunk_path(dir: &Path, rows: &Range<usize>) -> PathBuf {
    dir.join(format!("rows-{:06}-{:06}.npy", rows.start, rows.end))
}

/// Writes one chunk of feature rows, atomically.
pub fn write_chunk(dir: &Path, rows: &Range<usize>, values: &Array2<f32>) -> Result<(), WorkflowError> {
    save_npy(&chunk_path(dir, rows), values)
}

fn parse_chunk_name(name: &str) -> Option<Range<usize>> {
    let stem = name.strip_prefix("rows-")?.strip_suffix(".npy")?;
    let (a, b) = stem.split_once('-')?;
    Some(a.parse().ok()?..b.parse().ok()?)
}

/// A complete feature matrix made of chunk files.
pub struct FeatureFiles {
    dir: PathBuf,
    chunks: Vec<(Range<usize>, PathBuf)>,
    sources: Vec<NpyTargets>,
    rows: usize,
    cols: usize,
    progress: Option<super::Progress>,
    /// Values read so far through [`TargetSource`] (the progress stops at the matrix's size,
    /// however many passes a regressor makes).
    values_read: usize,
}

impl FeatureFiles {
    /// Opens the chunks in `dir`, which must tile rows `0..rows` exactly once with files of the
    /// same width; a missing or incomplete folder is an error that names `extract`.
    pub fn open(dir: &Path, rows: usize) -> Result<Self, WorkflowError> {
        let missing = || WorkflowError::missing(format!("features for {rows} stimuli"), dir, "extract");
        let entries = std::fs::read_dir(dir).map_err(|_| missing())?;
        let mut chunks = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| WorkflowError::io(dir, e))?;
            if let Some(range) = entry.file_name().to_str().and_then(parse_chunk_name) {
                chunks.push((range, entry.path()));
            }
        }
        chunks.sort_by_key(|(r, _)| (r.start, r.end));
        let mut next = 0;
        for (range, path) in &chunks {
            if range.start != next {
                let problem = if range.start < next { "overlaps the previous chunk" } else { "leaves a gap before it" };
                return Err(WorkflowError::Invalid(format!(
                    "{}: {problem} (rows {next}.. expected); shards must come from the same chunking",
                    path.display()
                )));
            }
            next = range.end;
        }
        if next != rows {
            let done: usize = chunks.iter().map(|(r, _)| r.len()).sum();
            return Err(WorkflowError::Missing {
                what: format!("features of {} of {rows} stimuli", rows - done.min(rows)),
                path: dir.to_owned(),
                step: "extract",
            });
        }
        let mut sources = Vec::with_capacity(chunks.len());
        let mut cols = None;
        for (range, path) in &chunks {
            let source = NpyTargets::open(path)?;
            if source.n_rows() != range.len() {
                return Err(WorkflowError::Invalid(format!(
                    "{}: {} rows, its name says {}",
                    path.display(),
                    source.n_rows(),
                    range.len()
                )));
            }
            match cols {
                None => cols = Some(source.n_cols()),
                Some(c) if c != source.n_cols() => {
                    return Err(WorkflowError::Invalid(format!(
                        "{}: {} columns, other chunks have {c}",
                        path.display(),
                        source.n_cols()
                    )));
                }
                Some(_) => {}
            }
            sources.push(source);
        }
        let cols = cols.unwrap_or(0);
        Ok(Self { dir: dir.to_owned(), chunks, sources, rows, cols, progress: None, values_read: 0 })
    }

    /// Advances `bar` (of length [`cols`](FeatureFiles::cols)) as values are read through
    /// [`TargetSource`], in columns' worth of values, until as many were read as the matrix
    /// holds (the regressions' progress: ridge reads each value once, by rows or by columns; a
    /// regressor that makes several passes, such as an MLP trained for epochs, reaches the end
    /// with its first pass).
    pub fn with_progress(mut self, bar: super::Progress) -> Self {
        self.progress = Some(bar);
        self
    }

    /// Counts `values` read towards the progress bar.
    fn count_read(&mut self, values: usize) {
        let Some(bar) = &self.progress else { return };
        let total = self.rows * self.cols;
        let before = self.values_read.min(total) / self.rows.max(1);
        self.values_read = self.values_read.saturating_add(values);
        let after = self.values_read.min(total) / self.rows.max(1);
        bar.inc((after - before) as u64);
    }

    /// Rows (stimuli).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns (feature values per stimulus).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Every row, in memory (for test sets; a training set may not fit).
    pub fn read_all(&self) -> Result<Array2<f32>, WorkflowError> {
        let mut out = Array2::zeros((self.rows, self.cols));
        for (range, path) in &self.chunks {
            out.slice_mut(s![range.clone(), ..]).assign(&load_npy(path)?);
        }
        Ok(out)
    }

    /// Column means and standard deviations (ddof 0), reading one chunk at a time.
    pub fn column_stats(&self) -> Result<ColumnStats, WorkflowError> {
        let mut acc = ColumnAccumulator::new(self.cols);
        for (_, path) in &self.chunks {
            acc.add(load_npy(path)?.view());
        }
        Ok(acc.finish())
    }
}

impl TargetSource for FeatureFiles {
    fn n_rows(&self) -> usize {
        self.rows
    }

    fn n_cols(&self) -> usize {
        self.cols
    }

    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> ridge::Result<()> {
        let n = self.rows;
        if out.len() != n * cols.len() {
            return Err(ridge::RidgeError::Shape {
                what: format!("output buffer for columns {cols:?} of {}", self.describe()),
                expected: n * cols.len(),
                got: out.len(),
            });
        }
        let mut buffer = Vec::new();
        for ((range, _), source) in self.chunks.iter().zip(&mut self.sources) {
            buffer.resize(range.len() * cols.len(), 0.0);
            source.read_columns(cols.clone(), &mut buffer)?;
            for k in 0..cols.len() {
                out[k * n + range.start..k * n + range.end]
                    .copy_from_slice(&buffer[k * range.len()..(k + 1) * range.len()]);
            }
        }
        self.count_read(n * cols.len());
        Ok(())
    }

    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> ridge::Result<()> {
        ridge::check_rows_request(self, &rows, &cols, out)?;
        let b = cols.len();
        for ((range, _), source) in self.chunks.iter().zip(&mut self.sources) {
            let (start, end) = (range.start.max(rows.start), range.end.min(rows.end));
            if start >= end {
                continue;
            }
            let dst = &mut out[(start - rows.start) * b..(end - rows.start) * b];
            source.read_rows(start - range.start..end - range.start, cols.clone(), dst)?;
        }
        self.count_read(rows.len() * b);
        Ok(())
    }

    /// Chunks are written by `extract` in C order; true when every chunk is.
    fn rows_are_contiguous(&self) -> bool {
        self.sources.iter().all(|s| s.rows_are_contiguous())
    }

    fn describe(&self) -> String {
        format!("feature chunks in {}", self.dir.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_stream_as_one_matrix_and_gaps_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let full = Array2::from_shape_fn((150, 7), |(i, j)| (i * 10 + j) as f32);
        for range in chunks(150) {
            write_chunk(dir.path(), &range, &full.slice(s![range.clone(), ..]).to_owned()).unwrap();
        }
        let mut files = FeatureFiles::open(dir.path(), 150).unwrap();
        assert_eq!((files.rows(), files.cols()), (150, 7));
        assert_eq!(files.read_all().unwrap(), full);
        assert_eq!(files.column_stats().unwrap(), ColumnStats::of(full.view()));
        let mut block = vec![0f32; 150 * 3];
        files.read_columns(2..5, &mut block).unwrap();
        for k in 0..3 {
            for i in 0..150 {
                assert_eq!(block[k * 150 + i], full[[i, 2 + k]]);
            }
        }
        // Rows across chunk boundaries, some columns: exact copies of the written values.
        assert!(files.rows_are_contiguous());
        let mut rows = vec![0f32; 80 * 4];
        files.read_rows(50..130, 1..5, &mut rows).unwrap();
        assert_eq!(Array2::from_shape_vec((80, 4), rows).unwrap(), full.slice(s![50..130, 1..5]));
        assert!(files.read_rows(140..151, 0..7, &mut vec![0f32; 77]).is_err(), "rows past the end");
        std::fs::remove_file(chunk_path(dir.path(), &(64..128))).unwrap();
        let err = FeatureFiles::open(dir.path(), 150).err().unwrap().to_string();
        assert!(err.contains("gap"), "{err}");
    }
}
