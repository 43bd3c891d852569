//! Reading Hugging Face checkpoints (`model.safetensors`, `pytorch_model.bin`) into a [`VarStore`],
//! reporting missing, unexpected and mis-shaped keys by name before any data is copied.
//!
//! `.safetensors` files are read one tensor at a time from the file (header read by the
//! `weight-files` leaf crate), so the peak host memory is the model plus its largest tensor, not
//! twice the model as with `Tensor::read_safetensors`. `.bin` files (zip or legacy `torch.save`)
//! go through `weight_files_tch::read_state_dict`, which holds the whole state dict once.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use tch::{Tensor, nn::VarStore};
use weight_files::Dtype;

use crate::ClipError;

/// The checkpoint file names looked for in a model folder, in order of preference.
pub const CHECKPOINT_NAMES: [&str; 2] = ["model.safetensors", "pytorch_model.bin"];

/// Finds the checkpoint of a Hugging Face model folder (`model.safetensors`, else `pytorch_model.bin`).
pub fn find_checkpoint(dir: &Path) -> Result<PathBuf, ClipError> {
    CHECKPOINT_NAMES.iter().map(|name| dir.join(name)).find(|p| p.is_file()).ok_or_else(|| ClipError::Invalid {
        what: dir.display().to_string(),
        message: format!("no checkpoint found (expected one of {CHECKPOINT_NAMES:?})"),
    })
}

/// Where a tensor's data is: in a safetensors file at a byte range, or already in memory.
enum Source {
    File { dtype: Dtype, start: u64, len: usize },
    Loaded(Tensor),
}

struct Entry {
    shape: Vec<i64>,
    /// The stored dtype, as safetensors names it (`F32`, `I64`, ...).
    dtype: String,
    source: Source,
}

/// A checkpoint's tensors by name, with their shapes known before their data is read.
pub struct Checkpoint {
    path: PathBuf,
    entries: HashMap<String, Entry>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClipError + '_ {
    move |error| ClipError::Io { path: path.to_path_buf(), error }
}

pub use weight_files::FLOAT_DTYPES;

impl Checkpoint {
    /// Opens a checkpoint by extension: `.safetensors` (header only, data read later) or a
    /// `torch.save` zip file (`.bin`, `.pth`, `.pt`, loaded now).
    pub fn open(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
        let entries = if is_safetensors {
            Self::safetensors_entries(path)?
        } else {
            let tensors = weight_files_tch::read_state_dict(path)?;
            tensors
                .into_iter()
                .map(|(name, t)| {
                    let (shape, dtype) = (t.size(), weight_files_tch::dtype_name(t.kind()));
                    (name, Entry { shape, dtype, source: Source::Loaded(t) })
                })
                .collect()
        };
        Ok(Self { path: path.to_path_buf(), entries })
    }

    fn safetensors_entries(path: &Path) -> Result<HashMap<String, Entry>, ClipError> {
        let header = weight_files::read_safetensors_header(path)?;
        let entries = header.tensors.into_iter().map(|(name, info)| {
            let shape = info.shape.iter().map(|&d| d as i64).collect();
            let (start, len) = (info.bytes.start, (info.bytes.end - info.bytes.start) as usize);
            let source = Source::File { dtype: info.dtype, start, len };
            (name, Entry { shape, dtype: info.dtype.name().to_owned(), source })
        });
        Ok(entries.collect())
    }

    /// The path the checkpoint was read from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Names and shapes of every tensor in the checkpoint, sorted by name.
    pub fn shapes(&self) -> BTreeMap<String, Vec<i64>> {
        self.entries.iter().map(|(k, e)| (k.clone(), e.shape.clone())).collect()
    }

    fn read(&self, name: &str, file: &mut Option<std::fs::File>) -> Result<Tensor, ClipError> {
        let entry = &self.entries[name];
        match &entry.source {
            Source::Loaded(t) => Ok(t.shallow_clone()),
            Source::File { dtype, start, len } => {
                let kind = weight_files_tch::kind(*dtype);
                let f = match file {
                    Some(f) => f,
                    None => file.insert(std::fs::File::open(&self.path).map_err(io_err(&self.path))?),
                };
                let mut bytes = vec![0u8; *len];
                f.seek(SeekFrom::Start(*start)).map_err(io_err(&self.path))?;
                f.read_exact(&mut bytes).map_err(io_err(&self.path))?;
                Ok(Tensor::f_from_data_size(&bytes, &entry.shape, kind)?)
            }
        }
    }

    /// The dtype of every tensor (safetensors names: `F32`, `I64`, ...), sorted by name.
    pub fn dtypes(&self) -> BTreeMap<String, String> {
        self.entries.iter().map(|(k, e)| (k.clone(), e.dtype.clone())).collect()
    }

    /// The value of a 0-dimensional floating-point tensor such as `logit_scale`, or `None` when absent.
    pub fn scalar(&self, name: &str) -> Result<Option<f64>, ClipError> {
        let Some(entry) = self.entries.get(name) else {
            return Ok(None);
        };
        if !FLOAT_DTYPES.contains(&entry.dtype.as_str()) {
            return Err(ClipError::Checkpoint {
                path: self.path.clone(),
                missing: Vec::new(),
                unexpected: Vec::new(),
                mismatched: Vec::new(),
                wrong_dtype: vec![(name.to_owned(), entry.dtype.clone())],
            });
        }
        let t = self.read(name, &mut None)?;
        Ok(Some(t.f_double_value(&[])?))
    }

    /// Copies the checkpoint into every variable of `vs`, casting to the variable's kind and device.
    ///
    /// `ignorable` names checkpoint keys that belong elsewhere (the other tower of a CLIPModel file,
    /// legacy `position_ids` buffers, which are integer and never loaded). Every variable must be
    /// present with its exact shape and a floating-point dtype ([`FLOAT_DTYPES`]), and every other
    /// key must be ignorable; otherwise nothing is copied and the error lists all offending keys by name.
    pub fn load_into(&self, vs: &VarStore, ignorable: impl Fn(&str) -> bool) -> Result<(), ClipError> {
        let variables = vs.variables();
        let mut missing = Vec::new();
        let mut mismatched = Vec::new();
        let mut wrong_dtype = Vec::new();
        for (name, var) in &variables {
            match self.entries.get(name) {
                None => missing.push(name.clone()),
                Some(e) => {
                    if e.shape != var.size() {
                        mismatched.push(format!("{name}: checkpoint {:?}, model {:?}", e.shape, var.size()));
                    }
                    if !FLOAT_DTYPES.contains(&e.dtype.as_str()) {
                        wrong_dtype.push((name.clone(), e.dtype.clone()));
                    }
                }
            }
        }
        let mut unexpected: Vec<String> =
            self.entries.keys().filter(|k| !variables.contains_key(*k) && !ignorable(k)).cloned().collect();
        if !(missing.is_empty() && mismatched.is_empty() && unexpected.is_empty() && wrong_dtype.is_empty()) {
            missing.sort();
            mismatched.sort();
            unexpected.sort();
            wrong_dtype.sort();
            return Err(ClipError::Checkpoint {
                path: self.path.clone(),
                missing,
                unexpected,
                mismatched,
                wrong_dtype,
            });
        }
        let mut file = None;
        tch::no_grad(|| -> Result<(), ClipError> {
            let mut names: Vec<_> = variables.keys().collect();
            names.sort();
            for name in names {
                let mut var = variables[name].shallow_clone();
                let src = self.read(name, &mut file)?;
                var.f_copy_(&src)?;
            }
            Ok(())
        })?;
        tracing::debug!(
            path = %self.path.display(),
            tensors = variables.len(),
            "checkpoint loaded"
        );
        Ok(())
    }
}

/// True for buffers some exports carry that are not model parameters (`*.position_ids`).
pub fn is_legacy_buffer(name: &str) -> bool {
    name.ends_with(".position_ids")
}
