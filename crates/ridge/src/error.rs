/// Everything that can go wrong while fitting, predicting, saving or loading a ridge model.
#[derive(Debug, thiserror::Error)]
pub enum RidgeError {
    /// Two inputs that must agree in a dimension do not.
    #[error("shape mismatch: {what}: expected {expected}, got {got}")]
    Shape {
        what: String,
        expected: usize,
        got: usize,
    },
    /// An input holds a value the solver cannot use (NaN, infinity, a non-positive alpha, no data).
    #[error("invalid input: {0}")]
    Invalid(String),
    /// A saved model or a target file could not be read or written.
    #[error("{path}: {message}")]
    File {
        path: std::path::PathBuf,
        message: String,
    },
}
