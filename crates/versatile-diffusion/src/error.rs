/// Everything that can go wrong in the `versatile-diffusion` crate: checkpoint loading and conversion, the U-Net, the autoencoder and the sampler.
#[derive(Debug, thiserror::Error)]
pub enum DiffusionError {
    /// A checkpoint or fixture could not be read or written.
    #[error("cannot access {path}: {source}")]
    Io {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A configuration value or an input shape is not what the model accepts.
    #[error("invalid {what}: {message}")]
    Invalid { what: String, message: String },
    /// A weight file does not fit the model: every missing, unexpected or mis-shaped key is listed.
    #[error("{source_name} does not fit the {model} model: {}", format_problems(problems))]
    Keys { source_name: String, model: String, problems: Vec<KeyProblem> },
    /// A weight or config file could not be parsed.
    #[error("cannot read {path}: {message}")]
    Format { path: std::path::PathBuf, message: String },
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
}

impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyProblem::Missing { name, expected } => write!(f, "missing `{name}` (expected shape {expected:?})"),
            KeyProblem::Unexpected { name } => write!(f, "unexpected `{name}`"),
            KeyProblem::Shape { name, expected, found } => {
                write!(f, "`{name}` has shape {found:?}, expected {expected:?}")
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
