use std::path::{Path, PathBuf};

use crate::StageError;

/// Everything that can stop a step of the command line.
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    /// A stage (encoder, regressor, generator) failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Reading NSD data or a cached array failed.
    #[error(transparent)]
    Nsd(#[from] nsd_io::NsdError),
    /// A regression failed.
    #[error(transparent)]
    Ridge(#[from] ridge::RidgeError),
    /// Scoring failed.
    #[error(transparent)]
    Metrics(#[from] metrics::MetricsError),
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    File { path: PathBuf, message: String },
    /// An earlier step's output is missing.
    #[error("{what} is missing ({path}): run `brain-diffuser {step}` first")]
    Missing { what: String, path: PathBuf, step: &'static str },
    /// A folder holds outputs made with other settings.
    #[error(
        "{dir} holds outputs made with other settings\n  recorded: {recorded}\n  now:      {now}\n\
         use another --run folder, or delete {dir} to recompute it"
    )]
    Stale { dir: PathBuf, recorded: String, now: String },
    /// Inputs that do not fit together (shapes, counts, ids).
    #[error("{0}")]
    Invalid(String),
    /// A report picture that cannot be drawn (too large, a bad cell size, no image).
    #[error("report: {0}")]
    Report(#[from] crate::report::ReportError),
}

impl WorkflowError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, error: std::io::Error) -> Self {
        Self::File { path: path.to_owned(), message: error.to_string() }
    }

    /// A missing input that `step` produces.
    pub fn missing(what: impl Into<String>, path: &Path, step: &'static str) -> Self {
        Self::Missing { what: what.into(), path: path.to_owned(), step }
    }
}
