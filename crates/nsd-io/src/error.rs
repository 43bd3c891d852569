use std::path::PathBuf;

/// Everything that can go wrong while reading or writing NSD files.
///
/// Each variant names the file involved, and what was expected where the content is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NsdError {
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
}
