//! Targets that stream in blocks: in-memory arrays, `.npy` files and `.safetensors` tensors.
//! A source delivers a column block column-major ([`TargetSource::read_columns`]) or any
//! submatrix row-major ([`TargetSource::read_rows`]); row-major files are read with one
//! positioned read per row, so a 12 GB target file never has to fit in memory (and is never
//! memory-mapped, which would count towards the RSS). Row blocks of a row-major file are
//! contiguous, which is why fixed-alpha fits stream them ([`TargetSource::rows_are_contiguous`]).

use crate::error::{Result, RidgeError};
use ndarray::ArrayView2;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::ops::Range;
use std::path::{Path, PathBuf};

/// A matrix of targets (`rows` samples x `cols` targets) that can be read one block at a time.
/// `Send` because blocks are read on a thread of their own, ahead of the computation.
pub trait TargetSource: Send {
    /// Number of samples (must equal the problem's training rows).
    fn n_rows(&self) -> usize;
    /// Number of targets.
    fn n_cols(&self) -> usize;
    /// Writes columns `cols` into `out`, column-major (`out.len() == n_rows * cols.len()`).
    fn read_columns(&mut self, cols: Range<usize>, out: &mut [f32]) -> Result<()>;
    /// Writes the submatrix `rows x cols` into `out`, row-major
    /// (`out.len() == rows.len() * cols.len()`).
    ///
    /// The default goes through [`read_columns`](TargetSource::read_columns) in column blocks of
    /// all rows, so it reads every row whatever `rows` is: sources stored by rows override it
    /// (and say so with [`rows_are_contiguous`](TargetSource::rows_are_contiguous)).
    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_rows_request(self, &rows, &cols, out)?;
        let (n, b) = (self.n_rows(), cols.len());
        const COLUMNS_PER_READ: usize = 256;
        let mut block = Vec::new();
        for start in (cols.start..cols.end).step_by(COLUMNS_PER_READ) {
            let end = (start + COLUMNS_PER_READ).min(cols.end);
            block.resize(n * (end - start), 0.0);
            self.read_columns(start..end, &mut block)?;
            for (k, column) in block.chunks_exact(n).enumerate() {
                for (r, i) in rows.clone().enumerate() {
                    out[r * b + start - cols.start + k] = column[i];
                }
            }
        }
        Ok(())
    }
    /// Whether blocks of whole rows are the cheap read (row-major storage): then fits with a
    /// fixed alpha stream row blocks, which need neither strided reads nor a transposition.
    /// False unless a source says otherwise.
    fn rows_are_contiguous(&self) -> bool {
        false
    }
    /// A short name for error messages (a path, or "in-memory targets").
    fn describe(&self) -> String;
}

/// Checks a range of `axis` (`"row"` or `"column"`) against its length `len`.
fn check_range(src: &(impl TargetSource + ?Sized), axis: &str, range: &Range<usize>, len: usize) -> Result<()> {
    if range.start > range.end || range.end > len {
        return Err(RidgeError::Invalid(format!("{}: {axis} range {range:?} outside 0..{len}", src.describe())));
    }
    Ok(())
}

/// Checks a column request against the source's shape: `cols` inside `0..n_cols`, `out` of
/// the right size.
fn check_request(src: &(impl TargetSource + ?Sized), cols: &Range<usize>, out: &[f32]) -> Result<()> {
    check_range(src, "column", cols, src.n_cols())?;
    if out.len() != src.n_rows() * cols.len() {
        return Err(RidgeError::Shape {
            what: format!("output buffer for columns {cols:?} of {}", src.describe()),
            expected: src.n_rows() * cols.len(),
            got: out.len(),
        });
    }
    Ok(())
}

/// Checks a submatrix request (rows, columns, output size) against the source's shape. Public
/// so that sources written elsewhere check their requests the same way.
pub fn check_rows_request(
    src: &(impl TargetSource + ?Sized),
    rows: &Range<usize>,
    cols: &Range<usize>,
    out: &[f32],
) -> Result<()> {
    check_range(src, "row", rows, src.n_rows())?;
    check_range(src, "column", cols, src.n_cols())?;
    if out.len() != rows.len() * cols.len() {
        return Err(RidgeError::Shape {
            what: format!("output buffer for rows {rows:?} x columns {cols:?} of {}", src.describe()),
            expected: rows.len() * cols.len(),
            got: out.len(),
        });
    }
    Ok(())
}

/// Columns `cols` of an in-memory matrix, column-major.
fn view_columns<T: Copy>(a: &ArrayView2<'_, T>, cols: Range<usize>, out: &mut [f32], to_f32: impl Fn(T) -> f32) {
    let n = a.nrows();
    for (k, j) in cols.enumerate() {
        for (o, v) in out[k * n..(k + 1) * n].iter_mut().zip(a.column(j)) {
            *o = to_f32(*v);
        }
    }
}

/// The submatrix `rows x cols` of an in-memory matrix, row-major.
fn view_rows<T: Copy>(
    a: &ArrayView2<'_, T>,
    rows: Range<usize>,
    cols: Range<usize>,
    out: &mut [f32],
    to_f32: impl Fn(T) -> f32,
) {
    let b = cols.len();
    for (r, i) in rows.enumerate() {
        for (o, v) in out[r * b..(r + 1) * b].iter_mut().zip(a.row(i).slice(ndarray::s![cols.clone()])) {
            *o = to_f32(*v);
        }
    }
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
        view_columns(self, cols, out, |v| v);
        Ok(())
    }
    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_rows_request(self, &rows, &cols, out)?;
        view_rows(self, rows, cols, out, |v| v);
        Ok(())
    }
    /// In memory either direction is cheap; rows are the fit's faster path.
    fn rows_are_contiguous(&self) -> bool {
        true
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
        view_columns(self, cols, out, |v| v as f32);
        Ok(())
    }
    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_rows_request(self, &rows, &cols, out)?;
        view_rows(self, rows, cols, out, |v| v as f32);
        Ok(())
    }
    fn rows_are_contiguous(&self) -> bool {
        true
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
    /// Raw bytes of the last read.
    scratch: Vec<u8>,
    /// Row-major values of a column block before its transposition.
    by_rows: Vec<f32>,
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
            // One segment per row into a row-major buffer, then a tiled transposition (writing
            // each value straight to its column-major place would stride through `out`).
            let mut by_rows = std::mem::take(&mut self.by_rows);
            by_rows.resize(n * b, 0.0);
            let read = self.read_row_segments(0..n, cols, &mut by_rows);
            if read.is_ok() {
                let out = faer::MatMut::from_column_major_slice_mut(out, n, b);
                crate::linalg::transpose_tiles(&by_rows, n, b, out, |v, _| v);
            }
            self.by_rows = by_rows;
            read?;
        }
        Ok(())
    }

    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        if !self.column_major {
            return self.read_row_segments(rows, cols, out);
        }
        // Column-major file: one segment per column, scattered into the rows of `out`.
        let (n, es, b, r) = (self.rows, self.element.size(), cols.len(), rows.len());
        self.scratch.resize(r * es, 0);
        let mut values = vec![0f32; r];
        for (k, j) in cols.enumerate() {
            let offset = self.data_start + ((j * n + rows.start) * es) as u64;
            read_at(&self.path, &mut self.file, offset, &mut self.scratch)?;
            decode(self.element, &self.scratch, &mut values);
            for (i, v) in values.iter().enumerate() {
                out[i * b + k] = *v;
            }
        }
        Ok(())
    }

    /// Row-major file: the submatrix `rows x cols` into `out`, row-major. Each row is one
    /// segment of the file (whole rows are one contiguous range). A single stream of positioned
    /// reads is bound by the disk's latency, so on Unix several threads read (and decode) a
    /// share of the rows each; they wait on the disk, not on the CPU.
    #[cfg(unix)]
    fn read_row_segments(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        use std::os::unix::fs::FileExt;
        const READERS: usize = 8;
        let (es, b) = (self.element.size(), cols.len());
        let row_bytes = b * es;
        if rows.is_empty() || row_bytes == 0 {
            return Ok(());
        }
        let whole_rows = b == self.cols;
        let direct = self.element == Element::F32 && cfg!(target_endian = "little");
        self.scratch.resize(if direct { 0 } else { rows.len() * row_bytes }, 0);
        let rows_per_reader = rows.len().div_ceil(READERS);
        let (file, path, data_start, width, element) =
            (&self.file, &self.path, self.data_start, self.cols, self.element);
        let (first_row, first_col) = (rows.start, cols.start);
        std::thread::scope(|scope| {
            let mut byte_chunks = self.scratch.chunks_mut(rows_per_reader * row_bytes);
            let readers: Vec<_> = out
                .chunks_mut(rows_per_reader * b)
                .enumerate()
                .map(|(t, values)| {
                    let bytes = byte_chunks.next();
                    scope.spawn(move || -> Result<()> {
                        let first = first_row + t * rows_per_reader;
                        let read = |buf: &mut [u8], row: usize| {
                            let offset = data_start + ((row * width + first_col) * es) as u64;
                            file.read_exact_at(buf, offset).map_err(|e| {
                                RidgeError::file(path, format!("read of {} bytes at {offset}: {e}", buf.len()))
                            })
                        };
                        // Little-endian f32 is read straight into the values (no second copy);
                        // anything else through the byte buffer and a decode.
                        let read_all = |target: &mut [u8]| -> Result<()> {
                            if whole_rows {
                                return read(target, first);
                            }
                            for (r, segment) in target.chunks_mut(row_bytes).enumerate() {
                                read(segment, first + r)?;
                            }
                            Ok(())
                        };
                        match bytes {
                            Some(bytes) if !direct => {
                                read_all(bytes)?;
                                decode(element, bytes, values);
                            }
                            _ => read_all(bytemuck::cast_slice_mut(values))?,
                        }
                        Ok(())
                    })
                })
                .collect();
            readers
                .into_iter()
                .try_for_each(|h| h.join().map_err(|_| RidgeError::file(path, "a reader thread panicked"))?)
        })
    }

    #[cfg(not(unix))]
    fn read_row_segments(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        let (es, b) = (self.element.size(), cols.len());
        self.scratch.resize(b * es, 0);
        for (r, i) in rows.enumerate() {
            let offset = self.data_start + ((i * self.cols + cols.start) * es) as u64;
            read_at(&self.path, &mut self.file, offset, &mut self.scratch)?;
            decode(self.element, &self.scratch, &mut out[r * b..(r + 1) * b]);
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
        Ok(NpyTargets(FileMatrix {
            path,
            file,
            data_start,
            rows,
            cols,
            element,
            column_major,
            scratch: Vec::new(),
            by_rows: Vec::new(),
        }))
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
    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_rows_request(self, &rows, &cols, out)?;
        self.0.read_rows(rows, cols, out)
    }
    fn rows_are_contiguous(&self) -> bool {
        !self.0.column_major
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
            by_rows: Vec::new(),
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
    fn read_rows(&mut self, rows: Range<usize>, cols: Range<usize>, out: &mut [f32]) -> Result<()> {
        check_rows_request(self, &rows, &cols, out)?;
        self.0.read_rows(rows, cols, out)
    }
    fn rows_are_contiguous(&self) -> bool {
        !self.0.column_major
    }
    fn describe(&self) -> String {
        self.0.path.display().to_string()
    }
}
