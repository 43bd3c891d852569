//! Atomic output: every file this crate writes goes to a temporary file in the target folder first
//! and is renamed into place only once it is complete, so a failure never leaves half a file.

use std::io::{BufWriter, Write};
use std::path::Path;

use crate::error::{NsdError, Result};

/// Writes `path` atomically: `fill` gets a buffered writer on a temporary file beside `path`;
/// the file is renamed to `path` only when `fill` succeeds and the data is flushed.
pub fn write_atomic<F>(path: &Path, fill: F) -> Result<()>
where
    F: FnOnce(&mut dyn Write) -> Result<()>,
{
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    std::fs::create_dir_all(&dir).map_err(|e| NsdError::io(&dir, e, "a writable folder"))?;
    let tmp = tempfile::NamedTempFile::new_in(&dir).map_err(|e| NsdError::Io {
        path: dir.clone(),
        source: e,
    })?;
    {
        let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut writer)?;
        writer.flush().map_err(|e| NsdError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    }
    tmp.persist(path).map_err(|e| NsdError::Io {
        path: path.to_path_buf(),
        source: e.error,
    })?;
    Ok(())
}

/// Maps an I/O error during writing `path` to [`NsdError::Io`].
pub(crate) fn werr(path: &Path) -> impl Fn(std::io::Error) -> NsdError + '_ {
    move |e| NsdError::Io {
        path: path.to_path_buf(),
        source: e,
    }
}
