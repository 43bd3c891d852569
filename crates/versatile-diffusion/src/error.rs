/// Everything that can go wrong in the `versatile-diffusion` crate: checkpoint loading and conversion, the U-Net, the autoencoder and the sampler.
///
/// Each message is complete: it states its cause itself, so no variant also returns that cause from
/// [`std::error::Error::source`], and printing the whole chain (anyhow's `{:#}`) says everything once.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    /// A checkpoint or fixture could not be read or written.
    #[error("cannot access {}: {error}", path.display())]
    Io { path: std::path::PathBuf, error: std::io::Error },
    /// A configuration value or an input shape is not what the model accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A weight file does not fit the model: every missing, unexpected or mis-shaped key is listed.
    #[error("{source_name} does not fit the {model} model: {}", format_problems(problems))]
    Keys { source_name: String, model: String, problems: Vec<KeyProblem> },
    /// A weight or config file could not be parsed.
    #[error("cannot read {path}: {message}")]
    Format { path: std::path::PathBuf, message: String },
    /// A weight file could not be read (unknown format, damaged legacy pickle, bad header); the
    /// message names the file.
    #[error(transparent)]
    WeightFile(#[from] weight_files::WeightFileError),
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}

/// One way in which a named weight tensor differs from what the model expects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyProblem {
    /// The model needs this tensor but the file lacks it.
    Missing { name: String, expected: Vec<i64> },
    /// The file holds this tensor but the model has no such parameter.
    Unexpected { name: String },
    /// Both have it, with different shapes.
    Shape { name: String, expected: Vec<i64>, found: Vec<i64> },
    /// The file stores this parameter in a dtype that is not floating point (safetensors names,
    /// e.g. `I32`): its bytes would be cast to meaningless weights.
    Dtype { name: String, found: String },
}

pub use weight_files::FLOAT_DTYPES;
pub use weight_files_tch::dtype_name;

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Missing { name, expected } => write!(f, "missing `{name}` (expected shape {expected:?})"),
            KeyProblem::Unexpected { name } => write!(f, "unexpected `{name}`"),
            KeyProblem::Shape { name, expected, found } => {
                write!(f, "`{name}` has shape {found:?}, expected {expected:?}")
            }
            KeyProblem::Dtype { name, found } => {
                write!(f, "`{name}` has dtype {found}, expected one of {}", FLOAT_DTYPES.join(", "))
            }
        }
    }
}

fn format_problems(problems: &[KeyProblem]) -> String {
    const SHOWN: usize = 20;
    let mut text: Vec<String> = problems.iter().take(SHOWN).map(ToString::to_string).collect();
    if problems.len() > SHOWN {
        text.push(format!("... and {} more", problems.len() - SHOWN));
    }
    format!("{} problem(s): {}", problems.len(), text.join("; "))
}

impl DiffusionError {
    /// Shorthand for [`DiffusionError::Invalid`].
    pub(crate) fn invalid(what: impl Into<String>, message: impl Into<String>) -> Self {
        DiffusionError::Invalid { what: what.into(), message: message.into() }
    }
}
