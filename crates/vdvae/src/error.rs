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
    /// A checkpoint's tensors do not match the model built from the configuration.
    #[error("checkpoint {path} does not fit the model: {mismatch}")]
    CheckpointMismatch { path: std::path::PathBuf, mismatch: KeyMismatch },
    /// A weight file could not be read (unknown format, damaged legacy pickle, bad header).
    #[error(transparent)]
    WeightFile(weight_files::WeightFileError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// The keys by which a state dict differs from the model (the `weight-files` report, shared by
/// the model crates).
pub use weight_files::KeyMismatch;

impl From<weight_files::WeightFileError> for VdvaeError {
    /// Keeps an unreadable file an [`VdvaeError::Io`]; every other reading error stays the leaf's,
    /// whose message names the file and the key at fault.
    fn from(e: weight_files::WeightFileError) -> Self {
        match e {
            weight_files::WeightFileError::Io { path, error } => VdvaeError::Io { path, error },
            other => VdvaeError::WeightFile(other),
        }
    }
}
