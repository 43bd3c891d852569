use std::path::PathBuf;

/// Everything that can go wrong reading a weight file. Each message names the file, and the key,
/// dtype or shape at fault with what was expected.
#[derive(Debug, thiserror::Error)]
pub enum WeightFileError {
    /// The file could not be opened or read.
    #[error("cannot access {}: {error}", path.display())]
    Io { path: PathBuf, error: std::io::Error },
    /// The file is not in a format this crate reads, or its contents contradict themselves.
    #[error("cannot read {}: {message}", path.display())]
    Format { path: PathBuf, message: String },
}

impl WeightFileError {
    /// The file the error is about.
    pub fn path(&self) -> &std::path::Path {
        match self {
            WeightFileError::Io { path, .. } | WeightFileError::Format { path, .. } => path,
        }
    }

    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        WeightFileError::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |error| WeightFileError::Io { path, error }
    }
}
