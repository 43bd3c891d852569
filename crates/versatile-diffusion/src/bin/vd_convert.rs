//! `vd-convert`: reads the diffusers-format `shi-labs/versatile-diffusion` folder (image_unet,
//! text_unet, vae, scheduler), assembles the dual U-Net, checks every key against the model, and
//! writes one merged safetensors file (f16 by default, about 2.3 GB) that later loads need instead
//! of the ~10 GB of `.bin` files.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use tch::{Device, Kind};
use versatile_diffusion::{VdWeights, VersatileDiffusion};

#[derive(Clone, Copy, ValueEnum)]
enum Precision {
    F16,
    Bf16,
    F32,
}

#[derive(Parser)]
#[command(about = "Merge the Versatile Diffusion diffusers folders into one dual-U-Net safetensors file")]
struct Args {
    /// The downloaded `shi-labs/versatile-diffusion` folder.
    input: PathBuf,
    /// The merged `.safetensors` file to write.
    output: PathBuf,
    /// Precision of the written tensors.
    #[arg(long, value_enum, default_value = "f16")]
    precision: Precision,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let kind = match args.precision {
        Precision::F16 => Kind::Half,
        Precision::Bf16 => Kind::BFloat16,
        Precision::F32 => Kind::Float,
    };
    let run = || -> Result<(), versatile_diffusion::DiffusionError> {
        let weights = VdWeights::from_diffusers_folder(&args.input)?;
        weights.write_merged(&args.output, kind)?;
        // Prove the written file fills every parameter of the model, by name and shape.
        drop(weights);
        VersatileDiffusion::load(&args.output, Device::Cpu, kind, kind)?;
        Ok(())
    };
    match run() {
        Ok(()) => {
            println!("wrote {}", args.output.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
