//! Atomic file output: every file goes to a temporary file in the target folder first and is
//! renamed into place only once it is complete (flushed and synced), so a failure never leaves half
//! a file under the real name.
//!
//! A process killed mid-write (`kill -9`, power loss) cannot remove its temporary file, so the
//! names carry the writer's tag, its process id and a tag of its host:
//! `.{tag}-partial-{pid}-{host tag}-{random or target name}`. The first write into a folder (per
//! process and tag), or [`Partials::remove_stale_partials`], removes the partial files of this tag
//! and host whose process no longer exists; files of a live process, of another host (a shared
//! network folder), or of another naming are never touched.
//!
//! The temporary file and the rename are `tempfile`'s; this crate adds the naming, the sweep and
//! ordinary permissions.

use std::collections::HashSet;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};

/// What went wrong writing atomically: the path and the OS error.
#[derive(Debug, thiserror::Error)]
pub enum AtomicError {
    /// A folder could not be created or listed; `what` says which folder was expected.
    #[error("cannot access {} ({what}): {source}", path.display())]
    Folder { path: PathBuf, source: std::io::Error, what: &'static str },
    /// A file could not be written, synced or renamed into place.
    #[error("cannot write {}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}

/// The partial-file naming of one writer, `.{tag}-partial-...` (e.g. tag `nsd-io`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Partials {
    tag: &'static str,
}

impl Partials {
    /// The naming of the writer `tag` (letters, digits and `-`; it names the writer in file names).
    pub const fn new(tag: &'static str) -> Self {
        Partials { tag }
    }

    /// The start of every partial file name of this writer: `.{tag}-partial-`.
    pub fn prefix(&self) -> String {
        format!(".{}-partial-", self.tag)
    }

    /// Writes `path` atomically: `fill` gets a buffered writer on a temporary file beside `path`;
    /// the file is renamed to `path` only when `fill` succeeds and the data is flushed and synced.
    /// The folder is created if needed.
    pub fn write_atomic<E, F>(&self, path: &Path, fill: F) -> Result<(), E>
    where
        E: From<AtomicError>,
        F: FnOnce(&mut dyn Write) -> Result<(), E>,
    {
        let io = |source| AtomicError::Io { path: path.to_path_buf(), source };
        let dir = create_parent(path)?;
        let tmp = self.temp_file_in(dir)?;
        {
            let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file());
            fill(&mut writer)?;
            writer.flush().map_err(io)?;
        }
        tmp.as_file().sync_all().map_err(io)?;
        tmp.persist(path).map_err(|e| io(e.error))?;
        Ok(())
    }

    /// Writes `bytes` to `path` atomically ([`Partials::write_atomic`]).
    pub fn write_bytes(&self, path: &Path, bytes: &[u8]) -> Result<(), AtomicError> {
        self.write_atomic(path, |w| {
            w.write_all(bytes).map_err(|source| AtomicError::Io { path: path.to_path_buf(), source })
        })
    }

    /// A temporary file in `dir` that will get ordinary permissions (0666 less the umask) rather
    /// than tempfile's private 0600, since it becomes a user's data file once renamed. Its name
    /// carries this process's id (see the crate docs); stale partial files in `dir` are swept first.
    pub fn temp_file_in(&self, dir: &Path) -> Result<tempfile::NamedTempFile, AtomicError> {
        self.sweep_once(dir);
        let prefix = format!("{}{}-{}-", self.prefix(), std::process::id(), host_tag());
        let mut builder = tempfile::Builder::new();
        builder.prefix(&prefix);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        builder.tempfile_in(dir).map_err(|source| AtomicError::Io { path: dir.to_path_buf(), source })
    }

    /// A temporary path beside `path` for writers that need a path rather than a file (netCDF), in
    /// the same naming: `.{tag}-partial-{pid}-{host tag}-{counter}-{file name}`. Creates the folder
    /// and sweeps it first; the caller renames the file into place.
    pub fn temp_path_for(&self, path: &Path) -> Result<PathBuf, AtomicError> {
        let dir = create_parent(path)?;
        self.sweep_once(dir);
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        Ok(dir.join(format!("{}{}-{}-{n}-{name}", self.prefix(), std::process::id(), host_tag())))
    }

    /// Removes, from `dir`, the partial files left by writers of this tag that died mid-write:
    /// files named `.{tag}-partial-{pid}-{host tag}-...` whose host tag is this host's and whose
    /// process `pid` no longer exists. Returns the removed paths. Files of a live process, of another
    /// host, or named otherwise are left alone. (On non-Unix systems liveness cannot be checked, and
    /// nothing is removed.) Writes call this once per folder and process; call it directly to clean
    /// a folder without writing into it.
    pub fn remove_stale_partials(&self, dir: &Path) -> Result<Vec<PathBuf>, AtomicError> {
        let folder = |source| AtomicError::Folder { path: dir.to_path_buf(), source, what: "a folder" };
        let entries = std::fs::read_dir(dir).map_err(folder)?;
        let mut removed = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|source| AtomicError::Io { path: dir.to_path_buf(), source })?;
            let name = entry.file_name();
            let Some(pid) = name.to_str().and_then(|n| self.stale_pid(n)) else { continue };
            let path = entry.path();
            let is_file = std::fs::symlink_metadata(&path).map(|m| m.file_type().is_file()).unwrap_or(false);
            if !is_file || process_alive(pid) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed.push(path),
                // Another process removed it first.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => return Err(AtomicError::Io { path, source }),
            }
        }
        Ok(removed)
    }

    /// The writer's pid if `name` is a partial file of this tag written on this host.
    fn stale_pid(&self, name: &str) -> Option<u32> {
        let rest = name.strip_prefix(&self.prefix())?;
        let mut parts = rest.splitn(3, '-');
        let pid: u32 = parts.next()?.parse().ok()?;
        let tag = parts.next()?;
        parts.next()?;
        (tag == host_tag()).then_some(pid)
    }

    /// Sweeps `dir` the first time this process writes into it with this tag; failures are
    /// logged, not fatal (the write itself is what matters).
    fn sweep_once(&self, dir: &Path) {
        static SWEPT: OnceLock<Mutex<HashSet<(&'static str, PathBuf)>>> = OnceLock::new();
        let key = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
        let first = SWEPT.get_or_init(Default::default).lock().map(|mut s| s.insert((self.tag, key))).unwrap_or(false);
        if !first {
            return;
        }
        match self.remove_stale_partials(dir) {
            Ok(removed) => {
                for p in removed {
                    tracing::info!(path = %p.display(), "removed a partial file left by a writer that died");
                }
            }
            Err(e) => tracing::warn!("could not clean stale partial files: {e}"),
        }
    }
}

/// The folder of `path` (`.` for a bare file name), created if needed.
fn create_parent(path: &Path) -> Result<&Path, AtomicError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(|source| AtomicError::Folder {
        path: dir.to_path_buf(),
        source,
        what: "a writable folder",
    })?;
    Ok(dir)
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

#[cfg(test)]
mod tests {
    use super::*;

    const NSD: Partials = Partials::new("nsd-io");

    #[test]
    fn partial_names_parse_back_only_for_this_host_and_tag() {
        let ours = format!(".nsd-io-partial-4242-{}-abc-def.npy", host_tag());
        assert_eq!(NSD.stale_pid(&ours), Some(4242));
        assert_eq!(Partials::new("metrics").stale_pid(&ours), None);
        assert_eq!(NSD.stale_pid(".nsd-io-partial-4242-0000000g-x"), None);
        let other = if host_tag() == "00000000" { "00000001" } else { "00000000" };
        assert_eq!(NSD.stale_pid(&format!(".nsd-io-partial-4242-{other}-x")), None);
        // The naming of earlier versions (random suffix only) is not recognised.
        assert_eq!(NSD.stale_pid(".nsd-io-partial-Ab3xYz"), None);
        assert_eq!(NSD.stale_pid("betas.npy"), None);
    }

    #[test]
    fn this_process_is_alive() {
        assert!(process_alive(std::process::id()));
    }

    #[test]
    fn a_failed_fill_leaves_neither_the_file_nor_a_partial() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/out.json");
        NSD.write_bytes(&path, b"{}").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"{}");
        let other = dir.path().join("sub/never.json");
        let err = NSD.write_atomic(&other, |w| {
            w.write_all(b"half").map_err(|source| AtomicError::Io { path: PathBuf::new(), source })?;
            Err(AtomicError::Io { path: PathBuf::from("x"), source: std::io::Error::other("fill failed") })
        });
        assert!(err.unwrap_err().to_string().contains("fill failed"));
        let names: Vec<String> = std::fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, vec!["out.json".to_string()]);
    }
}
