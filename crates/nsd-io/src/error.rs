use std::fmt;
use std::path::{Path, PathBuf};

/// Everything that can go wrong while reading or writing NSD files.
///
/// Each variant names the file involved, and what was expected where the content is wrong.
///
/// Convention: every variant is a leaf. Its message is complete (it includes the underlying cause,
/// e.g. the OS error of [`NsdError::Io`]) and [`std::error::Error::source`] returns `None`, so a
/// caller that prints the message, or the message and its source chain, shows each cause once.
#[derive(Debug)]
pub enum NsdError {
    /// A file the dataset layout promises is not there.
    Missing { path: PathBuf, what: String },
    /// A file could not be opened, read or written (`source` is the OS error, shown in the message).
    Io { path: PathBuf, source: std::io::Error },
    /// A file was read but its content is not what the format or the dataset promises.
    Format { path: PathBuf, message: String },
    /// Two pieces of data that must agree in shape do not (e.g. a mask and a betas volume).
    Shape { message: String },
    /// An index (image id, trial, session, subject) lies outside the range the data allows.
    OutOfRange { message: String },
    /// A value that must be finite is NaN or infinite.
    NonFinite { path: PathBuf, message: String },
    /// A configuration (assembly options, synthetic-dataset size) is inconsistent.
    Config(String),
    /// The HDF5 layer (netCDF-C) reported an error; `message` names the dataset where there is one.
    #[cfg(feature = "hdf5")]
    Hdf5 { path: PathBuf, message: String },
}

impl fmt::Display for NsdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsdError::Missing { path, what } => write!(f, "missing file {}: expected {what}", path.display()),
            NsdError::Io { path, source } => write!(f, "cannot access {}: {source}", path.display()),
            NsdError::Format { path, message } => write!(f, "{}: {message}", path.display()),
            NsdError::Shape { message } => write!(f, "shape mismatch: {message}"),
            NsdError::OutOfRange { message } => write!(f, "out of range: {message}"),
            NsdError::NonFinite { path, message } => write!(f, "{}: non-finite value {message}", path.display()),
            NsdError::Config(message) => write!(f, "invalid configuration: {message}"),
            #[cfg(feature = "hdf5")]
            NsdError::Hdf5 { path, message } => write!(f, "{}: HDF5/netCDF error: {message}", path.display()),
        }
    }
}

/// Leaf errors: the cause is part of the message, so `source()` is `None` (see [`NsdError`]).
impl std::error::Error for NsdError {}

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
