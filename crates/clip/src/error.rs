use std::path::PathBuf;

/// Everything that can go wrong in the `clip` crate: configuration, checkpoint loading, tokenisation, preprocessing and the towers.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A checkpoint or fixture could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration value or an input shape is not what the model accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A checkpoint's keys do not match the model's parameters; every offending key is named.
    #[error(
        "checkpoint {path} does not match the model: missing {missing:?}; unexpected {unexpected:?}; mis-shaped {mismatched:?}"
    )]
    Checkpoint {
        path: PathBuf,
        /// Model parameters the checkpoint lacks.
        missing: Vec<String>,
        /// Checkpoint keys that are neither parameters nor known extras.
        unexpected: Vec<String>,
        /// `name: checkpoint [shape], model [shape]` for each key whose shape differs.
        mismatched: Vec<String>,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl ClipError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { what: what.into(), message: message.into() }
    }
}
