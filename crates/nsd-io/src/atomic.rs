//! Atomic output: every file this crate writes goes to a temporary file in the target folder first
//! and is renamed into place only once it is complete, so a failure never leaves half a file.
//!
//! A process killed mid-write (`kill -9`, power loss) cannot remove its temporary file, so the
//! names carry the writer's process id and a tag of its host:
//! `.nsd-io-partial-{pid}-{host tag}-{random or target name}`. The first write into a folder (per
//! process), or [`remove_stale_partials`], removes the partial files of this host whose process no
//! longer exists; files of a live process, of another host (a shared network folder), or of an
//! unknown naming are never touched.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

use crate::error::{NsdError, Result};

/// Start of every temporary file name this crate writes.
pub(crate) const PARTIAL_PREFIX: &str = ".nsd-io-partial-";

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
/// than tempfile's private 0600, since it becomes a user's data file once renamed. Its name
/// carries this process's id (see the module docs); stale partial files in `dir` are swept first.
pub(crate) fn temp_file_in(dir: &Path) -> Result<tempfile::NamedTempFile> {
    sweep_once(dir);
    let prefix = format!("{PARTIAL_PREFIX}{}-{}-", std::process::id(), host_tag());
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| NsdError::Io { path: dir.to_path_buf(), source: e })
}

/// A temporary path beside `path` for writers that need a path rather than a file (netCDF), in
/// the same naming scheme: `.nsd-io-partial-{pid}-{host tag}-{counter}-{file name}`. Sweeps `dir` first.
#[cfg(feature = "hdf5")]
pub(crate) fn temp_path_for(path: &Path) -> Result<PathBuf> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| NsdError::io(dir, e, "a writable folder"))?;
    sweep_once(dir);
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    Ok(dir.join(format!("{PARTIAL_PREFIX}{}-{}-{n}-{name}", std::process::id(), host_tag())))
}

/// Removes, from `dir`, the partial files left by writers of this crate that died mid-write:
/// files named `.nsd-io-partial-{pid}-{host tag}-...` whose host tag is this host's and whose
/// process `pid` no longer exists. Returns the removed paths. Files of a live process, of another
/// host, or named otherwise are left alone. (On non-Unix systems liveness cannot be checked, and
/// nothing is removed.) Writes call this once per folder and process; call it directly to clean
/// a folder without writing into it.
pub fn remove_stale_partials(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| NsdError::io(dir, e, "a folder"))?;
    let mut removed = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| NsdError::Io { path: dir.to_path_buf(), source: e })?;
        let name = entry.file_name();
        let Some(pid) = name.to_str().and_then(stale_pid) else { continue };
        let path = entry.path();
        let is_file = std::fs::symlink_metadata(&path).map(|m| m.file_type().is_file()).unwrap_or(false);
        if !is_file || process_alive(pid) {
            continue;
        }
        match std::fs::remove_file(&path) {
            Ok(()) => removed.push(path),
            // Another process removed it first.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(NsdError::Io { path, source: e }),
        }
    }
    Ok(removed)
}

/// The writer's pid if `name` is a partial file of this crate written on this host.
fn stale_pid(name: &str) -> Option<u32> {
    let rest = name.strip_prefix(PARTIAL_PREFIX)?;
    let mut parts = rest.splitn(3, '-');
    let pid: u32 = parts.next()?.parse().ok()?;
    let tag = parts.next()?;
    parts.next()?;
    (tag == host_tag()).then_some(pid)
}

/// Sweeps `dir` the first time this process writes into it; failures are logged, not fatal
/// (the write itself is what matters).
fn sweep_once(dir: &Path) {
    static SWEPT: OnceLock<Mutex<HashSet<PathBuf>>> = OnceLock::new();
    let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let first = SWEPT.get_or_init(Default::default).lock().map(|mut s| s.insert(key)).unwrap_or(false);
    if !first {
        return;
    }
    match remove_stale_partials(dir) {
        Ok(removed) => {
            for p in removed {
                tracing::info!(path = %p.display(), "removed a partial file left by a writer that died");
            }
        }
        Err(e) => tracing::warn!("could not clean stale partial files: {e}"),
    }
}

/// Eight hex digits identifying this host (FNV-1a of its name), so that a folder shared between
/// machines never has one machine judge another's processes.
fn host_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let name = host_name();
        let mut h: u32 = 0x811c_9dc5;
        for b in name.bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        format!("{h:08x}")
    })
}

#[cfg(unix)]
fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for `buf.len()` bytes; gethostname NUL-terminates or truncates.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return String::new();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

#[cfg(not(unix))]
fn host_name() -> String {
    std::env::var("COMPUTERNAME").unwrap_or_default()
}

/// Whether process `pid` exists (conservatively `true` when that cannot be told).
#[cfg(unix)]
fn process_alive(pid: u32) -> bool {
    let Ok(p) = libc::pid_t::try_from(pid) else { return true };
    if p <= 0 {
        return true;
    }
    // SAFETY: signal 0 only checks that the process exists and may be signalled.
    if unsafe { libc::kill(p, 0) } == 0 {
        return true;
    }
    // EPERM: it exists but belongs to another user.
    std::io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

#[cfg(not(unix))]
fn process_alive(_pid: u32) -> bool {
    true
}

/// Maps an I/O error during writing `path` to [`NsdError::Io`].
pub(crate) fn werr(path: &Path) -> impl Fn(std::io::Error) -> NsdError + '_ {
    move |e| NsdError::Io { path: path.to_path_buf(), source: e }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partial_names_parse_back_only_for_this_host() {
        let ours = format!("{PARTIAL_PREFIX}4242-{}-abc-def.npy", host_tag());
        assert_eq!(stale_pid(&ours), Some(4242));
        assert_eq!(stale_pid(&format!("{PARTIAL_PREFIX}4242-0000000g-x")), None);
        let other = if host_tag() == "00000000" { "00000001" } else { "00000000" };
        assert_eq!(stale_pid(&format!("{PARTIAL_PREFIX}4242-{other}-x")), None);
        // The naming of earlier versions (random suffix only) is not recognised.
        assert_eq!(stale_pid(&format!("{PARTIAL_PREFIX}Ab3xYz")), None);
        assert_eq!(stale_pid("betas.npy"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
    }
}
