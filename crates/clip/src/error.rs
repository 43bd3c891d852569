use std::path::PathBuf;

/// Everything that can go wrong in the `clip` crate: configuration, checkpoint loading, tokenisation, preprocessing and the towers.
///
/// Each message is complete: it states its cause itself, so no variant also returns that cause from
/// [`std::error::Error::source`], and printing the whole chain (anyhow's `{:#}`) says everything once.
#[derive(Debug, thiserror::Error)]
pub enum ClipError {
    /// A checkpoint or fixture could not be read or written.
    #[error("cannot access {path}: {error}")]
    Io { path: PathBuf, error: std::io::Error },
    /// A configuration value or an input shape is not what the model accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A checkpoint's keys do not match the model's parameters; every offending key is named.
    #[error(
        "checkpoint {} does not match the model: {}",
        path.display(),
        key_report(missing, unexpected, mismatched, wrong_dtype)
    )]
    Checkpoint {
        path: PathBuf,
        /// Model parameters the checkpoint lacks.
        missing: Vec<String>,
        /// Checkpoint keys that are neither parameters nor known extras.
        unexpected: Vec<String>,
        /// `name: checkpoint [shape], model [shape]` for each key whose shape differs.
        mismatched: Vec<String>,
        /// `(name, dtype)` of parameters stored in a dtype that is not floating point (safetensors
        /// names, e.g. `I32`): their bytes would be cast to meaningless weights.
        wrong_dtype: Vec<(String, String)>,
    },
    /// The tokenizer could not be built or failed on an input.
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    /// A weight file could not be read (unknown format, damaged legacy pickle, bad header).
    #[error(transparent)]
    WeightFile(weight_files::WeightFileError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

impl From<weight_files::WeightFileError> for ClipError {
    /// Keeps an unreadable file an [`ClipError::Io`]; every other reading error stays the leaf's,
    /// whose message names the file and the key at fault.
    fn from(e: weight_files::WeightFileError) -> Self {
        match e {
            weight_files::WeightFileError::Io { path, error } => ClipError::Io { path, error },
            other => ClipError::WeightFile(other),
        }
    }
}

/// The non-empty groups of a [`ClipError::Checkpoint`], e.g. `missing [..]; not floating point: ..`.
fn key_report(
    missing: &[String],
    unexpected: &[String],
    mismatched: &[String],
    wrong_dtype: &[(String, String)],
) -> String {
    let mut parts = Vec::new();
    for (title, list) in [("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)] {
        if !list.is_empty() {
            parts.push(format!("{title} {list:?}"));
        }
    }
    if !wrong_dtype.is_empty() {
        let items: Vec<String> = wrong_dtype
            .iter()
            .map(|(name, dtype)| {
                format!("{name} (found {dtype}, expected {})", crate::weights::FLOAT_DTYPES.join(", "))
            })
            .collect();
        parts.push(format!("not floating point: {}", items.join(", ")));
    }
    parts.join("; ")
}

impl ClipError {
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid { what: what.into(), message: message.into() }
    }
}
