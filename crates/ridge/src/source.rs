//! Targets that stream in column blocks: in-memory arrays, `.npy` files and `.safetensors`
//! tensors. A block is delivered column-major (`rows x cols`, f32) so that it feeds the GEMMs
//! directly; files are read with one positioned read per row, so a 12 GB target file never has
//! to fit in memory (and is never memory-mapped, which would count towards the RSS).

use crate::error::{Result, RidgeError};
use ndarray::ArrayView2;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A matrix of targets (`rows` samples x `cols` targets) that can be read one column block at a
/// time. `Send` because blocks are read on a thread of their own, ahead of the computation.
pub trait TargetSource: Send {
    /// Number of samples (must equal the problem's training rows).
    fn n_rows(&self) -> usize;
    /// Number of targets.
    fn n_cols(&self) -> usize;
    /// Writes columns `cols` into `out`, column-major (`out.len() == n_rows * cols.len()`).
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()>;
    /// A short name for error messages (a path, or "in-memory targets").
    fn describe(&self) -> String;
}

/// Checks a request against the source's shape: `cols` inside `0..n_cols`, `out` of the right size.
fn check_request(src: &dyn TargetSource, cols: &Range<usize>, out: &[f32]) -> Result<()> {
    if cols.start > cols.end || cols.end > src.n_cols() {
        return Err(RidgeError::Invalid(format!(
            "{}: column range {:?} outside 0..{}",
            src.describe(),
            cols,
            src.n_cols()
        )));
    }
    if out.len() != src.n_rows() * cols.len() {
        return Err(RidgeError::Shape {
            what: format!("output buffer for columns {cols:?} of {}", src.describe()),
            expected: src.n_rows() * cols.len(),
            got: out.len(),
        });
    }
    Ok(())
}

impl TargetSource for ArrayView2<'_, f32> {
    fn n_rows(&self) -> usize {
        self.nrows()
    }
    fn n_cols(&self) -> usize {
        self.ncols()
    }
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_request(self, &cols, out)?;
        let n = self.nrows();
        for (k, j) in cols.enumerate() {
            for (i, v) in self.column(j).iter().enumerate() {
                out[k * n + i] = *v;
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "in-memory targets".into()
    }
}

impl TargetSource for ArrayView2<'_, f64> {
    fn n_rows(&self) -> usize {
        self.nrows()
    }
    fn n_cols(&self) -> usize {
        self.ncols()
    }
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_request(self, &cols, out)?;
        let n = self.nrows();
        for (k, j) in cols.enumerate() {
            for (i, v) in self.column(j).iter().enumerate() {
                out[k * n + i] = *v as f32;
            }
        }
        Ok(())
    }
    fn describe(&self) -> String {
        "in-memory targets".into()
    }
}

/// Element type of a file-backed matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Element {
    F32,
    F64,
}

impl Element {
    fn size(self) -> usize {
        match self {
            Element::F32 => 4,
            Element::F64 => 8,
        }
    }
}

/// A little-endian float matrix stored in a file from byte `data_start`, row-major or
/// column-major.
struct FileMatrix {
    path: PathBuf,
    file: File,
    data_start: u64,
    rows: usize,
    cols: usize,
    element: Element,
    column_major: bool,
    scratch: Vec<u8>,
}

impl FileMatrix {
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        let es = self.element.size();
        let (n, b) = (self.rows, cols.len());
        if self.column_major {
            // Columns are contiguous: one read for the whole block.
            self.scratch.resize(n * b * es, 0);
            let offset = self.data_start + (cols.start * n * es) as u64;
            read_at(&self.path, &mut self.file, offset, &mut self.scratch)?;
            decode(self.element, &self.scratch, out);
        } else {
            self.read_row_segments(cols.start, b, out)?;
        }
        Ok(())
    }

    /// Row-major file: one segment of `b` values per row, strided through the file. A single
    /// stream of such reads is bound by the disk's latency, so on Unix several threads issue
    /// positioned reads at once (they wait on the disk, not on the CPU).
    #[cfg(unix)]
    fn read_row_segments(&mut self, first_col: usize, b: usize, out: &mut [f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        const READERS: usize = 8;
        let (n, es) = (self.rows, self.element.size());
        let row_bytes = b * es;
        if n == 0 || row_bytes == 0 {
            return Ok(());
        }
        self.scratch.resize(n * row_bytes, 0);
        let rows_per_reader = n.div_ceil(READERS);
        let (file, path, data_start, cols) = (&self.file, &self.path, self.data_start, self.cols);
        std::thread::scope(|scope| {
            let readers: Vec<_> = self
                .scratch
                .chunks_mut(rows_per_reader * row_bytes)
                .enumerate()
                .map(|(t, chunk)| {
                    scope.spawn(move || -> Result<()> {
                        for (r, row) in chunk.chunks_mut(row_bytes).enumerate() {
                            let i = t * rows_per_reader + r;
                            let offset = data_start + ((i * cols + first_col) * es) as u64;
                            file.read_exact_at(row, offset).map_err(|e| {
                                RidgeError::file(path, format!("read of {row_bytes} bytes at {offset}: {e}"))
                            })?;
                        }
                        Ok(())
                    })
                })
                .collect();
            readers
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| RidgeError::file(path, "a reader thread panicked"))?)
        })?;
        let mut row_values = vec![0f32; b];
        for (i, row) in self.scratch.chunks_exact(row_bytes).enumerate() {
            decode(self.element, row, &mut row_values);
            for (k, v) in row_values.iter().enumerate() {
                out[k * n + i] = *v;
            }
        }
        Ok(())
    }

    #[cfg(not(unix))]
    fn read_row_segments(&mut self, first_col: usize, b: usize, out: &mut [f32]) -> Result<()> {
        let (n, es) = (self.rows, self.element.size());
        self.scratch.resize(b * es, 0);
        let mut row_values = vec![0f32; b];
        for i in 0..n {
            let offset = self.data_start + ((i * self.cols + first_col) * es) as u64;
            read_at(&self.path, &mut self.file, offset, &mut self.scratch)?;
            decode(self.element, &self.scratch, &mut row_values);
            for (k, v) in row_values.iter().enumerate() {
                out[k * n + i] = *v;
            }
        }
        Ok(())
    }
}

fn read_at(path: &Path, file: &mut File, offset: u64, buf: &mut [u8]) -> Result<()> {
    file.seek(SeekFrom::Start(offset))
        .and_then(|_| file.read_exact(buf))
        .map_err(|e| RidgeError::file(path, format!("read of {} bytes at {offset}: {e}", buf.len())))
}

fn decode(element: Element, bytes: &[u8], out: &mut [f32]) {
    match element {
        Element::F32 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Element::F64 => {
            for (o, c) in out.iter_mut().zip(bytes.chunks_exact(8)) {
                let mut a = [0u8; 8];
                a.copy_from_slice(c);
                *o = f64::from_le_bytes(a) as f32;
            }
        }
    }
}

fn check_file_size(path: &Path, file: &File, end: u64) -> Result<()> {
    let len = file.metadata().map_err(|e| RidgeError::file(path, e))?.len();
    if len < end {
        return Err(RidgeError::file(path, format!("file is {len} bytes, the header promises {end}")));
    }
    Ok(())
}

/// Targets read from a `.npy` file (`<f4` or `<f8`). The first axis is samples; all other axes
/// are flattened in C order into targets, so a `(n, 257, 768)` CLIP array is `n x 197,376`
/// targets with token-major columns.
pub struct NpyTargets(FileMatrix);

impl NpyTargets {
    /// Opens `path` and reads its header (the data is read later, block by block).
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let mut file = File::open(&path).map_err(|e| RidgeError::file(&path, e))?;
        let header = ndarray_npy::npy::header::Header::from_reader(&mut file)
            .map_err(|e| RidgeError::file(&path, format!("not a .npy header: {e}")))?;
        let data_start = file.stream_position().map_err(|e| RidgeError::file(&path, e))?;
        let descr = header.type_descriptor.as_string().cloned().unwrap_or_default();
        let element = match descr.as_str() {
            "<f4" => Element::F32,
            "<f8" => Element::F64,
            other => {
                return Err(RidgeError::file(
                    &path,
                    format!("dtype {other:?} is not supported: expected '<f4' or '<f8'"),
                ));
            }
        };
        let shape = header.shape.clone();
        if shape.is_empty() {
            return Err(RidgeError::file(&path, "a 0-d array has no sample axis"));
        }
        let column_major = header.layout.is_fortran();
        if column_major && shape.len() > 2 {
            return Err(RidgeError::file(
                &path,
                format!("Fortran-ordered arrays of {} dimensions are not supported; save it in C order", shape.len()),
            ));
        }
        let rows = shape[0];
        let cols = shape[1..].iter().product::<usize>();
        check_file_size(&path, &file, data_start + (rows * cols * element.size()) as u64)?;
        Ok(NpyTargets(FileMatrix { path, file, data_start, rows, cols, element, column_major, scratch: Vec::new() }))
    }
}

impl TargetSource for NpyTargets {
    fn n_rows(&self) -> usize {
        self.0.rows
    }
    fn n_cols(&self) -> usize {
        self.0.cols
    }
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_request(self, &cols, out)?;
        self.0.read_columns(cols, out)
    }
    fn describe(&self) -> String {
        self.0.path.display().to_string()
    }
}

/// Targets read from one tensor of a `.safetensors` file (F32 or F64, row-major). As for
/// [`NpyTargets`], axes after the first are flattened into targets.
pub struct SafetensorsTargets(FileMatrix);

impl SafetensorsTargets {
    /// Opens tensor `name` of `path`, reading only the header.
    pub fn open(path: impl AsRef<Path>, name: &str) -> Result<Self> {
        let path = path.as_ref().to_path_buf();
        let file = File::open(&path).map_err(|e| RidgeError::file(&path, e))?;
        let header = weight_files::read_safetensors_header(&path)?;
        let info = header.tensor(name)?;
        let element = match info.dtype {
            weight_files::Dtype::F32 => Element::F32,
            weight_files::Dtype::F64 => Element::F64,
            other => {
                return Err(RidgeError::file(&path, format!("tensor {name:?} has dtype {other}: expected F32 or F64")));
            }
        };
        if info.shape.is_empty() {
            return Err(RidgeError::file(&path, format!("tensor {name:?} is a scalar")));
        }
        let rows = info.shape[0];
        let cols = info.shape[1..].iter().product::<usize>();
        // The header reader checked that the data lie inside the file and hold the shape.
        let data_start = info.bytes.start;
        Ok(SafetensorsTargets(FileMatrix {
            path,
            file,
            data_start,
            rows,
            cols,
            element,
            column_major: false,
            scratch: Vec::new(),
        }))
    }
}

impl TargetSource for SafetensorsTargets {
    fn n_rows(&self) -> usize {
        self.0.rows
    }
    fn n_cols(&self) -> usize {
        self.0.cols
    }
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_request(self, &cols, out)?;
        self.0.read_columns(cols, out)
    }
    fn describe(&self) -> String {
        self.0.path.display().to_string()
    }
}
