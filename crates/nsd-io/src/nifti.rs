//! NIfTI-1 single-file images (`.nii`, `.nii.gz`): header parsing, streaming volume-by-volume reads,
//! values as nibabel's `get_fdata()` returns them, and a streaming writer.
//!
//! Written here rather than taken from the `nifti` crate because that crate pins an older ndarray,
//! reads whole files into memory (a 1 GB betas session would need 8 GB as f64), and offers no way
//! to decode only the voxels of a mask while streaming the gzip stream.
//!
//! Voxel order: NIfTI stores the array in Fortran order (x fastest). nibabel returns an array of
//! shape `(nx, ny, nz, ...)` indexed `[i, j, k]`, and numpy's boolean mask walks it in C order
//! (k fastest). [`VoxelMask`] records, in that C order, each selected voxel's on-disk offset.

use std::fs::File;
use std::io::{BufReader, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use ndarray::{ArrayD, IxDyn, ShapeBuilder};

use crate::atomic::werr;
use crate::error::{NsdError, Result};

/// Size of the NIfTI-1 header in bytes.
pub const HEADER_SIZE: usize = 348;

/// Storage type of the voxel values (the header's `datatype` code).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NiftiDtype {
    U8,
    I8,
    I16,
    U16,
    I32,
    U32,
    I64,
    U64,
    F32,
    F64,
}

impl NiftiDtype {
    /// Decodes a NIfTI `datatype` code; `None` for types this crate does not read (complex, RGB).
    pub fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            2 => Self::U8,
            256 => Self::I8,
            4 => Self::I16,
            512 => Self::U16,
            8 => Self::I32,
            768 => Self::U32,
            1024 => Self::I64,
            1280 => Self::U64,
            16 => Self::F32,
            64 => Self::F64,
            _ => return None,
        })
    }

    /// The NIfTI `datatype` code.
    pub fn code(self) -> i16 {
        match self {
            Self::U8 => 2,
            Self::I8 => 256,
            Self::I16 => 4,
            Self::U16 => 512,
            Self::I32 => 8,
            Self::U32 => 768,
            Self::I64 => 1024,
            Self::U64 => 1280,
            Self::F32 => 16,
            Self::F64 => 64,
        }
    }

    /// Bytes per value.
    pub fn size(self) -> usize {
        match self {
            Self::U8 | Self::I8 => 1,
            Self::I16 | Self::U16 => 2,
            Self::I32 | Self::U32 | Self::F32 => 4,
            Self::I64 | Self::U64 | Self::F64 => 8,
        }
    }

    fn is_float(self) -> bool {
        matches!(self, Self::F32 | Self::F64)
    }
}

/// The parts of a NIfTI-1 header this crate uses.
#[derive(Debug, Clone, PartialEq)]
pub struct NiftiHeader {
    /// Array shape, `dim[1..=dim[0]]` (x, y, z, t, ...).
    pub dims: Vec<usize>,
    /// Voxel storage type.
    pub dtype: NiftiDtype,
    /// Byte offset of the voxel data from the start of the (uncompressed) file (352 when the
    /// header's `vox_offset` is 0, "unset", as the NIfTI-1 standard says for single files).
    pub vox_offset: usize,
    /// `scl_slope` as stored (0 or non-finite means "no scaling", as in nibabel).
    pub scl_slope: f32,
    /// `scl_inter` as stored (finite whenever the slope is valid: such headers are refused).
    pub scl_inter: f32,
    /// Voxel sizes `pixdim[1..=3]`.
    pub pixdim: [f32; 3],
    /// Whether the file is big-endian.
    pub big_endian: bool,
}

impl NiftiHeader {
    /// Parses the 348 header bytes of `path`, with nibabel's reading of the redundant or unset
    /// fields: `bitpix` is ignored (the `datatype` decides), `vox_offset` 0 means 352; and its
    /// refusals: a valid `scl_slope` with a NaN/infinite `scl_inter`, `vox_offset` inside the header.
    /// Dims must be 1..=7 positive values whose data size fits (no overflow on any header value).
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self> {
        if bytes.len() < HEADER_SIZE {
            return Err(NsdError::format(
                path,
                format!("NIfTI header needs {HEADER_SIZE} bytes, file has {}", bytes.len()),
            ));
        }
        let le_size = i32::from_le_bytes(bytes[0..4].try_into().unwrap_or_default());
        let be_size = i32::from_be_bytes(bytes[0..4].try_into().unwrap_or_default());
        let big_endian = match (le_size, be_size) {
            (348, _) => false,
            (_, 348) => true,
            (540, _) | (_, 540) => {
                return Err(NsdError::format(
                    path,
                    "NIfTI-2 header (sizeof_hdr 540) is not supported; expected NIfTI-1 (348)",
                ));
            }
            _ => {
                return Err(NsdError::format(
                    path,
                    format!("not a NIfTI-1 file: sizeof_hdr is {le_size}, expected 348"),
                ));
            }
        };
        let magic = &bytes[344..348];
        if magic == b"ni1\0" {
            return Err(NsdError::format(
                path,
                "NIfTI-1 header/image pair (.hdr/.img) is not supported; expected a single .nii file (magic \"n+1\")",
            ));
        }
        if magic != b"n+1\0" {
            return Err(NsdError::format(path, format!("bad NIfTI-1 magic {magic:?}, expected \"n+1\\0\"")));
        }
        let i16_at = |o: usize| {
            let b = [bytes[o], bytes[o + 1]];
            if big_endian { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }
        };
        let f32_at = |o: usize| {
            let b = [bytes[o], bytes[o + 1], bytes[o + 2], bytes[o + 3]];
            if big_endian { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }
        };
        let ndim = i16_at(40);
        if !(1..=7).contains(&ndim) {
            return Err(NsdError::format(path, format!("dim[0] is {ndim}, expected 1..=7 (the number of dimensions)")));
        }
        let mut dims = Vec::with_capacity(ndim as usize);
        for d in 1..=ndim as usize {
            let v = i16_at(40 + 2 * d);
            if v < 1 {
                return Err(NsdError::format(
                    path,
                    format!(
                        "dim[{d}] is {v}, expected >= 1 (dim[1..={ndim}] = {:?})",
                        &dims_raw(bytes, big_endian)[..ndim as usize]
                    ),
                ));
            }
            dims.push(v as usize);
        }
        let code = i16_at(70);
        let dtype = NiftiDtype::from_code(code).ok_or_else(|| {
            NsdError::format(path, format!("unsupported NIfTI datatype code {code} (expected an integer or float type: 2, 4, 8, 16, 64, 256, 512, 768, 1024, 1280)"))
        })?;
        // `bitpix` is redundant with `datatype`; nibabel ignores it (and fixes it silently), so do we.
        let bitpix = i16_at(72);
        if bitpix as usize != dtype.size() * 8 {
            tracing::debug!(path = %path.display(), bitpix, datatype = code, "bitpix disagrees with datatype; using datatype");
        }
        let vox = f32_at(108);
        let vox_offset = if vox == 0.0 {
            // Unset: the NIfTI-1 standard puts the data of a single file at 352 then (see `NiftiReader::new`).
            HEADER_SIZE + 4
        } else if !vox.is_finite() {
            return Err(NsdError::format(path, format!("vox_offset is {vox}, expected a byte offset >= 352")));
        } else if vox < (HEADER_SIZE + 4) as f32 {
            return Err(NsdError::format(
                path,
                format!(
                    "vox_offset {vox} lies inside the header: a single-file .nii stores its data at byte 352 or later \
                     (nibabel refuses this header too)"
                ),
            ));
        } else if vox > 1.0e12 {
            return Err(NsdError::format(
                path,
                format!("vox_offset {vox} is too large, expected a byte offset >= 352"),
            ));
        } else {
            // Truncated as nibabel's int(vox_offset).
            vox as usize
        };
        let (scl_slope, scl_inter) = (f32_at(112), f32_at(116));
        if scl_slope != 0.0 && scl_slope.is_finite() && !scl_inter.is_finite() {
            return Err(NsdError::format(
                path,
                format!(
                    "scl_inter is {scl_inter} while scl_slope is {scl_slope}: a valid slope needs a finite intercept \
                     (nibabel refuses this header: \"Valid slope but invalid intercept\"); expected a finite scl_inter, \
                     or scl_slope 0 for unscaled data"
                ),
            ));
        }
        let header = Self {
            dims,
            dtype,
            vox_offset,
            scl_slope,
            scl_inter,
            pixdim: [f32_at(80), f32_at(84), f32_at(88)],
            big_endian,
        };
        header.check_size(path)?;
        Ok(header)
    }

    /// The scaling nibabel applies, `(slope, inter)`, or `None` when the values are used as stored
    /// (slope 0 or non-finite, or slope 1 with intercept 0).
    pub fn scaling(&self) -> Option<(f32, f32)> {
        let (s, i) = (self.scl_slope, self.scl_inter);
        if s == 0.0 || !s.is_finite() || (s == 1.0 && i == 0.0) {
            None
        } else {
            Some((s, if i.is_finite() { i } else { 0.0 }))
        }
    }

    /// Voxels in one 3-D volume (product of the first three dims, missing dims count as 1;
    /// saturating, though a parsed header's sizes always fit).
    pub fn volume_len(&self) -> usize {
        self.dims.iter().take(3).fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// Number of 3-D volumes (product of dims 4 and up; saturating like [`Self::volume_len`]).
    pub fn n_volumes(&self) -> usize {
        self.dims.iter().skip(3).fold(1usize, |a, &d| a.saturating_mul(d))
    }

    /// The three spatial dims (1 for missing ones).
    pub fn spatial_dims(&self) -> [usize; 3] {
        let d = |i: usize| self.dims.get(i).copied().unwrap_or(1);
        [d(0), d(1), d(2)]
    }

    fn check_size(&self, path: &Path) -> Result<usize> {
        self.dims
            .iter()
            .try_fold(self.dtype.size(), |acc, &d| acc.checked_mul(d))
            .filter(|&b| b <= (1usize << 46))
            .ok_or_else(|| {
                NsdError::format(path, format!("dims {:?} are too large (more than 64 TiB of voxel data)", self.dims))
            })
    }

    /// Applies nibabel's read scaling to one stored value as `get_fdata()` does: slope and
    /// intercept promoted to f64, `raw * slope` (when slope != 1) then `+ inter` (when inter != 0).
    #[inline]
    fn scale(&self, raw: f64, scaling: Option<(f32, f32)>) -> f64 {
        match scaling {
            None => raw,
            Some((s, i)) => {
                let mut x = raw;
                if s != 1.0 {
                    x *= s as f64;
                }
                if i != 0.0 {
                    x += i as f64;
                }
                x
            }
        }
    }
}

/// The header's `vox_offset` field as stored.
fn raw_vox_offset(head: &[u8], big: bool) -> f32 {
    let b = [head[108], head[109], head[110], head[111]];
    if big { f32::from_be_bytes(b) } else { f32::from_le_bytes(b) }
}

/// `dim[1..=7]` as stored (for messages).
fn dims_raw(head: &[u8], big: bool) -> [i16; 7] {
    std::array::from_fn(|d| {
        let b = [head[42 + 2 * d], head[43 + 2 * d]];
        if big { i16::from_be_bytes(b) } else { i16::from_le_bytes(b) }
    })
}

/// Decodes stored value number `index` of `raw`.
#[inline]
fn raw_value(raw: &[u8], index: usize, dtype: NiftiDtype, big: bool) -> f64 {
    macro_rules! get {
        ($t:ty, $n:expr) => {{
            let o = index * $n;
            let b: [u8; $n] = raw[o..o + $n].try_into().unwrap_or([0; $n]);
            (if big { <$t>::from_be_bytes(b) } else { <$t>::from_le_bytes(b) }) as f64
        }};
    }
    match dtype {
        NiftiDtype::U8 => raw[index] as f64,
        NiftiDtype::I8 => raw[index] as i8 as f64,
        NiftiDtype::I16 => get!(i16, 2),
        NiftiDtype::U16 => get!(u16, 2),
        NiftiDtype::I32 => get!(i32, 4),
        NiftiDtype::U32 => get!(u32, 4),
        NiftiDtype::I64 => get!(i64, 8),
        NiftiDtype::U64 => get!(u64, 8),
        NiftiDtype::F32 => get!(f32, 4),
        NiftiDtype::F64 => get!(f64, 8),
    }
}

/// Voxels selected from a 3-D volume, in numpy's C order over nibabel's `[i, j, k]` array.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoxelMask {
    dims: [usize; 3],
    /// On-disk (Fortran-order) offsets of the selected voxels, listed in C order.
    offsets: Vec<usize>,
}

impl VoxelMask {
    /// Selects the voxels of `volume` for which `keep(value)` holds, in C order.
    pub fn from_volume(volume: &Volume, keep: impl Fn(f64) -> bool) -> Self {
        let [nx, ny, nz] = volume.dims;
        let mut offsets = Vec::new();
        for i in 0..nx {
            for j in 0..ny {
                for k in 0..nz {
                    let f = i + nx * (j + ny * k);
                    if keep(volume.data[f]) {
                        offsets.push(f);
                    }
                }
            }
        }
        Self { dims: volume.dims, offsets }
    }

    /// The reference's nsdgeneral rule: voxels with a value > 0.
    pub fn positive(volume: &Volume) -> Self {
        Self::from_volume(volume, |v| v > 0.0)
    }

    /// Number of selected voxels.
    pub fn len(&self) -> usize {
        self.offsets.len()
    }

    /// Whether no voxel is selected.
    pub fn is_empty(&self) -> bool {
        self.offsets.is_empty()
    }

    /// Volume shape the mask applies to.
    pub fn dims(&self) -> [usize; 3] {
        self.dims
    }

    /// On-disk (Fortran-order) offsets of the selected voxels, in C order.
    pub fn offsets(&self) -> &[usize] {
        &self.offsets
    }

    /// The values of `volume` at the selected voxels (e.g. ROI labels in nsdgeneral order).
    pub fn select(&self, volume: &Volume) -> Result<Vec<f64>> {
        if volume.dims != self.dims {
            return Err(NsdError::Shape {
                message: format!(
                    "{}: volume dims {:?} differ from the mask's {:?}",
                    volume.path.display(),
                    volume.dims,
                    self.dims
                ),
            });
        }
        Ok(self.offsets.iter().map(|&o| volume.data[o]).collect())
    }
}

/// A 3-D volume (ROI labels, a mask) with values as nibabel's `get_fdata()` gives them.
#[derive(Debug, Clone, PartialEq)]
pub struct Volume {
    /// File it came from (for error messages).
    pub path: PathBuf,
    /// Shape `[nx, ny, nz]`.
    pub dims: [usize; 3],
    /// Values in on-disk Fortran order (x fastest).
    pub data: Vec<f64>,
}

impl Volume {
    /// The value at `[i, j, k]`.
    pub fn get(&self, i: usize, j: usize, k: usize) -> f64 {
        self.data[i + self.dims[0] * (j + self.dims[1] * k)]
    }
}

/// Streaming reader of one NIfTI-1 file: the header, then one 3-D volume at a time.
pub struct NiftiReader<R: Read> {
    header: NiftiHeader,
    path: PathBuf,
    source: R,
    volumes_read: usize,
    raw: Vec<u8>,
}

impl NiftiReader<Box<dyn Read + Send>> {
    /// Opens `path`; gzip is detected from the content (magic bytes), not the file name.
    pub fn open(path: &Path) -> Result<Self> {
        let mut file = File::open(path).map_err(|e| NsdError::io(path, e, "a NIfTI-1 file (.nii or .nii.gz)"))?;
        let mut magic = [0u8; 2];
        let n = file.read(&mut magic).map_err(werr(path))?;
        drop(file);
        let file = File::open(path).map_err(werr(path))?;
        let source: Box<dyn Read + Send> = if n == 2 && magic == [0x1f, 0x8b] {
            Box::new(MultiGzDecoder::new(BufReader::with_capacity(1 << 20, file)))
        } else {
            Box::new(BufReader::with_capacity(1 << 20, file))
        };
        Self::new(source, path)
    }
}

impl<R: Read> NiftiReader<R> {
    /// Reads the header from `source` (an uncompressed NIfTI-1 byte stream); `path` names it in errors.
    pub fn new(mut source: R, path: &Path) -> Result<Self> {
        let mut head = vec![0u8; HEADER_SIZE];
        read_exact(&mut source, &mut head, path, "the 348-byte NIfTI-1 header")?;
        let header = NiftiHeader::parse(&head, path)?;
        let mut skip = header.vox_offset.saturating_sub(HEADER_SIZE);
        if raw_vox_offset(&head, header.big_endian) == 0.0 {
            // vox_offset unset: the data start at 352 unless the extension flag (bytes 348..352)
            // announces extensions, whose end nothing then records.
            let mut flag = [0u8; 4];
            read_exact(&mut source, &mut flag, path, "the 4-byte extension flag after the header")?;
            if flag[0] != 0 {
                return Err(NsdError::format(
                    path,
                    "vox_offset is 0 (unset) but the extension flag announces header extensions, so the start of the \
                     voxel data is unknown; expected vox_offset >= 352 + the extensions' size",
                ));
            }
            skip = 0;
        }
        let skipped = std::io::copy(&mut (&mut source).take(skip as u64), &mut std::io::sink())
            .map_err(|e| read_error(path, e))?;
        if skipped != skip as u64 {
            return Err(NsdError::format(path, format!("file ends before vox_offset {}", header.vox_offset)));
        }
        Ok(Self { header, path: path.to_path_buf(), source, volumes_read: 0, raw: Vec::new() })
    }

    /// The parsed header.
    pub fn header(&self) -> &NiftiHeader {
        &self.header
    }

    /// Reads the next 3-D volume's stored bytes into the internal buffer. The buffer grows only
    /// as data arrives, so a header that lies about its size cannot force a huge allocation.
    fn next_raw(&mut self) -> Result<&[u8]> {
        if self.volumes_read >= self.header.n_volumes() {
            return Err(NsdError::OutOfRange {
                message: format!("{}: all {} volumes were already read", self.path.display(), self.header.n_volumes()),
            });
        }
        let want = self.header.volume_len() * self.header.dtype.size();
        self.raw.clear();
        self.raw.reserve(want.min(64 << 20));
        let got =
            (&mut self.source).take(want as u64).read_to_end(&mut self.raw).map_err(|e| read_error(&self.path, e))?;
        if got != want {
            return Err(NsdError::format(
                &self.path,
                format!(
                    "truncated: volume {} of {} needs {want} bytes, only {got} remain (dims {:?})",
                    self.volumes_read + 1,
                    self.header.n_volumes(),
                    self.header.dims
                ),
            ));
        }
        self.volumes_read += 1;
        if self.volumes_read == self.header.n_volumes() {
            // Drain the stream so a gzip trailer (CRC, length) is verified.
            std::io::copy(&mut self.source, &mut std::io::sink()).map_err(|e| read_error(&self.path, e))?;
        }
        Ok(&self.raw)
    }

    /// Reads the next volume and writes the masked voxels, scaled as nibabel does and cast to f32,
    /// into `out` (length `mask.len()`). Non-finite values are an error.
    pub fn next_masked(&mut self, mask: &VoxelMask, out: &mut [f32]) -> Result<()> {
        if mask.dims != self.header.spatial_dims() {
            return Err(NsdError::Shape {
                message: format!(
                    "{}: volume dims {:?} differ from the mask's {:?}",
                    self.path.display(),
                    self.header.spatial_dims(),
                    mask.dims
                ),
            });
        }
        if out.len() != mask.len() {
            return Err(NsdError::Shape {
                message: format!("output row has {} values, the mask selects {}", out.len(), mask.len()),
            });
        }
        let header = self.header.clone();
        let volume_index = self.volumes_read;
        let raw = self.next_raw()?;
        let scaling = header.scaling();
        let (dtype, big) = (header.dtype, header.big_endian);
        if dtype == NiftiDtype::I16 && !big && scaling.is_none() {
            // The NSD betas case: a direct path without per-value dispatch.
            for (o, &off) in out.iter_mut().zip(&mask.offsets) {
                *o = i16::from_le_bytes([raw[2 * off], raw[2 * off + 1]]) as f32;
            }
            return Ok(());
        }
        for (n, (o, &off)) in out.iter_mut().zip(&mask.offsets).enumerate() {
            let v = header.scale(raw_value(raw, off, dtype, big), scaling);
            if dtype.is_float() && !v.is_finite() {
                return Err(NsdError::NonFinite {
                    path: self.path.clone(),
                    message: format!("{v} at masked voxel {n} of volume {volume_index}"),
                });
            }
            *o = v as f32;
        }
        Ok(())
    }

    /// Reads the next volume whole, values as f64 (nibabel `get_fdata()`), in Fortran order.
    pub fn next_volume(&mut self) -> Result<Vec<f64>> {
        let header = self.header.clone();
        let raw = self.next_raw()?;
        let scaling = header.scaling();
        Ok((0..header.volume_len())
            .map(|i| header.scale(raw_value(raw, i, header.dtype, header.big_endian), scaling))
            .collect())
    }

    /// Reads every remaining volume: the whole array as nibabel's `get_fdata()` returns it
    /// (shape = dims, indexed `[i, j, k, ...]`).
    pub fn read_array(mut self) -> Result<ArrayD<f64>> {
        let mut data = Vec::new();
        while self.volumes_read < self.header.n_volumes() {
            data.extend(self.next_volume()?);
        }
        ArrayD::from_shape_vec(IxDyn(&self.header.dims).f(), data)
            .map_err(|e| NsdError::Shape { message: format!("{}: {e}", self.path.display()) })
    }
}

fn read_error(path: &Path, e: std::io::Error) -> NsdError {
    NsdError::format(path, format!("read failed (truncated or corrupt gzip?): {e}"))
}

fn read_exact<R: Read>(source: &mut R, buf: &mut [u8], path: &Path, what: &str) -> Result<()> {
    let mut filled = 0;
    while filled < buf.len() {
        match source.read(&mut buf[filled..]) {
            Ok(0) => {
                return Err(NsdError::format(path, format!("file ends after {filled} bytes, expected {what}")));
            }
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(read_error(path, e)),
        }
    }
    Ok(())
}

/// Reads a whole NIfTI-1 file as nibabel's `get_fdata()` would (f64, shape = dims).
pub fn read_nifti(path: &Path) -> Result<(NiftiHeader, ArrayD<f64>)> {
    let reader = NiftiReader::open(path)?;
    let header = reader.header().clone();
    Ok((header, reader.read_array()?))
}

/// Reads a 3-D volume (an ROI or mask file; a 4-D file with one volume also qualifies).
pub fn read_volume(path: &Path) -> Result<Volume> {
    let mut reader = NiftiReader::open(path)?;
    if reader.header().n_volumes() != 1 {
        return Err(NsdError::format(path, format!("expected a 3-D volume, dims are {:?}", reader.header().dims)));
    }
    let dims = reader.header().spatial_dims();
    let data = reader.next_volume()?;
    Ok(Volume { path: path.to_path_buf(), dims, data })
}

/// A value type the writer can store.
pub trait NiftiElement: Copy {
    /// Its NIfTI datatype.
    const DTYPE: NiftiDtype;
    /// Appends its little-endian bytes.
    fn put(self, out: &mut Vec<u8>);
}

macro_rules! element {
    ($t:ty, $d:ident) => {
        impl NiftiElement for $t {
            const DTYPE: NiftiDtype = NiftiDtype::$d;
            fn put(self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
    };
}
element!(u8, U8);
element!(i8, I8);
element!(i16, I16);
element!(u16, U16);
element!(i32, I32);
element!(u32, U32);
element!(i64, I64);
element!(u64, U64);
element!(f32, F32);
element!(f64, F64);

/// Builds a little-endian NIfTI-1 header (352 bytes with the empty extension flag) for a
/// single-file image with an axis-aligned affine of the given voxel sizes.
pub fn encode_header(dims: &[usize], dtype: NiftiDtype, pixdim: [f32; 3], scaling: (f32, f32)) -> Result<Vec<u8>> {
    if dims.is_empty() || dims.len() > 7 || dims.iter().any(|&d| d == 0 || d > i16::MAX as usize) {
        return Err(NsdError::Config(format!("NIfTI dims {dims:?} must be 1 to 7 values in 1..=32767")));
    }
    let mut h = vec![0u8; 352];
    let put_i16 = |h: &mut Vec<u8>, o: usize, v: i16| h[o..o + 2].copy_from_slice(&v.to_le_bytes());
    let put_f32 = |h: &mut Vec<u8>, o: usize, v: f32| h[o..o + 4].copy_from_slice(&v.to_le_bytes());
    h[0..4].copy_from_slice(&348i32.to_le_bytes());
    put_i16(&mut h, 40, dims.len() as i16);
    for d in 0..7 {
        put_i16(&mut h, 42 + 2 * d, *dims.get(d).unwrap_or(&1) as i16);
    }
    put_i16(&mut h, 70, dtype.code());
    put_i16(&mut h, 72, (dtype.size() * 8) as i16);
    put_f32(&mut h, 76, 1.0); // qfac
    for d in 0..7 {
        let v = pixdim.get(d).copied().unwrap_or(1.0);
        put_f32(&mut h, 80 + 4 * d, v);
    }
    put_f32(&mut h, 108, 352.0);
    put_f32(&mut h, 112, scaling.0);
    put_f32(&mut h, 116, scaling.1);
    h[123] = 2 | 8; // mm, seconds
    put_i16(&mut h, 254, 1); // sform_code: scanner
    put_f32(&mut h, 280, pixdim[0]);
    put_f32(&mut h, 296 + 4, pixdim[1]);
    put_f32(&mut h, 312 + 8, pixdim[2]);
    h[344..348].copy_from_slice(b"n+1\0");
    Ok(h)
}

/// Streaming NIfTI-1 writer: header first, then 3-D volumes one at a time; gzip when the file
/// name ends in `.gz`. The file appears at its path only after [`NiftiWriter::finish`].
pub struct NiftiWriter {
    path: PathBuf,
    tmp: tempfile::NamedTempFile,
    sink: Sink,
    volume_len: usize,
    remaining: usize,
    dtype: NiftiDtype,
    buf: Vec<u8>,
}

impl NiftiWriter {
    /// Starts `path` with shape `dims` (x, y, z[, t]) storing `T`, scaling `(slope, inter)`
    /// (use `(1.0, 0.0)` for none) and gzip `level` (0-9) when the name ends in `.gz`.
    pub fn create<T: NiftiElement>(
        path: &Path,
        dims: &[usize],
        pixdim: [f32; 3],
        scaling: (f32, f32),
        level: u32,
    ) -> Result<Self> {
        let header = encode_header(dims, T::DTYPE, pixdim, scaling)?;
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(werr(dir))?;
        let tmp = crate::atomic::temp_file_in(dir)?;
        let file = tmp.reopen().map_err(werr(path))?;
        let buffered = std::io::BufWriter::with_capacity(1 << 20, file);
        let mut sink = if path.extension().is_some_and(|e| e == "gz") {
            Sink::Gz(Box::new(GzEncoder::new(buffered, Compression::new(level.min(9)))))
        } else {
            Sink::Plain(buffered)
        };
        sink.write_all(&header).map_err(werr(path))?;
        let volume_len = dims.iter().take(3).product();
        let remaining = dims.iter().skip(3).product();
        Ok(Self { path: path.to_path_buf(), tmp, sink, volume_len, remaining, dtype: T::DTYPE, buf: Vec::new() })
    }

    /// Appends one 3-D volume in Fortran order (x fastest).
    pub fn write_volume<T: NiftiElement>(&mut self, values: &[T]) -> Result<()> {
        if T::DTYPE != self.dtype || values.len() != self.volume_len || self.remaining == 0 {
            return Err(NsdError::Shape {
                message: format!(
                    "{}: volume of {} {:?} values, expected {} {:?} values ({} volumes left)",
                    self.path.display(),
                    values.len(),
                    T::DTYPE,
                    self.volume_len,
                    self.dtype,
                    self.remaining
                ),
            });
        }
        self.buf.clear();
        for &v in values {
            v.put(&mut self.buf);
        }
        self.sink.write_all(&self.buf).map_err(werr(&self.path))?;
        self.remaining -= 1;
        Ok(())
    }

    /// Completes the file and renames it into place; every volume must have been written.
    pub fn finish(self) -> Result<()> {
        if self.remaining != 0 {
            return Err(NsdError::Shape {
                message: format!("{}: {} volumes were never written", self.path.display(), self.remaining),
            });
        }
        let mut buffered = match self.sink {
            Sink::Plain(b) => b,
            Sink::Gz(g) => g.finish().map_err(werr(&self.path))?,
        };
        buffered.flush().map_err(werr(&self.path))?;
        drop(buffered);
        self.tmp.persist(&self.path).map_err(|e| NsdError::Io { path: self.path.clone(), source: e.error })?;
        Ok(())
    }
}

enum Sink {
    Plain(std::io::BufWriter<File>),
    Gz(Box<GzEncoder<std::io::BufWriter<File>>>),
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Plain(w) => w.write(buf),
            Sink::Gz(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Plain(w) => w.flush(),
            Sink::Gz(w) => w.flush(),
        }
    }
}

/// Writes a whole array (Fortran-order `data`, shape `dims`) to `path` in one call.
pub fn write_nifti<T: NiftiElement>(
    path: &Path,
    dims: &[usize],
    data: &[T],
    pixdim: [f32; 3],
    scaling: (f32, f32),
) -> Result<()> {
    let mut w = NiftiWriter::create::<T>(path, dims, pixdim, scaling, 6)?;
    let vl: usize = dims.iter().take(3).product();
    if data.len() != dims.iter().product::<usize>() {
        return Err(NsdError::Shape {
            message: format!("{}: {} values for dims {dims:?}", path.display(), data.len()),
        });
    }
    for chunk in data.chunks(vl.max(1)) {
        w.write_volume(chunk)?;
    }
    w.finish()
}
