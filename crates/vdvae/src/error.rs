/// Everything that can go wrong in the `vdvae` crate: configuration, checkpoint loading, encoding and decoding.
#[derive(Debug, thiserror::Error)]
pub enum VdvaeError {
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
    /// libtorch reported an error.
    #[error(transparent)]
    Torch(#[from] tch::TchError),
}
