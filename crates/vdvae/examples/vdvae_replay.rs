//! Replays a VDVAE reference fixture against this crate's model and prints each output's error.
//!
//! `cargo run -p vdvae --example vdvae_replay -- --weights W.safetensors --fixture F.safetensors`
//!
//! The configuration is read from the fixture's metadata, so any fixture of the same kind
//! replays. Exits with status 1 when an output exceeds the tolerance (relative, default 1e-5) or
//! the uint8 sample differs other than by one level at a quantisation boundary.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vdvae::Vdvae;
use vdvae::parity::{Fixture, replay};

#[derive(Parser)]
struct Args {
    /// Weights of the model that produced the fixture (.safetensors or zip torch.save).
    #[arg(long)]
    weights: PathBuf,
    /// Reference fixture (.safetensors with `hps` metadata).
    #[arg(long)]
    fixture: PathBuf,
    /// Largest accepted relative error.
    #[arg(long, default_value_t = 1e-5)]
    tolerance: f64,
}

fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let fixture = Fixture::read(&args.fixture)?;
    let model = Vdvae::load(&args.weights, &fixture.config, tch::Device::Cpu)?;
    let report = replay(&model, &fixture)?;
    println!("{:<24} {:>12} {:>12}", "output", "max abs", "max rel");
    for o in &report.outputs {
        let flag = if o.max_rel > args.tolerance { "  FAIL" } else { "" };
        println!("{:<24} {:>12.3e} {:>12.3e}{flag}", o.name, o.max_abs, o.max_rel);
    }
    let s = report.sample;
    println!(
        "dmol.sample_u8: {} values, {} off by one at a boundary, {} other mismatches",
        s.total, s.off_by_one_at_boundary, s.other_mismatches
    );
    if let Some(w) = report.worst() {
        println!("worst: {} at {:.3e} (tolerance {:.1e})", w.name, w.max_rel, args.tolerance);
    }
    Ok(if report.passes(args.tolerance) { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
