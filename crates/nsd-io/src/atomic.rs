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
    let tmp = temp_file_in(&dir)?;
    {
        let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file());
        fill(&mut writer)?;
        writer.flush().map_err(|e| NsdError::Io { path: path.to_path_buf(), source: e })?;
    }
    tmp.persist(path).map_err(|e| NsdError::Io { path: path.to_path_buf(), source: e.error })?;
    Ok(())
}

/// A temporary file in `dir` that will get ordinary permissions (0666 less the umask) rather
/// than tempfile's private 0600, since it becomes a user's data file once renamed.
pub(crate) fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".nsd-io-partial-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| NsdError::Io { path: dir.to_path_buf(), source: e })
}

/// Maps an I/O error during writing `path` to [`NsdError::Io`].
pub(crate) fn werr(path: &Path) -> impl Fn(std::io::Error) -> NsdError + '_ {
    move |e| NsdError::Io { path: path.to_path_buf(), source: e }
}
