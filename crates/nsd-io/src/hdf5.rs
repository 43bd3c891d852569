//! HDF5 files of NSD through netCDF-C (the `netcdf` crate, which reads plain HDF5 files such as
//! h5py writes): the stimulus brick `nsd_stimuli.hdf5` read image by image with hyperslabs, and
//! the `betas_sessionYY.hdf5` variant of the betas read in blocks of trials.
//!
//! Layouts (HDF5/h5py dims are C order, the reverse of NIfTI's):
//! - `imgBrick`: `(n_images, height, width, 3)` u8.
//! - `betas`: `(n_trials, nz, ny, nx)` i16, so one trial's slab is the same Fortran-order volume
//!   as a NIfTI volume and the same [`VoxelMask`] offsets apply.

use std::path::{Path, PathBuf};

use ndarray::Array4;
use netcdf::types::{IntType, NcVariableType};

use crate::error::{NsdError, Result};
use crate::nifti::VoxelMask;

fn nc_err(path: &Path) -> impl Fn(netcdf::Error) -> NsdError + '_ {
    move |e| NsdError::Hdf5 { path: path.to_path_buf(), message: e.to_string() }
}

fn open(path: &Path, what: &str) -> Result<netcdf::File> {
    if !path.exists() {
        return Err(NsdError::Missing { path: path.to_path_buf(), what: what.to_string() });
    }
    netcdf::open(path).map_err(nc_err(path))
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
        let file = open(path, "the NSD stimulus file nsd_stimuli.hdf5 (dataset imgBrick)")?;
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
            var.get_values_into(&mut out[slot * per..(slot + 1) * per], extents).map_err(nc_err(&self.path))?;
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
        let file = open(path, "an NSD betas session in HDF5 (dataset betas)")?;
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
            var.get_values_into(slab, extents).map_err(nc_err(&self.path))?;
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
    let tmp = tmp_path(path)?;
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
    let tmp = tmp_path(path)?;
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

fn tmp_path(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| NsdError::Io { path: dir.to_path_buf(), source: e })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(dir.join(format!(".{name}.partial-{}", std::process::id())))
}
