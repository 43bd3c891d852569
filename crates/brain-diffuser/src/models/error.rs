//! [`ModelError`]: everything that can go wrong while finding, loading, checking or writing models,
//! each message saying each thing once.

use std::path::{Path, PathBuf};

/// Everything that can go wrong while finding, loading, checking or writing models.
///
/// Each message is complete and says each thing once: a variant that wraps another crate's error
/// prints that error's text (prefixed with the path only where the text does not name it already)
/// and does not also return it from [`std::error::Error::source`], so anyhow's `{:#}` repeats nothing.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model's file or folder is not in the models folder.
    #[error("{what} not found: expected {path} ({expected})")]
    Missing {
        /// The model, e.g. "VDVAE".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What belongs there.
        expected: String,
    },
    /// A file or folder is present but holds something the loaders cannot use.
    #[error("{path}: {message}")]
    Invalid {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A configuration value that a loaded checkpoint contradicts.
    #[error("configuration `{key}` = {value} does not fit {}: {evidence}; {fix}", file.display())]
    ConfigMismatch {
        /// The configuration key, e.g. `clip.embedding_dim`.
        key: &'static str,
        /// Its value in the configuration.
        value: String,
        /// The checkpoint (or model configuration) file that says otherwise.
        file: PathBuf,
        /// What the file holds, naming the tensor and its shape.
        evidence: String,
        /// The value that fits, or what to change.
        fix: String,
    },
    /// The `vdvae` crate failed on a file of the folder.
    #[error("{}", located("VDVAE", path, error))]
    Vdvae {
        /// The checkpoint or configuration.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<vdvae::VdvaeError>,
    },
    /// The `clip` crate failed on a folder.
    #[error("{}", located("CLIP", path, error))]
    Clip {
        /// The model or tokenizer folder.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<clip::ClipError>,
    },
    /// The `versatile-diffusion` crate failed on the snapshot or the merged file.
    #[error("{}", located("Versatile Diffusion", path, error))]
    Diffusion {
        /// The folder or merged file.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<versatile_diffusion::DiffusionError>,
    },
    /// The `metrics` crate failed on a network's weights.
    #[error("{}", located(&format!("metric network {network}"), path, error))]
    Metrics {
        /// The network's slot name.
        network: &'static str,
        /// Its weight file.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<metrics::MetricsError>,
    },
    /// A file could not be read or written.
    #[error("cannot access {}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        error: std::io::Error,
    },
    /// libtorch failed while writing tensors.
    #[error("cannot write {}: {error}", path.display())]
    Torch {
        /// The file being written.
        path: PathBuf,
        /// libtorch's error.
        error: tch::TchError,
    },
}

/// `what path: error`, or `what: error` when the error's text already names `path` (the crates'
/// errors name the file they failed on), so that no path is printed twice.
fn located(what: &str, path: &Path, error: &dyn std::error::Error) -> String {
    let text = crate::error::chain_text(error);
    let shown = path.display().to_string();
    if text.contains(&shown) { format!("{what}: {text}") } else { format!("{what} {shown}: {text}") }
}

pub(crate) fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |error| ModelError::Io { path: path.to_path_buf(), error }
}
