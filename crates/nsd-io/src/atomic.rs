//! Atomic output: every file this crate writes goes to a temporary file in the target folder first
//! and is renamed into place only once it is complete, so a failure never leaves half a file.
//!
//! The writing, the partial-file naming (`.nsd-io-partial-{pid}-{host tag}-...`) and the sweep of
//! partial files left by writers that died are the `atomic-file` leaf crate's (shared with the
//! `metrics` crate); this module gives them this crate's error type.

use std::io::Write;
use std::path::{Path, PathBuf};

use atomic_file::{AtomicError, Partials};

use crate::error::{NsdError, Result};

/// This crate's partial-file naming: `.nsd-io-partial-...`.
const PARTIALS: Partials = Partials::new("nsd-io");

impl From<AtomicError> for NsdError {
    fn from(e: AtomicError) -> Self {
        match e {
            AtomicError::Folder { path, source, what } => NsdError::io(&path, source, what),
            AtomicError::Io { path, source } => NsdError::Io { path, source },
        }
    }
}

/// Writes `path` atomically: `fill` gets a buffered writer on a temporary file beside `path`;
/// the file is renamed to `path` only when `fill` succeeds and the data is flushed.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    PARTIALS.write_atomic(path, fill)
}

/// A temporary file in `dir` with ordinary permissions, named after this process (see
/// [`Partials::temp_file_in`]); stale partial files in `dir` are swept first.
pub(crate) fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    Ok(PARTIALS.temp_file_in(dir)?)
}

/// A temporary path beside `path` for writers that need a path rather than a file (netCDF).
#[cfg(feature = "hdf5")]
pub(crate) fn temp_path_for(path: &Path) -> Result<PathBuf> {
    Ok(PARTIALS.temp_path_for(path)?)
}

/// Removes, from `dir`, the partial files left by writers of this crate that died mid-write
/// (named `.nsd-io-partial-{pid}-{host tag}-...`, of this host, whose process no longer exists).
/// Returns the removed paths; files of a live process, of another host, or named otherwise are left
/// alone. Writes call this once per folder and process.
pub fn remove_stale_partials(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(PARTIALS.remove_stale_partials(dir)?)
}

/// Maps an I/O error during writing `path` to [`NsdError::Io`].
pub(crate) fn werr(path: &Path) -> impl Fn(std::io::Error) -> NsdError + '_ {
    move |e| NsdError::Io { path: path.to_path_buf(), source: e }
}
