//! Scores a folder of reconstructions against a folder of ground truths (matched by file name)
//! under a named protocol, and writes `metrics.json` and `metrics.csv`.
//!
//! ```text
//! evaluate-reconstructions --ground-truth test_images/ --reconstructions subj01/ \
//!     --protocol brain-diffuser --alexnet alexnet.pth --inception inception_v3.pth \
//!     --efficientnet efficientnet_b1.pth --swav swav_800ep_pretrain.safetensors --out results/
//! ```
//!
//! Networks whose weights are not given are skipped (their columns are absent). The CLIP column
//! needs the `clip` crate's extractor and is added by the pipeline's command line.

use std::path::PathBuf;

use anyhow::Context;
use clap::Parser;
use metrics::protocol::slots;
use metrics::{Extractors, Protocol, TorchvisionExtractor, TorchvisionNetwork, evaluate_folders};

#[derive(Parser, Debug)]
#[command(version, about = "NSD reconstruction metrics (PixCorr, SSIM, AlexNet, Inception, EffNet-B, SwAV)")]
struct Args {
    /// Folder of ground-truth images (PNG/JPEG).
    #[arg(long)]
    ground_truth: PathBuf,
    /// Folder of reconstructions with the same file names.
    #[arg(long)]
    reconstructions: PathBuf,
    /// `brain-diffuser` or `mindeye`.
    #[arg(long, default_value = "brain-diffuser")]
    protocol: String,
    /// torchvision AlexNet weights (.pth zip or .safetensors).
    #[arg(long)]
    alexnet: Option<PathBuf>,
    /// torchvision Inception v3 weights.
    #[arg(long)]
    inception: Option<PathBuf>,
    /// torchvision EfficientNet-B1 weights (V1 for brain-diffuser, V2 for mindeye).
    #[arg(long)]
    efficientnet: Option<PathBuf>,
    /// SwAV ResNet-50 checkpoint (`module.` prefixes are stripped).
    #[arg(long)]
    swav: Option<PathBuf>,
    /// Output folder for metrics.json and metrics.csv.
    #[arg(long)]
    out: PathBuf,
    /// `cpu`, `cuda` or `cuda:N`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Images per network call.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
}

/// Parses `cpu`, `cuda` or `cuda:N` and checks that the device exists (tch would panic on a
/// missing driver, and `cuda` must not fall back to the CPU without a word).
fn device(name: &str) -> anyhow::Result<tch::Device> {
    let index = match name {
        "cpu" => return Ok(tch::Device::Cpu),
        "cuda" => 0,
        other => other
            .strip_prefix("cuda:")
            .and_then(|i| i.parse::<usize>().ok())
            .with_context(|| format!("--device {other:?}: expected cpu, cuda or cuda:N"))?,
    };
    let count = if tch::Cuda::is_available() { tch::Cuda::device_count().max(0) as usize } else { 0 };
    if index >= count {
        anyhow::bail!(
            "--device {name}: this machine has {count} CUDA device(s) visible to libtorch{}; use --device cpu",
            if count == 0 { " (no NVIDIA driver, or a CPU-only libtorch)" } else { "" }
        );
    }
    Ok(tch::Device::Cuda(index))
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let args = Args::parse();
    let protocol = Protocol::by_name(&args.protocol)?;
    let device = device(&args.device)?;
    let mut loaded = Vec::new();
    for (network, path, slot) in [
        (TorchvisionNetwork::AlexNet, &args.alexnet, slots::ALEXNET),
        (TorchvisionNetwork::InceptionV3, &args.inception, slots::INCEPTION_V3),
        (TorchvisionNetwork::EfficientNetB1, &args.efficientnet, slots::EFFICIENTNET_B1),
        (TorchvisionNetwork::SwavResNet50, &args.swav, slots::SWAV_RESNET50),
    ] {
        if let Some(path) = path {
            let net = TorchvisionExtractor::load(network, path, device)
                .with_context(|| format!("loading {} from {}", network.name(), path.display()))?;
            loaded.push((slot, net));
        }
    }
    let mut extractors = Extractors::new();
    for (slot, net) in &loaded {
        extractors = extractors.with(slot, net);
    }
    let report =
        evaluate_folders(&args.ground_truth, &args.reconstructions, &protocol, &extractors, args.batch_size as usize)?;
    let (json, csv) = report.write(&args.out)?;
    print!("{}", report.summary());
    println!("wrote {} and {}", json.display(), csv.display());
    Ok(())
}
