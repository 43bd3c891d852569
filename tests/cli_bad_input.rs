//! The built `brain-diffuser` binary on bad arguments: each is refused with exit code 2 (a usage
//! error) or 1 (a step that fails), never 101 (a panic) or a signal, with a message that names the
//! argument and says what was expected; an OS error is printed once.

use std::path::Path;
use std::process::Command;

use brain_diffuser::runtime::cuda_device_count;

/// Runs the binary with `args` (and `env`) in a clean environment; returns (exit code, stderr).
fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_brain-diffuser"));
    command.args(args);
    for variable in ["BRAIN_DIFFUSER_RUN", "BRAIN_DIFFUSER_NSD", "BRAIN_DIFFUSER_MODELS", "BRAIN_DIFFUSER_DEVICE"] {
        command.env_remove(variable);
    }
    command.envs(env.iter().copied()).env("NO_COLOR", "1");
    let output = command.output().expect("the binary runs");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// Asserts that `args` exit with `code` and that stderr holds every one of `expected`.
fn refused(args: &[&str], env: &[(&str, &str)], code: i32, expected: &[&str]) {
    let (status, stderr) = run(args, env);
    assert_eq!(status, Some(code), "{args:?} {env:?}: exit {status:?}, stderr:\n{stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    for text in expected {
        assert!(stderr.contains(text), "{args:?} {env:?}: no {text:?} in stderr:\n{stderr}");
    }
}

fn s(path: &Path) -> &str {
    path.to_str().expect("a UTF-8 temporary path")
}

#[test]
fn out_of_range_numbers_are_usage_errors_naming_the_option() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let run_dir = dir.path().join("run");
    let r = s(&run_dir);
    for (args, expected) in [
        (vec!["report", "--cell", "100000"], vec!["--cell", "100000 is not in 16..=1024"]),
        (vec!["report", "--cell", "0"], vec!["--cell", "0 is not in 16..=1024"]),
        (vec!["report", "--images", "0"], vec!["--images", "0 is not in 1.."]),
        (vec!["report", "--images=-3"], vec!["--images", "-3"]),
        (vec!["evaluate", "--batch-size", "0"], vec!["--batch-size", "0 is not in 1..=1024"]),
        (vec!["evaluate", "--protocols", "mindeye,tk"], vec!["--protocols", "tk"]),
        (vec!["ablate", "--subject", "9"], vec!["--subject", "9 is not in 1..=8"]),
        (vec!["ablate", "--variants", "no-vdvae,no-such"], vec!["--variants", "unknown variant 'no-such'"]),
        (vec!["extract", "--groups", "vdvae,clip"], vec!["--groups", "unknown feature group 'clip'"]),
        (vec!["extract", "--shard", "0/4"], vec!["--shard", "expected K/N with 1 <= K <= N"]),
        (vec!["extract", "--shard", "5/4"], vec!["--shard", "expected K/N with 1 <= K <= N"]),
        (vec!["extract", "--shard", "1/184467440737095516150"], vec!["--shard", "not a whole number"]),
        (vec!["--subjects", "9", "prepare"], vec!["--subjects", "9 is not in 1..=8"]),
        (vec!["--subjects", "0", "prepare"], vec!["--subjects", "0 is not in 1..=8"]),
        (
            vec!["demo", "--out", r, "--seed", "18446744073709551615"],
            vec!["--seed", "is not in 0..=9223372036854775807"],
        ),
    ] {
        let mut full = vec!["--run", r];
        full.extend(args);
        refused(&full, &[], 2, &expected);
    }
    assert!(!run_dir.exists(), "a refused command wrote {}", run_dir.display());
}

#[test]
fn duplicates_are_usage_errors_naming_the_option() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let r = s(dir.path());
    refused(
        &["--run", r, "--subjects", "1,1", "prepare"],
        &[],
        2,
        &["--subjects 1,1: subject 1 is listed twice", "expected distinct subjects from 1 to 8"],
    );
    refused(&["--run", r, "--subjects", "2,5,2", "average"], &[], 2, &["--subjects 2,5,2: subject 2 is listed twice"]);
    refused(&["--run", r, "fit", "--groups", "vdvae,vdvae"], &[], 2, &["--groups vdvae,vdvae", "listed twice"]);
    refused(&["--run", r, "ablate", "--variants", "no-vdvae,no-vdvae"], &[], 2, &["--variants", "listed twice"]);
    refused(&["--run", r, "evaluate", "--protocols", "mindeye,mindeye"], &[], 2, &["--protocols", "listed twice"]);
}

#[test]
fn paths_of_the_wrong_kind_name_the_option() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let file = dir.path().join("file");
    std::fs::write(&file, "not a folder").expect("a file");
    let folder = dir.path().join("folder");
    std::fs::create_dir(&folder).expect("a folder");
    let missing = dir.path().join("missing");
    let (f, d, m) = (s(&file), s(&folder), s(&missing));
    let run_dir = dir.path().join("run");
    let r = s(&run_dir);
    let child = file.join("run");

    refused(
        &["--run", f, "prepare"],
        &[],
        2,
        &[&format!("--run {f} is a file; expected a run folder (it is created if missing)")],
    );
    refused(
        &["--run", s(&child), "config"],
        &[],
        2,
        &[&format!("--run {} is inside {f}, which is a file", child.display())],
    );
    refused(&["--run", "", "predict"], &[], 2, &["a value is required for '--run <RUN>'"]);
    refused(
        &["--run", r, "--nsd", m, "prepare"],
        &[],
        2,
        &[&format!("--nsd {m} does not exist; expected the NSD root")],
    );
    refused(&["--run", r, "--nsd", f, "extract"], &[], 2, &[&format!("--nsd {f} is a file")]);
    refused(&["--run", r, "--models", m, "reconstruct"], &[], 2, &[&format!("--models {m} does not exist")]);
    refused(&["--models", m, "models"], &[], 2, &[&format!("--models {m} does not exist; expected the models folder")]);
    refused(&["--run", r, "--config", m, "config"], &[], 2, &[&format!("--config {m} does not exist")]);
    refused(&["--run", r, "--config", d, "predict"], &[], 2, &[&format!("--config {d} is a folder")]);
    refused(&["--run", r, "--nsd", d, "--captions", d, "prepare"], &[], 2, &[&format!("--captions {d} is a folder")]);
    refused(
        &["--run", r, "--nsd", d, "--captions", m, "prepare"],
        &[],
        2,
        &[&format!("--captions {m} does not exist")],
    );
    refused(&["demo", "--out", f], &[], 2, &[&format!("--out {f} is a file")]);
    assert!(!run_dir.exists(), "a refused command wrote {}", run_dir.display());
}

#[test]
fn a_device_this_machine_lacks_is_refused_naming_where_it_came_from() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let r = s(dir.path());
    // No machine has 1000 GPUs.
    let missing = if cuda_device_count() == 0 { "no CUDA device is available here" } else { "cuda:999 does not exist" };
    refused(&["--run", r, "--device", "cuda:999", "predict"], &[], 2, &["--device 'cuda:999': ", missing]);
    refused(
        &["--run", r, "predict"],
        &[("BRAIN_DIFFUSER_DEVICE", "cuda:999")],
        2,
        &["BRAIN_DIFFUSER_DEVICE 'cuda:999': ", missing],
    );
    refused(
        &["--run", r, "--device", "gpu", "predict"],
        &[],
        2,
        &["--device 'gpu': unknown device; expected cpu, cuda or cuda:N"],
    );
    refused(&["--run", r, "predict"], &[("BRAIN_DIFFUSER_DEVICE", "tpu")], 2, &["BRAIN_DIFFUSER_DEVICE 'tpu'"]);
    // `cuda` is refused exactly when libtorch sees no CUDA device.
    for (args, env) in [
        (vec!["--run", r, "--device", "cuda", "predict"], vec![]),
        (vec!["--run", r, "--device", "cuda:0", "predict"], vec![]),
        (vec!["--run", r, "predict"], vec![("BRAIN_DIFFUSER_DEVICE", "cuda")]),
    ] {
        let (status, stderr) = run(&args, &env);
        if cuda_device_count() == 0 {
            assert_eq!(status, Some(2), "{args:?} {env:?}: {stderr}");
            assert!(stderr.contains("no CUDA device is available here"), "{stderr}");
            let origin = if env.is_empty() { "--device" } else { "BRAIN_DIFFUSER_DEVICE" };
            assert!(stderr.contains(&format!("{origin} 'cuda")), "{stderr}");
        } else {
            // The device exists: `predict` goes on and stops at its missing inputs (exit 1).
            assert_eq!(status, Some(1), "{args:?} {env:?}: {stderr}");
            assert!(!stderr.contains("CUDA device"), "{stderr}");
        }
    }
}

#[test]
fn a_failing_step_exits_1_and_prints_each_cause_once() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let run_dir = dir.path().join("run");
    // The run's recorded configuration is a folder: reading it fails with an OS error.
    std::fs::create_dir_all(run_dir.join("config.toml")).expect("a folder named config.toml");
    let (status, stderr) = run(&["--run", s(&run_dir), "config"], &[]);
    assert_eq!(status, Some(1), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line: {stderr}"));
    assert!(line.contains(&format!("cannot read configuration {}", run_dir.join("config.toml").display())), "{line}");
    assert_eq!(line.matches("os error").count(), 1, "the OS error is printed once: {line}");

    // A bad value in a configuration file names the file and the key.
    let config = dir.path().join("bad.toml");
    std::fs::write(&config, "[diffusion]\nstrength = 7.5\n").expect("a configuration");
    refused(
        &["--run", s(&dir.path().join("other")), "--config", s(&config), "config"],
        &[],
        1,
        &[&format!("configuration key 'diffusion.strength': must lie in [0, 1], got 7.5 (in {})", config.display())],
    );
}
