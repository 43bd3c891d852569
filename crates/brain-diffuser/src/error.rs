use std::error::Error;
use std::fmt;

/// The text of `error` followed by that of every error in its [`Error::source`] chain, joined by
/// `": "`, so that a wrapper that prints it (and returns no source itself) loses nothing whichever
/// convention the wrapped error follows.
pub(crate) fn chain_text(error: &dyn Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let part = cause.to_string();
        if !text.ends_with(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        next = cause.source();
    }
    text
}

/// An error raised inside a stage (an [`Encoder`](crate::Encoder), [`Regressor`](crate::Regressor)
/// or [`Generator`](crate::Generator)), tagged with the stage's name.
///
/// Stages from other crates keep their own error types: [`StageError::new`] wraps any of them. The
/// message is complete (the stage, then the wrapped error with its whole cause chain), so it returns
/// no [`Error::source`] and anyhow's `{:#}` says each thing once; the original error stays
/// reachable through [`StageError::inner`].
#[derive(Debug)]
pub struct StageError {
    stage: String,
    inner: Box<dyn Error + Send + Sync + 'static>,
}

impl StageError {
    /// Wraps `source` as an error of the stage called `stage`.
    pub fn new(stage: impl Into<String>, source: impl Into<Box<dyn Error + Send + Sync + 'static>>) -> Self {
        Self { stage: stage.into(), inner: source.into() }
    }

    /// The name of the stage that failed.
    pub fn stage(&self) -> &str {
        &self.stage
    }

    /// The wrapped error, e.g. to downcast it to the stage crate's type.
    pub fn inner(&self) -> &(dyn Error + Send + Sync + 'static) {
        self.inner.as_ref()
    }
}

impl fmt::Display for StageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "stage '{}': {}", self.stage, chain_text(self.inner.as_ref()))
    }
}

impl Error for StageError {}
