use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or writing NSD files.
///
/// Each variant names the file involved, and what was expected where the content is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NsdError {
    /// A file the dataset layout promises is not there.
    #[error("missing file {path}: expected {what}")]
    Missing { path: PathBuf, what: String },
    /// A file could not be opened, read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file was read but its content is not what the format or the dataset promises.
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
    /// Two pieces of data that must agree in shape do not (e.g. a mask and a betas volume).
    #[error("shape mismatch: {message}")]
    Shape { message: String },
    /// An index (image id, trial, session, subject) lies outside the range the data allows.
    #[error("out of range: {message}")]
    OutOfRange { message: String },
    /// A value that must be finite is NaN or infinite.
    #[error("{path}: non-finite value {message}")]
    NonFinite { path: PathBuf, message: String },
    /// A configuration (assembly options, synthetic-dataset size) is inconsistent.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The HDF5 layer (netCDF-C) reported an error.
    #[cfg(feature = "hdf5")]
    #[error("{path}: HDF5/netCDF error: {message}")]
    Hdf5 { path: PathBuf, message: String },
}

impl NsdError {
    /// A format error about `path`.
    pub(crate) fn format(path: &Path, message: impl Into<String>) -> Self {
        NsdError::Format { path: path.to_path_buf(), message: message.into() }
    }

    /// An I/O error about `path`; a missing file becomes [`NsdError::Missing`] naming what was expected.
    pub(crate) fn io(path: &Path, source: std::io::Error, what: &str) -> Self {
        if source.kind() == std::io::ErrorKind::NotFound {
            NsdError::Missing { path: path.to_path_buf(), what: what.to_string() }
        } else {
            NsdError::Io { path: path.to_path_buf(), source }
        }
    }
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, NsdError>;
