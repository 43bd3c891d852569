//! Benchmarks, ours against the Python reference in the same run (printed as tables):
//!
//! 1. PixCorr (Pillow bicubic 512 -> 425 + Pearson) plus both SSIMs over N pairs of 425x425
//!    ground truths and 512x512 reconstructions, against Pillow + NumPy + scikit-image.
//! 2. Feature extraction images/s on CPU for the four torchvision networks at 224, against
//!    torchvision.
//!
//! `cargo bench -p metrics --bench metrics -- [PAIRS] [BATCH] [REPEATS]` (defaults 982, 8, 3;
//! REPEATS 0 skips the networks).
//! The Python side runs when `BRAIN_DIFFUSER_PYTHON` (or the default tools venv) has the packages
//! of tools/requirements.txt; otherwise only our figures are printed, with a note.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use image::RgbImage;
use metrics::low_level::{SsimParams, pearson, pearson_u8, ssim_columns_1d, ssim_gaussian_2d};
use metrics::networks::synthetic::splitmix64;
use metrics::pixels::{GrayF64, RgbF64};
use metrics::{TorchvisionExtractor, TorchvisionNetwork};
use pil_resample::{Filter as PilFilter, resize as pil_resize};
use rayon::prelude::*;

fn python() -> Option<PathBuf> {
    let path = std::env::var_os("BRAIN_DIFFUSER_PYTHON").map(PathBuf::from).or_else(|| {
        std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/brain-diffuser/torch-2.11.0/bin/python"))
    })?;
    path.exists().then_some(path)
}

fn reference(args: &[&str]) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/metrics/bench_reference.py");
    let output = Command::new(python()?).arg(script).args(args).output().ok()?;
    if !output.status.success() {
        eprintln!("reference failed: {}", String::from_utf8_lossy(&output.stderr));
        return None;
    }
    serde_json::from_slice(&output.stdout).ok()
}

/// A smooth, textured test image (deterministic).
fn test_image(seed: u64, size: u32) -> RgbImage {
    RgbImage::from_fn(size, size, |x, y| {
        let block = u64::from((y / 16) * 1000 + x / 16);
        image::Rgb(std::array::from_fn(|c| {
            let r = (splitmix64(seed, block * 3 + c as u64) >> 58) as u32;
            let n = (splitmix64(seed ^ 0xABC, u64::from(y * size + x) * 3 + c as u64) >> 59) as u32;
            ((x * (c as u32 + 2) + y * (4 - c as u32) + r * 8 + n) % 256) as u8
        }))
    })
}

fn low_level(pairs: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("gt")).unwrap();
    std::fs::create_dir_all(dir.path().join("rec")).unwrap();
    let images: Vec<(RgbImage, RgbImage)> =
        (0..pairs as u64).into_par_iter().map(|i| (test_image(i, 425), test_image(i + 7, 512))).collect();
    for (i, (g, r)) in images.iter().enumerate() {
        g.save(dir.path().join(format!("gt/{i}.png"))).unwrap();
        r.save(dir.path().join(format!("rec/{i}.png"))).unwrap();
    }
    let params = SsimParams::default();
    let start = Instant::now();
    let scores: Vec<(f64, f64, f64)> = images
        .par_iter()
        .map(|(g, r)| {
            let r = pil_resize(r, g.width(), g.height(), PilFilter::Bicubic).unwrap();
            let (gg, rg) = (GrayF64::from_rgb8(g), GrayF64::from_rgb8(&r));
            (
                pearson_u8(g.as_raw(), r.as_raw()).unwrap(),
                ssim_columns_1d(&rg, &gg, &params).unwrap(),
                ssim_gaussian_2d(&rg, &gg, &params).unwrap(),
            )
        })
        .collect();
    let ours = start.elapsed().as_secs_f64();
    // Single-threaded breakdown over a few pairs, to see where the time goes.
    let few = &images[..images.len().min(20)];
    let timed = |label: &str, f: &dyn Fn(&RgbImage, &RgbImage)| {
        let t = Instant::now();
        few.iter().for_each(|(g, r)| f(g, r));
        println!("  {label}: {:.2} ms/pair (1 thread)", 1e3 * t.elapsed().as_secs_f64() / few.len() as f64);
    };
    let resized: Vec<RgbImage> =
        few.iter().map(|(g, r)| pil_resize(r, g.width(), g.height(), PilFilter::Bicubic).unwrap()).collect();
    timed("Pillow bicubic 512->425", &|g, r| {
        pil_resize(r, g.width(), g.height(), PilFilter::Bicubic).unwrap();
    });
    let idx = |g: &RgbImage| few.iter().position(|(x, _)| std::ptr::eq(x, g)).unwrap();
    timed("grey conversion", &|g, _| {
        GrayF64::from_rgb8(g);
    });
    timed("PixCorr (exact integer Pearson)", &|g, _| {
        pearson_u8(g.as_raw(), resized[idx(g)].as_raw()).unwrap();
    });
    timed("PixCorr (float64 Pearson, MindEye path)", &|g, _| {
        pearson(&RgbF64::from_rgb8(g).data, &RgbF64::from_rgb8(&resized[idx(g)]).data).unwrap();
    });
    let gray = GrayF64::from_rgb8;
    timed("column SSIM", &|g, _| {
        ssim_columns_1d(&gray(&resized[idx(g)]), &gray(g), &params).unwrap();
    });
    timed("2-D SSIM", &|g, _| {
        ssim_gaussian_2d(&gray(&resized[idx(g)]), &gray(g), &params).unwrap();
    });
    let mean = |f: fn(&(f64, f64, f64)) -> f64| scores.iter().map(f).sum::<f64>() / scores.len() as f64;
    println!(
        "\nPixCorr + column SSIM + 2-D SSIM, {pairs} pairs (425 GT, 512 recon), {} rayon threads",
        rayon::current_num_threads()
    );
    println!("| implementation | seconds | pairs/s | PixCorr | SSIM cols | SSIM 2-D |");
    println!("|---|---|---|---|---|---|");
    println!(
        "| metrics (Rust) | {ours:.3} | {:.1} | {:.6} | {:.6} | {:.6} |",
        pairs as f64 / ours,
        mean(|s| s.0),
        mean(|s| s.1),
        mean(|s| s.2)
    );
    match reference(&["low-level", dir.path().to_str().unwrap()]) {
        Some(r) => {
            let secs = r["seconds"].as_f64().unwrap_or(f64::NAN);
            println!(
                "| Pillow + NumPy + scikit-image | {secs:.3} | {:.1} | {:.6} | {:.6} | {:.6} |",
                pairs as f64 / secs,
                r["pixcorr"].as_f64().unwrap_or(f64::NAN),
                r["ssim_columns"].as_f64().unwrap_or(f64::NAN),
                r["ssim_2d"].as_f64().unwrap_or(f64::NAN)
            );
            println!("speed-up: {:.1}x", secs / ours);
        }
        None => println!("(reference not run: no Python with the tools packages)"),
    }
}

fn networks(batch: i64, repeats: usize) {
    let x = tch::Tensor::rand([batch, 3, 224, 224], (tch::Kind::Float, tch::Device::Cpu));
    println!(
        "\nFeature extraction on CPU, batch {batch} at 224x224, {repeats} timed batches, {} libtorch threads",
        tch::get_num_threads()
    );
    let reference = reference(&["networks", "224", &batch.to_string(), &repeats.to_string()]);
    println!("| network | metrics (Rust) images/s | torchvision images/s |");
    println!("|---|---|---|");
    for network in TorchvisionNetwork::ALL {
        let net = TorchvisionExtractor::with_synthetic_weights(network, tch::Device::Cpu).unwrap();
        net.forward(&x).unwrap();
        let start = Instant::now();
        for _ in 0..repeats {
            net.forward(&x).unwrap();
        }
        let ours = (batch as usize * repeats) as f64 / start.elapsed().as_secs_f64();
        let theirs = reference
            .as_ref()
            .and_then(|r| r["images_per_second"][network.name()].as_f64())
            .map(|v| format!("{v:.1}"))
            .unwrap_or_else(|| "-".into());
        println!("| {} | {ours:.1} | {theirs} |", network.name());
    }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|a| a.parse().ok()).collect();
    let pairs = args.first().copied().unwrap_or(982);
    let batch = args.get(1).copied().unwrap_or(8) as i64;
    let repeats = args.get(2).copied().unwrap_or(3);
    low_level(pairs);
    if repeats > 0 {
        networks(batch, repeats);
    }
}
