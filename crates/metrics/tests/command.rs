//! The `evaluate-reconstructions` command end to end: folders in, JSON/CSV/summary out, with a
//! full-size AlexNet weight file in safetensors format.

mod common;

use std::process::Command;

use metrics::{TorchvisionExtractor, TorchvisionNetwork};

#[test]
fn command_writes_json_csv_and_summary() {
    let dir = tempfile::tempdir().unwrap();
    let (gt, rec) = (dir.path().join("gt"), dir.path().join("rec"));
    std::fs::create_dir_all(&gt).unwrap();
    std::fs::create_dir_all(&rec).unwrap();
    for i in 0..4u64 {
        common::structured_image(10 + i, 40, 40).save(gt.join(format!("{i}.png"))).unwrap();
        common::reconstruction_of(10 + i, 40, 40, 48, 48, 20).save(rec.join(format!("{i}.png"))).unwrap();
    }
    // A full-size AlexNet checkpoint with synthetic weights, written in safetensors format.
    let weights = dir.path().join("alexnet.safetensors");
    let net = TorchvisionExtractor::with_synthetic_weights(TorchvisionNetwork::AlexNet, tch::Device::Cpu).unwrap();
    net.save_weights(&weights).unwrap();

    let out = dir.path().join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_evaluate-reconstructions"))
        .args(["--protocol", "mindeye", "--batch-size", "3"])
        .arg("--ground-truth")
        .arg(&gt)
        .arg("--reconstructions")
        .arg(&rec)
        .arg("--alexnet")
        .arg(&weights)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert!(stdout.contains("protocol: mindeye (4 image pairs"), "{stdout}");
    assert!(stdout.contains("AlexNet(5)"));
    let csv = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(csv.lines().count(), 5, "{csv}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    assert_eq!(json["images"], 4);
    assert_eq!(json["rows"][2]["metric"], "AlexNet(2)");

    // A missing folder fails with a message naming it.
    let output = Command::new(env!("CARGO_BIN_EXE_evaluate-reconstructions"))
        .arg("--ground-truth")
        .arg(dir.path().join("missing"))
        .arg("--reconstructions")
        .arg(&rec)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("missing"));
}

/// Bad `--device` and `--batch-size` values are refused with a message naming the argument
/// (a CUDA device on a machine without one must not panic inside tch or fall back silently).
#[test]
fn command_refuses_missing_devices_and_empty_batches() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_evaluate-reconstructions"))
            .arg("--ground-truth")
            .arg(dir.path())
            .arg("--reconstructions")
            .arg(dir.path())
            .arg("--out")
            .arg(dir.path().join("out"))
            .args(args)
            .output()
            .unwrap();
        (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let (code, err) = run(&["--device", "gpu"]);
    assert!(code == Some(1) && err.contains("--device \"gpu\": expected cpu, cuda or cuda:N"), "{code:?} {err}");
    let (code, err) = run(&["--batch-size", "0"]);
    assert!(code == Some(2) && err.contains("--batch-size"), "{code:?} {err}");
    let visible = if tch::Cuda::is_available() { tch::Cuda::device_count() } else { 0 };
    let (code, err) = run(&["--device", &format!("cuda:{visible}")]);
    assert!(code == Some(1) && err.contains(&format!("has {visible} CUDA device(s)")), "{code:?} {err}");
}
