use std::path::PathBuf;

/// Everything that can go wrong while fitting, predicting, saving or loading a ridge model.
///
/// Each variant names the input at fault (`what`) so that a caller juggling several target
/// groups and files can tell which one was rejected.
#[derive(Debug, thiserror::Error)]
pub enum RidgeError {
    /// Two inputs that must agree in a dimension do not.
    #[error("shape mismatch: {what}: expected {expected}, got {got}")]
    Shape { what: String, expected: usize, got: usize },
    /// A NaN or an infinity in the data; ridge would silently spread it to every output.
    #[error("{what} holds a non-finite value {value} at row {row}, column {col}")]
    NonFinite { what: String, row: usize, col: usize, value: f64 },
    /// A regularisation strength that is not a finite number greater than zero.
    #[error("alpha must be finite and > 0, got {alpha} ({what})")]
    InvalidAlpha { what: String, alpha: f64 },
    /// An input without rows, columns or candidates.
    #[error("{what} is empty")]
    Empty { what: String },
    /// Any other input the solver cannot use (an option out of range, an unsupported layout).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A factorisation failed (e.g. a Gram matrix that is not numerically positive definite).
    #[error("{what}: decomposition failed: {message}")]
    Decomposition { what: String, message: String },
    /// A saved model or a target file could not be read or written.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, RidgeError>;

impl RidgeError {
    pub(crate) fn file(path: impl Into<PathBuf>, message: impl std::fmt::Display) -> Self {
        RidgeError::File { path: path.into(), message: message.to_string() }
    }
}

impl From<weight_files::WeightFileError> for RidgeError {
    /// A weight-file reading error as a [`RidgeError::File`] of the same file and message.
    fn from(e: weight_files::WeightFileError) -> Self {
        match e {
            weight_files::WeightFileError::Io { path, error } => RidgeError::File { path, message: error.to_string() },
            weight_files::WeightFileError::Format { path, message } => RidgeError::File { path, message },
        }
    }
}
