/// Everything that can go wrong in the `metrics` crate: image pairs, feature networks and evaluation protocols.
///
/// Each message is complete: it states its cause itself, so no variant also returns that cause from
/// [`std::error::Error::source`], and printing the whole chain (anyhow's `{:#}`) says everything once.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    /// A checkpoint, image or output file could not be read or written.
    #[error("cannot access {path}: {error}")]
    Io { path: std::path::PathBuf, error: std::io::Error },
    /// An image file could not be decoded.
    #[error("cannot decode image {path}: {message}")]
    Image { path: std::path::PathBuf, message: String },
    /// A checkpoint does not hold what the network needs.
    #[error("checkpoint {path}: {message}")]
    Checkpoint { path: std::path::PathBuf, message: String },
    /// A configuration value or an input shape is not what the metric accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A weight file could not be read (unknown format, damaged legacy pickle, bad header).
    #[error(transparent)]
    WeightFile(weight_files::WeightFileError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl From<pil_resample::ResampleError> for MetricsError {
    fn from(error: pil_resample::ResampleError) -> Self {
        MetricsError::Invalid { what: "resize".into(), message: error.to_string() }
    }
}

impl From<weight_files::WeightFileError> for MetricsError {
    /// Keeps an unreadable file an [`MetricsError::Io`]; every other reading error stays the
    /// leaf's, whose message names the file and the key at fault.
    fn from(e: weight_files::WeightFileError) -> Self {
        match e {
            weight_files::WeightFileError::Io { path, error } => MetricsError::Io { path, error },
            other => MetricsError::WeightFile(other),
        }
    }
}
