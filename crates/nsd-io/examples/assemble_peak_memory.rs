//! Peak memory of assembling one full-size subject (81x104x83 volume, 750 trials per session,
//! 73k stimuli) from synthetic NSD files. Heavy (about 0.5 GB of disk and ~30 s per session to
//! write), so it is an example, not a test:
//!
//! `cargo run --release -p nsd-io --example assemble_peak_memory -- DIR [SESSIONS=3]`
//!
//! Writes a full-size synthetic subject into DIR (kept for reuse), resets the process's peak RSS
//! (Linux `/proc/self/clear_refs`), assembles subject 1, and prints the peak resident memory and
//! how much of it is not the output arrays.

use std::path::PathBuf;
use std::time::Instant;

use nsd_io::synth::{SynthConfig, write_synthetic_nsd};
use nsd_io::{NsdLayout, assemble_subject};

fn status_kib(key: &str) -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = s.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let dir = PathBuf::from(args.next().ok_or("usage: assemble_peak_memory DIR [SESSIONS]")?);
    let sessions: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(3);
    let config = SynthConfig { write_stimuli: false, gzip_level: 1, ..SynthConfig::full_size(sessions) };
    let stamp = dir.join(format!(".complete-{sessions}"));
    if !stamp.exists() {
        let t = Instant::now();
        write_synthetic_nsd(&dir, &config)?;
        std::fs::write(&stamp, b"")?;
        println!("wrote {sessions} full-size sessions in {:.1} s", t.elapsed().as_secs_f64());
    }
    let layout = NsdLayout::new(&dir);
    std::fs::write("/proc/self/clear_refs", b"5")?;
    let before = status_kib("VmRSS:").unwrap_or(0);
    let t = Instant::now();
    let subject = assemble_subject(&layout, 1, &config.assembly_options())?;
    let secs = t.elapsed().as_secs_f64();
    let peak = status_kib("VmHWM:").ok_or("no VmHWM in /proc/self/status")?;
    let output = (subject.train_fmri.len() + subject.test_fmri.len()) * 4 / 1024;
    println!(
        "| sessions | voxels | train x test | time (s) | RSS before (MiB) | peak RSS (MiB) | output arrays (MiB) | peak - before - output (MiB) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    println!(
        "| {sessions} | {} | {} x {} | {secs:.1} | {:.0} | {:.0} | {:.0} | {:.0} |",
        subject.n_voxels(),
        subject.train_ids.len(),
        subject.test_ids.len(),
        before as f64 / 1024.0,
        peak as f64 / 1024.0,
        output as f64 / 1024.0,
        (peak as f64 - before as f64 - output as f64) / 1024.0
    );
    Ok(())
}
