//! The `brain-diffuser` binary's logs when stderr is not a terminal (a log file, a pipe), and its
//! thread policy (docs/ARCHITECTURE.md, "Threads").
//!
//! Logs: a few steps of the demo (subject 1, the last quarter of the test images) run with stderr
//! piped; their logs must carry no colour codes and no bar redraws, and must give every unit of
//! work as `k of N` with N the real count, read from what the steps wrote (sessions, feature
//! chunk files, image files). Threads: libgomp's own report (`OMP_DISPLAY_ENV`) shows that the
//! binary runs with the passive OpenMP wait policy unless the user chose one.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use brain_diffuser::TargetGroup;
use brain_diffuser::demo::{DemoWorld, demo_synth_config};
use brain_diffuser::workflow::{DataSplit, RunDir, Variant};

const SEED: u64 = 2023;

fn binary() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brain-diffuser"));
    // What a user's shell might set would change what is checked here.
    for variable in ["NO_COLOR", "RUST_LOG", "OMP_WAIT_POLICY", "OMP_DISPLAY_ENV", "BRAIN_DIFFUSER_THREADS"] {
        c.env_remove(variable);
    }
    c
}

struct Demo {
    _dir: tempfile::TempDir,
    root: PathBuf,
}

impl Demo {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().to_path_buf();
        let out = binary().arg("demo").arg("--out").arg(root.join("demo")).output().expect("the binary runs");
        assert!(out.status.success(), "demo failed:\n{}", String::from_utf8_lossy(&out.stderr));
        Demo { _dir: dir, root }
    }

    fn run(&self) -> RunDir {
        RunDir::new(self.root.join("run"))
    }

    /// Runs one step for subject 1 with stderr piped (not a terminal) at the `info` level and
    /// returns stderr, after checking that it is plain text.
    fn step(&self, args: &[&str]) -> String {
        let d = self.root.join("demo");
        let out = binary()
            .arg("--run")
            .arg(self.run().root())
            .arg("--config")
            .arg(d.join("config.toml"))
            .arg("--nsd")
            .arg(d.join("nsd"))
            .arg("--models")
            .arg(d.join("models"))
            .args(["--device", "cpu", "--subjects", "1"])
            .args(args)
            .env("RUST_LOG", "info")
            .output()
            .expect("the binary runs");
        let log = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "brain-diffuser {args:?} failed:\n{log}");
        assert!(!out.stderr.contains(&0x1b), "colour codes in the log of {args:?}:\n{log}");
        assert!(!out.stderr.contains(&b'\r'), "progress bar redraws in the log of {args:?}:\n{log}");
        log
    }
}

/// The log lines that contain `needle`, each cut after the position (before ` [timing]`).
fn lines_with<'a>(log: &'a str, needle: &str) -> Vec<&'a str> {
    log.lines().filter(|l| l.contains(needle)).map(|l| l.rsplit_once(" [").map_or(l, |(head, _)| head)).collect()
}

/// The row ranges of the feature chunk files in `dir` (`rows-000000-000064.npy`).
fn chunk_ends(dir: &Path) -> Vec<usize> {
    let mut ends: Vec<usize> = std::fs::read_dir(dir)
        .expect("feature folder")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            let stem = name.strip_prefix("rows-")?.strip_suffix(".npy")?;
            stem.split_once('-')?.1.parse().ok()
        })
        .collect();
    ends.sort_unstable();
    ends
}

/// The indices of the `NNNN.png` images in `dir`.
fn image_indices(dir: &Path) -> BTreeSet<usize> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(|e| e.ok()?.file_name().into_string().ok()?.strip_suffix(".png")?.parse().ok()).collect()
        })
        .unwrap_or_default()
}

#[test]
fn logs_without_a_terminal_give_k_of_n_progress_and_no_colour_codes() {
    let demo = Demo::new();
    let subject = demo.run().subject(1);

    let log = demo.step(&["prepare"]);
    let sessions = demo_synth_config(SEED, DemoWorld::default()).sessions;
    let expected: Vec<String> = (1..=sessions).map(|k| format!("subj01 sessions: {k} of {sessions}")).collect();
    let got: Vec<&str> = lines_with(&log, "subj01 sessions:").into_iter().map(message).collect();
    assert_eq!(got, expected, "{log}");
    let truths = image_indices(&subject.ground_truth()).len();
    assert!(truths > 0, "prepare wrote no ground-truth images");
    let last = format!("ground-truth images: {truths} of {truths}");
    assert!(lines_with(&log, "ground-truth images:").last().is_some_and(|l| l.ends_with(&last)), "{log}");

    let log = demo.step(&["extract"]);
    for group in &TargetGroup::PAPER {
        for split in [DataSplit::Train, DataSplit::Test] {
            let ends = chunk_ends(&subject.features(group, split));
            let rows = *ends.last().expect("feature chunks written");
            let label = format!("subj01 {} {}: ", group.name(), split.name());
            let expected: Vec<String> = ends.iter().map(|k| format!("{label}{k} of {rows} stimuli")).collect();
            let got: Vec<&str> = lines_with(&log, &label).into_iter().map(message).collect();
            assert_eq!(got, expected, "{log}");
        }
    }

    demo.step(&["fit"]);
    demo.step(&["predict"]);
    let log = demo.step(&["reconstruct", "--shard", "4/4"]);
    assert!(!log.contains("of=1") && !log.contains("image=1"), "per-batch counts in the log:\n{log}");
    for (stage, variant) in [("stage 1", Variant::OnlyVdvae), ("stage 2", Variant::BrainDiffuser)] {
        let folder = subject.outputs.reconstructions(variant);
        let made: Vec<usize> = image_indices(&folder).into_iter().collect();
        let (first, part) = (made[0], made.len());
        assert!(part < truths, "a quarter of the {truths} images, not {part}");
        let expected: Vec<String> = made
            .iter()
            .map(|&i| {
                format!(
                    "{stage} image {} of {truths} (shard images {}..{}: {} of {part}) in {}",
                    i + 1,
                    first + 1,
                    first + part,
                    i + 1 - first,
                    folder.display()
                )
            })
            .collect();
        let got: Vec<&str> = lines_with(&log, &format!("{stage} image ")).into_iter().map(message).collect();
        assert_eq!(got, expected, "{log}");
    }
}

/// The message of a progress line: what follows `brain_diffuser::workflow: ` (time, level and
/// target come first).
fn message(line: &str) -> &str {
    line.split_once("brain_diffuser::workflow: ").map_or(line, |(_, m)| m)
}

#[test]
fn the_binary_runs_with_a_bounded_openmp_spin_count_unless_the_user_sets_one() {
    // libgomp prints its settings at load when OMP_DISPLAY_ENV is set: the default spins 300 000
    // rounds (ACTIVE 30 000 000 000, PASSIVE 0); the binary runs itself again with 2 000.
    let report = |variable: Option<(&str, &str)>| {
        let mut c = binary();
        c.arg("--version").env("OMP_DISPLAY_ENV", "verbose").env_remove("OMP_WAIT_POLICY").env_remove("GOMP_SPINCOUNT");
        if let Some((name, value)) = variable {
            c.env(name, value);
        }
        let out = c.output().expect("the binary runs");
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let default = report(None);
    let last_block = default.rsplit("OPENMP DISPLAY ENVIRONMENT BEGIN").next().unwrap_or_default();
    assert!(last_block.contains("GOMP_SPINCOUNT = '2000'"), "not bounded:\n{default}");
    for (name, value, shown) in [
        ("OMP_WAIT_POLICY", "ACTIVE", "OMP_WAIT_POLICY = 'ACTIVE'"),
        ("OMP_WAIT_POLICY", "PASSIVE", "GOMP_SPINCOUNT = '0'"),
        ("GOMP_SPINCOUNT", "77", "GOMP_SPINCOUNT = '77'"),
    ] {
        let user = report(Some((name, value)));
        assert_eq!(user.matches("OPENMP DISPLAY ENVIRONMENT BEGIN").count(), 1, "ran again:\n{user}");
        assert!(user.contains(shown), "the user's {name}={value} was replaced:\n{user}");
    }
}

#[test]
fn brain_diffuser_threads_sets_libtorch_and_rayon_and_bad_counts_are_refused() {
    let out = binary()
        .arg("--version")
        .env("BRAIN_DIFFUSER_THREADS", "1")
        .env("RUST_LOG", "brain_diffuser::runtime=debug")
        .output()
        .expect("the binary runs");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{log}");
    assert!(log.contains("threads libtorch=1 rayon=1"), "{log}");
    for bad in ["0", "many", "-2"] {
        let out = binary().arg("--version").env("BRAIN_DIFFUSER_THREADS", bad).output().expect("the binary runs");
        let message = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "BRAIN_DIFFUSER_THREADS={bad} accepted");
        assert!(message.contains(&format!("BRAIN_DIFFUSER_THREADS='{bad}'")), "{message}");
    }
}
