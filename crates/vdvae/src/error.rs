use std::fmt;

/// Everything that can go wrong in the `vdvae` crate: configuration, checkpoint loading, encoding and decoding.
///
/// Each message is complete: it states its cause itself, so no variant also returns that cause from
/// [`std::error::Error::source`], and printing the whole chain (anyhow's `{:#}`) says everything once.
#[derive(Debug, thiserror::Error)]
pub enum VdvaeError {
    /// A checkpoint or fixture could not be read or written.
    #[error("cannot access {path}: {error}")]
    Io { path: std::path::PathBuf, error: std::io::Error },
    /// A configuration value or an input shape is not what the model accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A checkpoint file is in a format this crate cannot read.
    #[error("cannot read checkpoint {path}: {message}")]
    CheckpointFormat { path: std::path::PathBuf, message: String },
    /// A checkpoint's tensors do not match the model built from the configuration.
    #[error("checkpoint {path} does not fit the model: {mismatch}")]
    CheckpointMismatch { path: std::path::PathBuf, mismatch: KeyMismatch },
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The keys by which a state dict differs from the model: missing, unexpected and mis-shaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMismatch {
    /// Parameters of the model absent from the checkpoint.
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no parameter for.
    pub unexpected: Vec<String>,
    /// `(key, expected shape, found shape)` of tensors whose shape differs.
    pub misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// `(key, dtype found)` of tensors the model needs whose dtype is not floating point (an
    /// integer or bool tensor would be cast to meaningless weights); names as in safetensors (`I32`).
    pub wrong_dtype: Vec<(String, String)>,
}

impl KeyMismatch {
    /// True when the checkpoint fits exactly.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.misshaped.is_empty()
            && self.wrong_dtype.is_empty()
    }
}

impl fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let list = |f: &mut fmt::Formatter<'_>, title: &str, items: Vec<String>| -> fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            write!(f, "{} {title}: ", items.len())?;
            write!(f, "{}", items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "))?;
            if items.len() > SHOWN {
                write!(f, ", ... ({} more)", items.len() - SHOWN)?;
            }
            write!(f, "; ")
        };
        list(f, "missing", self.missing.clone())?;
        list(f, "unexpected", self.unexpected.clone())?;
        list(
            f,
            "mis-shaped",
            self.misshaped.iter().map(|(k, e, g)| format!("{k} (expected {e:?}, found {g:?})")).collect(),
        )?;
        list(
            f,
            "with a non-floating dtype",
            self.wrong_dtype
                .iter()
                .map(|(k, d)| format!("{k} (found {d}, expected {})", crate::checkpoint::FLOAT_DTYPES.join(", ")))
                .collect(),
        )
    }
}
