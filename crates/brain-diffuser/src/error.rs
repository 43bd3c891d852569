use std::error::Error;
use std::fmt;

/// An error raised inside a stage (an [`Encoder`](crate::Encoder), [`Regressor`](crate::Regressor)
/// or [`Generator`](crate::Generator)), tagged with the stage's name.
///
/// Stages from other crates keep their own error types: [`StageError::new`] wraps any of them, and
/// the original stays reachable through [`Error::source`].
#[derive(Debug)]
pub struct StageError {
    stage: String,
    source: Box<dyn Error + Send + Sync + 'static>,
}

impl StageError {
    /// Wraps `source` as an error of the stage called `stage`.
    pub fn new(stage: impl Into<String>, source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self { stage: stage.into(), source: source.into() }
    }

    /// The name of the stage that failed.
    pub fn stage(&self) -> &str {
        &self.stage
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage '{}': {}", self.stage, self.source)
    }
}

impl Error for StageError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        Some(self.source.as_ref())
    }
}

/// Everything that can go wrong while running the pipeline.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A stage failed.
    #[error(transparent)]
    Stage(#[from] StageError),
    /// Reading the dataset failed.
    #[error(transparent)]
    Nsd(#[from] nsd_io::NsdError),
    /// Two stages disagree about a shape.
    #[error("shape mismatch between stages: {0}")]
    Shape(String),
}
