//! Reading and masking one betas session: ours against nibabel + numpy (the reference's way),
//! on the same file, in one run, printed as a table.
//!
//! `cargo bench -p nsd-io --bench session_read -- [--trials 750] [--runs 3] [--level 6]
//!     [--python PATH] [--betas FILE --roi FILE]`
//!
//! Without `--betas`, a synthetic session of the full NSD volume (81x104x83, int16, gzip) with
//! `--trials` volumes is written to a temporary folder first. The Python side is
//! tools/nsd-io/bench_session.py run with the tools environment (tools/setup.sh).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use nsd_io::nifti::{NiftiReader, VoxelMask, read_volume};
use nsd_io::synth::{SynthConfig, write_synthetic_nsd};

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned())
}

fn status_mib(key: &str) -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map_or(f64::NAN, |kib| kib / 1024.0)
}

fn ours(betas: &Path, mask: &VoxelMask) -> (f64, f64, usize) {
    let t = Instant::now();
    let mut reader = NiftiReader::open(betas).expect("open betas");
    let n = reader.header().n_volumes();
    let mut rows = vec![0f32; n * mask.len()];
    for row in rows.chunks_exact_mut(mask.len()) {
        reader.next_masked(mask, row).expect("read betas");
    }
    let secs = t.elapsed().as_secs_f64();
    (secs, rows.iter().map(|&v| v as f64).sum(), n)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let (Some(b), Some(r)) = (arg(&args, "--measure-ours"), arg(&args, "--roi")) {
        // Child mode: one read in a fresh process, so its peak RSS is the reader's alone.
        let mask = VoxelMask::positive(&read_volume(Path::new(&r)).expect("read roi"));
        let (secs, checksum, _) = ours(Path::new(&b), &mask);
        println!("{secs} {checksum} {}", status_mib("VmHWM:"));
        return;
    }
    let runs: usize = arg(&args, "--runs").map_or(3, |s| s.parse().expect("--runs N"));
    let trials: usize = arg(&args, "--trials").map_or(750, |s| s.parse().expect("--trials N"));
    let level: u32 = arg(&args, "--level").map_or(6, |s| s.parse().expect("--level 0-9"));
    let home = std::env::var("HOME").unwrap_or_default();
    let python =
        arg(&args, "--python").unwrap_or_else(|| format!("{home}/.cache/brain-diffuser/torch-2.11.0/bin/python"));
    let tmp = tempfile::tempdir().expect("temp dir");
    let (betas, roi) = match (arg(&args, "--betas"), arg(&args, "--roi")) {
        (Some(b), Some(r)) => (PathBuf::from(b), PathBuf::from(r)),
        _ => {
            let config = SynthConfig {
                sessions: 1,
                trials_per_session: trials,
                write_stimuli: false,
                gzip_level: level,
                ..SynthConfig::full_size(1)
            };
            let t = Instant::now();
            let nsd = write_synthetic_nsd(tmp.path(), &config).expect("write synthetic session");
            eprintln!(
                "wrote a synthetic 81x104x83x{trials} int16 session (gzip {level}) in {:.1} s",
                t.elapsed().as_secs_f64()
            );
            (nsd.layout.betas_session(1, 1), nsd.layout.roi(1, "nsdgeneral"))
        }
    };
    let size_mib = std::fs::metadata(&betas).map(|m| m.len() as f64 / 1048576.0).unwrap_or(f64::NAN);
    let mask = VoxelMask::positive(&read_volume(&roi).expect("read roi"));
    let mut ours_times = Vec::new();
    let mut checksum = 0.0;
    let mut ours_peak = 0.0f64;
    let n = NiftiReader::open(&betas).expect("open betas").header().n_volumes();
    for _ in 0..runs {
        let out = Command::new(std::env::current_exe().expect("own path"))
            .args(["--measure-ours", &betas.to_string_lossy(), "--roi", &roi.to_string_lossy()])
            .output()
            .expect("run the reader in a child process");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text.split_whitespace().filter_map(|x| x.parse().ok()).collect();
        assert_eq!(f.len(), 3, "child output {text:?} {}", String::from_utf8_lossy(&out.stderr));
        ours_times.push(f[0]);
        checksum = f[1];
        ours_peak = ours_peak.max(f[2]);
    }
    let py = Command::new(&python)
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/nsd-io/bench_session.py"))
        .arg(&betas)
        .arg(&roi)
        .arg(runs.to_string())
        .output();
    println!(
        "\nRead + mask one betas session: 81x104x83x{n} int16, gzip {size_mib:.0} MiB on disk, {} nsdgeneral voxels, {runs} runs",
        mask.len()
    );
    println!("| implementation | median (s) | min (s) | peak RSS (MiB) | speed-up |");
    println!("|---|---|---|---|---|");
    let om = median(&mut ours_times.clone());
    let omin = ours_times.iter().copied().fold(f64::INFINITY, f64::min);
    match py {
        Ok(out) if out.status.success() => {
            let v: serde_json::Value = serde_json::from_slice(out.stdout.trim_ascii()).expect("bench_session.py JSON");
            let mut t: Vec<f64> = v["seconds"].as_array().unwrap().iter().filter_map(|x| x.as_f64()).collect();
            let pm = median(&mut t);
            let pmin = t.iter().copied().fold(f64::INFINITY, f64::min);
            let pc = v["checksum"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| nibabel {} + numpy {} | {pm:.2} | {pmin:.2} | {:.0} (process) | 1.0x |",
                v["nibabel"].as_str().unwrap_or("?"),
                v["numpy"].as_str().unwrap_or("?"),
                v["peak_rss_mib"].as_f64().unwrap_or(f64::NAN)
            );
            println!("| nsd-io (this crate) | {om:.2} | {omin:.2} | {ours_peak:.0} (process) | {:.1}x |", pm / om);
            println!(
                "checksums (sum of all masked values): ours {checksum}, nibabel {pc} -> {}",
                if checksum == pc { "identical" } else { "DIFFERENT" }
            );
        }
        Ok(out) => {
            println!("| nsd-io (this crate) | {om:.2} | {omin:.2} | {ours_peak:.0} | - |");
            println!("nibabel side failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        Err(e) => {
            println!("| nsd-io (this crate) | {om:.2} | {omin:.2} | {ours_peak:.0} | - |");
            println!("nibabel side not run ({python}: {e}); run tools/setup.sh or pass --python");
        }
    }
}
