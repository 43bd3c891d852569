//! Writes a synthetic mini-NSD (the default `SynthConfig`, or the seed given) to a folder, plus
//! the ground-truth features as `truth_features.npy`.
//!
//! `cargo run -p nsd-io --features hdf5 --example write_mini_nsd -- OUT_DIR [SEED]`

use std::path::PathBuf;

use nsd_io::synth::{SynthConfig, write_synthetic_nsd};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let out = PathBuf::from(args.next().ok_or("usage: write_mini_nsd OUT_DIR [SEED]")?);
    let seed = args.next().map(|s| s.parse()).transpose()?.unwrap_or(0);
    let config = SynthConfig { seed, write_hdf5_betas: cfg!(feature = "hdf5"), ..SynthConfig::default() };
    let nsd = write_synthetic_nsd(&out, &config)?;
    nsd_io::subject::save_npy(&out.join("truth_features.npy"), &nsd.truth.features)?;
    println!("wrote a mini-NSD with seed {seed} to {}", out.display());
    Ok(())
}
