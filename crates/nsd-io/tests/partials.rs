//! A writer killed with `kill -9` mid-write leaves its temporary file; the next write into the
//! folder (or `remove_stale_partials`) removes it, and never a live process's partial file.
//!
//! The killed writer is this test binary itself, started again as a child with
//! `NSD_IO_PARTIAL_CHILD` set: the child runs the same test, sees the variable, starts a
//! `write_atomic` that never finishes and reports its temporary file; the parent kills it.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use nsd_io::{remove_stale_partials, write_atomic};

const CHILD_ENV: &str = "NSD_IO_PARTIAL_CHILD";
/// What the child prints once its partial file exists.
const READY: &str = "nsd-io-partial-child-ready";
const TEST_NAME: &str = "killed_writers_leave_partials_that_the_next_write_removes";

fn partials(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".nsd-io-partial-"))
        .collect();
    v.sort();
    v
}

/// Child side: writes half of `target`, prints `ready`, then waits to be killed.
fn child_writer(dir: &str) {
    let target = Path::new(dir).join(format!("out-{}.bin", std::process::id()));
    let _ = write_atomic(&target, |w| {
        w.write_all(&[7u8; 4096]).unwrap();
        w.flush().unwrap();
        // libtest may print its "test NAME ... " header on the same line: a marker of its own.
        println!("{READY}");
        std::io::stdout().flush().unwrap();
        loop {
            std::thread::sleep(std::time::Duration::from_secs(1));
        }
    });
}

/// Starts a child writer into `dir` and waits until its partial file exists.
fn start_writer(dir: &Path) -> Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let ready = BufReader::new(out).lines().map_while(Result::ok).any(|l| l.trim_end().ends_with(READY));
    assert!(ready, "the child writer did not start");
    child
}

#[test]
fn killed_writers_leave_partials_that_the_next_write_removes() {
    if let Ok(dir) = std::env::var(CHILD_ENV) {
        child_writer(&dir);
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut killed = start_writer(dir.path());
    let mut alive = start_writer(dir.path());
    let found = partials(dir.path());
    assert_eq!(found.len(), 2, "{found:?}");
    let of = |pid: u32| {
        found
            .iter()
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(&format!(".nsd-io-partial-{pid}-")))
            .cloned()
            .unwrap_or_else(|| panic!("no partial file named after pid {pid}: {found:?}"))
    };
    let (killed_partial, alive_partial) = (of(killed.id()), of(alive.id()));
    killed.kill().unwrap(); // SIGKILL: no destructor runs
    killed.wait().unwrap();
    assert!(killed_partial.exists(), "kill -9 leaves the partial file");
    // Files this sweep must leave alone: an earlier version's name, and a dead pid on another host.
    let legacy = dir.path().join(".nsd-io-partial-Ab3xYz");
    std::fs::write(&legacy, b"old").unwrap();
    let name = killed_partial.file_name().unwrap().to_string_lossy().into_owned();
    let tag = name.split('-').nth(4).unwrap().to_string();
    let other_tag = if tag == "00000000" { "00000001" } else { "00000000" };
    let other_host = dir.path().join(format!(".nsd-io-partial-{}-{other_tag}-x", killed.id()));
    std::fs::write(&other_host, b"theirs").unwrap();

    // The next write into the folder removes the dead writer's partial file only.
    let target = dir.path().join("next.bin");
    write_atomic(&target, |w| {
        w.write_all(b"done").unwrap();
        Ok(())
    })
    .unwrap();
    assert_eq!(std::fs::read(&target).unwrap(), b"done");
    assert!(!killed_partial.exists(), "the dead writer's partial file was removed");
    assert!(alive_partial.exists(), "a live writer's partial file is never removed");
    assert!(legacy.exists() && other_host.exists());
    assert_eq!(remove_stale_partials(dir.path()).unwrap(), Vec::<PathBuf>::new());

    // Once the second writer is dead too, an explicit sweep removes its file.
    alive.kill().unwrap();
    alive.wait().unwrap();
    assert_eq!(remove_stale_partials(dir.path()).unwrap(), vec![alive_partial.clone()]);
    assert!(!alive_partial.exists());
    assert_eq!(partials(dir.path()), {
        let mut v = vec![legacy, other_host];
        v.sort();
        v
    });
    // No target was ever half-written by the killed writers.
    assert!(!dir.path().join(format!("out-{}.bin", killed.id())).exists());
}
