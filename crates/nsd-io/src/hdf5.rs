//! HDF5 files of NSD through netCDF-C (the `netcdf` crate, which reads plain HDF5 files such as
//! h5py writes): the stimulus brick `nsd_stimuli.hdf5` read image by image with hyperslabs, and
//! the `betas_sessionYY.hdf5` variant of the betas read in blocks of trials.
//!
//! Layouts (HDF5/h5py dims are C order, the reverse of NIfTI's):
//! - `imgBrick`: `(n_images, height, width, 3)` u8.
//! - `betas`: `(n_trials, nz, ny, nx)` i16, so one trial's slab is the same Fortran-order volume
//!   as a NIfTI volume and the same [`VoxelMask`] offsets apply.
//!
//! Filters: HDF5's own (gzip/deflate, shuffle, fletcher32, scale-offset, n-bit) and h5py's LZF
//! (id 32000, registered here as a decode-only HDF5 filter on first use). A dataset compressed
//! with any other filter (blosc, bitshuffle, zstd, ...) is reported with its filter and a repack
//! command. A file that is not HDF5, or is truncated, is reported with its size and what the
//! superblock expects.

use std::ffi::{CString, c_char, c_uint, c_void};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use hdf5_sys::h5z::{H5Z_FLAG_REVERSE, H5Z_class2_t, H5Z_filter_t};
use ndarray::Array4;
use netcdf::types::{IntType, NcVariableType};

use crate::error::{NsdError, Result};
use crate::nifti::VoxelMask;

/// h5py's LZF filter id (registered with The HDF Group).
pub const LZF_FILTER_ID: i32 = 32000;

/// What `imgBrick` must be, for messages.
const BRICK_WHAT: &str = "an HDF5 file with dataset imgBrick [N, 425, 425, 3] u8 (NSD's nsd_stimuli.hdf5)";
/// What `betas` must be, for messages.
const BETAS_WHAT: &str = "an HDF5 file with dataset betas [trials, z, y, x] i16 (NSD's betas_sessionYY.hdf5)";

fn nc_err(path: &Path) -> impl Fn(netcdf::Error) -> NsdError + '_ {
    move |e| NsdError::Hdf5 { path: path.to_path_buf(), message: e.to_string() }
}

/// An error from reading `dataset` of `path` (what was being read in `what`), with the filter
/// diagnosis when netCDF reports a filter error.
fn read_err(path: &Path, dataset: &str, what: String, e: netcdf::Error) -> NsdError {
    let filter = matches!(e, netcdf::Error::Netcdf(code) if code == -132 || code == -136);
    let hint = if matches!(e, netcdf::Error::Netcdf(-101)) { " (damaged or truncated data in the file?)" } else { "" };
    let mut message = format!("reading {what} of dataset {dataset}: {e}{hint}");
    if let Some(diag) = filter.then(|| filter_diagnosis(path, dataset)).flatten() {
        message = format!("{diag} ({e})");
    }
    NsdError::Hdf5 { path: path.to_path_buf(), message }
}

fn open(path: &Path, what: &str, dataset: &str) -> Result<netcdf::File> {
    if !path.exists() {
        return Err(NsdError::Missing { path: path.to_path_buf(), what: what.to_string() });
    }
    register_lzf_filter();
    match netcdf::open(path) {
        Ok(f) => Ok(f),
        Err(e) => {
            let mut message = unreadable(path, what, &e);
            if let Some(diag) = filter_diagnosis(path, dataset) {
                message = format!("{diag} ({e})");
            }
            Err(NsdError::Hdf5 { path: path.to_path_buf(), message })
        }
    }
}

/// Why `path` cannot be opened, in words: its size, whether it has the HDF5 signature, and, for a
/// truncated file, the size its superblock records.
fn unreadable(path: &Path, what: &str, e: &netcdf::Error) -> String {
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    let shown = size.map_or("size unknown".to_string(), |n| format!("{n} bytes"));
    match size.and_then(|n| superblock_end(path, n)) {
        None => format!(
            "not a readable HDF5 file ({shown}, no HDF5 signature: truncated download or another format?); expected \
             {what} ({e})"
        ),
        Some(end) if Some(end) > size => format!(
            "not a readable HDF5 file: truncated ({shown}, its HDF5 superblock records {end}: an interrupted download? \
             fetch it again); expected {what} ({e})"
        ),
        Some(_) => format!("not a readable HDF5 file ({shown}; corrupt?); expected {what} ({e})"),
    }
}

/// Finds the HDF5 superblock (at byte 0 or a power-of-two user-block offset from 512 on) and
/// returns the file size it records (base address + end-of-file address), `Some(0)` when the
/// signature is there but the superblock cannot be decoded, `None` without a signature.
fn superblock_end(path: &Path, size: u64) -> Option<u64> {
    use std::io::{Read, Seek, SeekFrom};
    const SIGNATURE: &[u8; 8] = b"\x89HDF\r\n\x1a\n";
    let mut file = std::fs::File::open(path).ok()?;
    let mut at = 0u64;
    loop {
        if at.checked_add(8)? > size {
            return None;
        }
        let mut head = [0u8; 64];
        file.seek(SeekFrom::Start(at)).ok()?;
        let n = file.read(&mut head).ok()?;
        if n >= 8 && &head[..8] == SIGNATURE {
            let head = &head[..n];
            let word = |o: usize, w: usize| -> Option<u64> {
                let b = head.get(o..o + w)?;
                Some(b.iter().rev().fold(0u64, |a, &x| (a << 8) | u64::from(x)))
            };
            let version = *head.get(8)?;
            let (osize, base_at) = match version {
                0 => (*head.get(13)? as usize, 24),
                1 => (*head.get(13)? as usize, 28),
                2 | 3 => (*head.get(9)? as usize, 12),
                _ => return Some(0),
            };
            if !matches!(osize, 2 | 4 | 8) {
                return Some(0);
            }
            let base = word(base_at, osize).unwrap_or(0);
            let eof = word(base_at + 2 * osize, osize);
            return Some(eof.map_or(0, |e| base.saturating_add(e)));
        }
        at = if at == 0 { 512 } else { at.checked_mul(2)? };
    }
}

/// Describes the filters of `dataset` in `path` when one of them is not available, with a repack
/// command; `None` when the filters cannot be read or all are available.
fn filter_diagnosis(path: &Path, dataset: &str) -> Option<String> {
    let filters = dataset_filters(path, dataset)?;
    let missing: Vec<&(i32, String)> = filters.iter().filter(|(id, _)| !filter_available(*id)).collect();
    let (id, name) = missing.first()?;
    let known = match *id {
        32001 => " (Blosc)",
        32008 => " (bitshuffle)",
        32015 => " (Zstandard)",
        32004 => " (LZ4)",
        307 => " (bzip2)",
        4 => " (SZIP)",
        _ => "",
    };
    Some(format!(
        "dataset {dataset} of {} is compressed with the HDF5 filter {id}{known} \"{name}\", which this reader cannot \
         decode (it reads gzip/deflate, shuffle, fletcher32 and h5py's LZF); repack it: \
         h5repack -f {dataset}:GZIP=4 in.hdf5 out.hdf5 (or in h5py: create_dataset('{dataset}', data=..., \
         compression='gzip'))",
        path.display()
    ))
}

/// `(filter id, filter name)` of each filter in the pipeline of `dataset`, read with HDF5 itself.
fn dataset_filters(path: &Path, dataset: &str) -> Option<Vec<(i32, String)>> {
    use hdf5_sys::{h5d, h5f, h5p};
    let cpath = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let cname = CString::new(dataset).ok()?;
    let _lock = hdf5_sys::LOCK.lock();
    // SAFETY: plain HDF5 calls on ids this function opens and closes, under the library lock; the
    // name buffer's length is passed to H5Pget_filter2.
    unsafe {
        let file = h5f::H5Fopen(cpath.as_ptr(), h5f::H5F_ACC_RDONLY, h5p::H5P_DEFAULT);
        if file < 0 {
            return None;
        }
        let dset = h5d::H5Dopen2(file, cname.as_ptr(), h5p::H5P_DEFAULT);
        let mut out = None;
        if dset >= 0 {
            let plist = h5d::H5Dget_create_plist(dset);
            if plist >= 0 {
                let n = h5p::H5Pget_nfilters(plist).max(0) as c_uint;
                let mut list = Vec::new();
                for i in 0..n {
                    let (mut flags, mut nelmts, mut config) = (0 as c_uint, 0usize, 0 as c_uint);
                    let mut name = [0 as c_char; 256];
                    let id = h5p::H5Pget_filter2(
                        plist,
                        i,
                        &mut flags,
                        &mut nelmts,
                        std::ptr::null_mut(),
                        name.len(),
                        name.as_mut_ptr(),
                        &mut config,
                    );
                    let name = std::ffi::CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned();
                    list.push((id, name));
                }
                h5p::H5Pclose(plist);
                out = Some(list);
            }
            h5d::H5Dclose(dset);
        }
        h5f::H5Fclose(file);
        out
    }
}

fn filter_available(id: i32) -> bool {
    let _lock = hdf5_sys::LOCK.lock();
    // SAFETY: a query of HDF5's filter table.
    unsafe { hdf5_sys::h5z::H5Zfilter_avail(id) > 0 }
}

/// Registers h5py's LZF filter (decode only) with the HDF5 library, once per process.
fn register_lzf_filter() {
    static DONE: OnceLock<bool> = OnceLock::new();
    DONE.get_or_init(|| {
        static NAME: &[u8] = b"lzf (h5py, decode-only, nsd-io)\0";
        let class = H5Z_class2_t {
            version: hdf5_sys::h5z::H5Z_CLASS_T_VERS as _,
            id: LZF_FILTER_ID as H5Z_filter_t,
            encoder_present: 0,
            decoder_present: 1,
            name: NAME.as_ptr().cast(),
            can_apply: None,
            set_local: None,
            filter: Some(lzf_filter),
        };
        let _lock = hdf5_sys::LOCK.lock();
        // SAFETY: HDF5 copies the class struct; the name and the function are 'static.
        let ok = unsafe { hdf5_sys::h5z::H5Zregister((&class as *const H5Z_class2_t).cast()) } >= 0;
        if !ok {
            tracing::warn!("could not register the LZF filter with HDF5; LZF-compressed datasets will not read");
        }
        ok
    });
}

/// The HDF5 filter callback: decompresses one LZF chunk in place (HDF5's buffer is replaced by a
/// new one of the decompressed size). Returns 0 (failure) for compression requests, corrupt data,
/// or a failed allocation; never unwinds.
unsafe extern "C" fn lzf_filter(
    flags: c_uint,
    cd_nelmts: usize,
    cd_values: *const c_uint,
    nbytes: usize,
    buf_size: *mut usize,
    buf: *mut *mut c_void,
) -> usize {
    if flags & H5Z_FLAG_REVERSE == 0 || buf.is_null() || buf_size.is_null() {
        return 0;
    }
    let run = || -> Option<usize> {
        // SAFETY: HDF5 passes a buffer of `*buf_size >= nbytes` bytes holding the chunk, and
        // `cd_nelmts` client values; h5py stores the chunk's uncompressed size as value 2.
        unsafe {
            let input = std::slice::from_raw_parts((*buf).cast::<u8>(), nbytes);
            let chunk = if cd_nelmts >= 3 && !cd_values.is_null() { *cd_values.add(2) as usize } else { 0 };
            // LZF expands at most 264 / 3 = 88 times (a 3-byte reference yields 264 bytes).
            let limit = if chunk > 0 { chunk } else { nbytes.saturating_mul(88).max(*buf_size) };
            let out = crate::lzf::decompress(input, limit).ok()?;
            let new = hdf5_sys::h5::H5allocate_memory(out.len().max(1), 0);
            if new.is_null() {
                return None;
            }
            std::ptr::copy_nonoverlapping(out.as_ptr(), new.cast::<u8>(), out.len());
            hdf5_sys::h5::H5free_memory(*buf);
            *buf = new;
            *buf_size = out.len().max(1);
            Some(out.len())
        }
    };
    std::panic::catch_unwind(run).ok().flatten().unwrap_or(0)
}

fn variable_dims(file: &netcdf::File, path: &Path, name: &str, want_type: IntType, rank: usize) -> Result<Vec<usize>> {
    let var = file.variable(name).ok_or_else(|| {
        NsdError::format(
            path,
            format!(
                "no dataset '{name}' (found: {})",
                file.variables().map(|v| v.name()).collect::<Vec<_>>().join(", ")
            ),
        )
    })?;
    let dims: Vec<usize> = var.dimensions().iter().map(|d| d.len()).collect();
    if dims.len() != rank {
        return Err(NsdError::format(path, format!("dataset '{name}' has shape {dims:?}, expected {rank} dimensions")));
    }
    match var.vartype() {
        NcVariableType::Int(t) if t == want_type => Ok(dims),
        other => Err(NsdError::format(path, format!("dataset '{name}' has type {other:?}, expected {want_type:?}"))),
    }
}

/// The stimulus brick (`imgBrick`, `n x h x w x 3` u8), read by image id.
pub struct StimulusBrick {
    path: PathBuf,
    file: netcdf::File,
    dims: [usize; 4],
}

impl StimulusBrick {
    /// Opens `path` and checks that `imgBrick` is a 4-D u8 dataset with 3 channels.
    pub fn open(path: &Path) -> Result<Self> {
        let file = open(path, BRICK_WHAT, "imgBrick")?;
        let d = variable_dims(&file, path, "imgBrick", IntType::U8, 4)?;
        if d[3] != 3 {
            return Err(NsdError::format(path, format!("imgBrick has shape {d:?}, expected (n, height, width, 3)")));
        }
        Ok(Self { path: path.to_path_buf(), file, dims: [d[0], d[1], d[2], d[3]] })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.dims[0]
    }

    /// Whether the brick holds no image.
    pub fn is_empty(&self) -> bool {
        self.dims[0] == 0
    }

    /// `(height, width)` of every image.
    pub fn image_size(&self) -> (usize, usize) {
        (self.dims[1], self.dims[2])
    }

    /// Reads images `ids` (0-based) into an `(ids.len(), h, w, 3)` array, one hyperslab each.
    pub fn read(&self, ids: &[usize]) -> Result<Array4<u8>> {
        let [n, h, w, c] = self.dims;
        let per = h * w * c;
        let mut out = vec![0u8; ids.len() * per];
        let var = self.file.variable("imgBrick").ok_or_else(|| NsdError::format(&self.path, "imgBrick disappeared"))?;
        for (slot, &id) in ids.iter().enumerate() {
            if id >= n {
                return Err(NsdError::OutOfRange {
                    message: format!("{}: image id {id} >= {n} images", self.path.display()),
                });
            }
            let extents: Vec<netcdf::Extent> = vec![(id..id + 1).into(), (..).into(), (..).into(), (..).into()];
            var.get_values_into(&mut out[slot * per..(slot + 1) * per], extents)
                .map_err(|e| read_err(&self.path, "imgBrick", format!("image {id}"), e))?;
        }
        Array4::from_shape_vec((ids.len(), h, w, c), out).map_err(|e| NsdError::Shape { message: e.to_string() })
    }
}

/// One `betas_sessionYY.hdf5` file (`betas`, `n_trials x nz x ny x nx` i16).
pub struct Hdf5Betas {
    path: PathBuf,
    file: netcdf::File,
    dims: [usize; 4],
}

impl Hdf5Betas {
    /// Opens `path` and checks the `betas` dataset.
    pub fn open(path: &Path) -> Result<Self> {
        let file = open(path, BETAS_WHAT, "betas")?;
        let d = variable_dims(&file, path, "betas", IntType::I16, 4)?;
        Ok(Self { path: path.to_path_buf(), file, dims: [d[0], d[1], d[2], d[3]] })
    }

    /// Number of trials.
    pub fn n_trials(&self) -> usize {
        self.dims[0]
    }

    /// Volume shape in NIfTI order `[nx, ny, nz]`.
    pub fn volume_dims(&self) -> [usize; 3] {
        [self.dims[3], self.dims[2], self.dims[1]]
    }

    /// Reads every trial's masked voxels as f32, row after row, into `out`
    /// (`n_trials * mask.len()` values), `block` trials per hyperslab.
    pub fn read_masked(&self, mask: &VoxelMask, out: &mut [f32], block: usize) -> Result<()> {
        if mask.dims() != self.volume_dims() {
            return Err(NsdError::Shape {
                message: format!(
                    "{}: volume dims {:?} differ from the mask's {:?}",
                    self.path.display(),
                    self.volume_dims(),
                    mask.dims()
                ),
            });
        }
        let nt = self.n_trials();
        if out.len() != nt * mask.len() {
            return Err(NsdError::Shape {
                message: format!("output holds {} values, expected {nt} x {}", out.len(), mask.len()),
            });
        }
        let var = self.file.variable("betas").ok_or_else(|| NsdError::format(&self.path, "betas disappeared"))?;
        let vol: usize = self.dims[1..].iter().product();
        let block = block.max(1);
        let mut buf = vec![0i16; block * vol];
        let mut t0 = 0;
        while t0 < nt {
            let t1 = (t0 + block).min(nt);
            let slab = &mut buf[..(t1 - t0) * vol];
            let extents: Vec<netcdf::Extent> = vec![(t0..t1).into(), (..).into(), (..).into(), (..).into()];
            var.get_values_into(slab, extents)
                .map_err(|e| read_err(&self.path, "betas", format!("trials {t0}..{t1}"), e))?;
            for t in t0..t1 {
                let v = &slab[(t - t0) * vol..(t - t0 + 1) * vol];
                let row = &mut out[t * mask.len()..(t + 1) * mask.len()];
                for (o, &off) in row.iter_mut().zip(mask.offsets()) {
                    *o = v[off] as f32;
                }
            }
            t0 = t1;
        }
        Ok(())
    }
}

/// Writes an `imgBrick` dataset (`n x h x w x 3` u8, chunked one image per chunk, deflate level 1)
/// with `image(id)` giving each image's `h*w*3` bytes. Written to a temporary name, then renamed.
pub fn write_stimuli(
    path: &Path,
    n: usize,
    height: usize,
    width: usize,
    mut image: impl FnMut(usize) -> Vec<u8>,
) -> Result<()> {
    let tmp = crate::atomic::temp_path_for(path)?;
    let _cleanup = RemoveOnDrop(&tmp);
    {
        let mut file = netcdf::create(&tmp).map_err(nc_err(path))?;
        for (name, len) in [("image", n), ("height", height), ("width", width), ("channel", 3)] {
            file.add_dimension(name, len).map_err(nc_err(path))?;
        }
        let mut var =
            file.add_variable::<u8>("imgBrick", &["image", "height", "width", "channel"]).map_err(nc_err(path))?;
        var.set_chunking(&[1, height, width, 3]).map_err(nc_err(path))?;
        var.set_compression(1, false).map_err(nc_err(path))?;
        for id in 0..n {
            let img = image(id);
            if img.len() != height * width * 3 {
                return Err(NsdError::Shape {
                    message: format!("image {id} has {} bytes, expected {height}x{width}x3", img.len()),
                });
            }
            let extents: Vec<netcdf::Extent> = vec![(id..id + 1).into(), (..).into(), (..).into(), (..).into()];
            var.put_values(&img, extents).map_err(nc_err(path))?;
        }
        file.close().map_err(nc_err(path))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| NsdError::Io { path: path.to_path_buf(), source: e })
}

/// Writes a `betas` dataset (`n_trials x nz x ny x nx` i16) from Fortran-order NIfTI-style volumes.
pub fn write_betas(path: &Path, volume_dims: [usize; 3], volumes: &[Vec<i16>]) -> Result<()> {
    let tmp = crate::atomic::temp_path_for(path)?;
    let _cleanup = RemoveOnDrop(&tmp);
    {
        let mut file = netcdf::create(&tmp).map_err(nc_err(path))?;
        let [nx, ny, nz] = volume_dims;
        for (name, len) in [("trial", volumes.len()), ("z", nz), ("y", ny), ("x", nx)] {
            file.add_dimension(name, len).map_err(nc_err(path))?;
        }
        let mut var = file.add_variable::<i16>("betas", &["trial", "z", "y", "x"]).map_err(nc_err(path))?;
        for (t, v) in volumes.iter().enumerate() {
            if v.len() != nx * ny * nz {
                return Err(NsdError::Shape {
                    message: format!("volume {t} has {} values, expected {nx}x{ny}x{nz}", v.len()),
                });
            }
            let extents: Vec<netcdf::Extent> = vec![(t..t + 1).into(), (..).into(), (..).into(), (..).into()];
            var.put_values(v, extents).map_err(nc_err(path))?;
        }
        file.close().map_err(nc_err(path))?;
    }
    std::fs::rename(&tmp, path).map_err(|e| NsdError::Io { path: path.to_path_buf(), source: e })
}

/// Removes a temporary file when a writer fails part-way (after a successful rename it is gone).
struct RemoveOnDrop<'a>(&'a Path);

impl Drop for RemoveOnDrop<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}
