//! Speed of the dual U-Net against diffusers, in one run, printing a table.
//!
//! `--mode unet-step` (default): one U-Net forward at the VD layout (320/640/1280/1280), 64x64
//! latent, batch 2 (the CFG halves), random weights. `--mode img2img`: a whole 512x512 dual-guided
//! img2img (encode, 37 of 50 DDIM steps with CFG, decode) with random weights. The diffusers side
//! is `tools/versatile-diffusion/bench.py`, run with `--python` (a Python with torch 2.11 and
//! diffusers); without it only our figures are printed, and the table says so.
//!
//! ```text
//! cargo bench -p versatile-diffusion --bench vd_speed -- --python /path/to/python
//! cargo bench -p versatile-diffusion --bench vd_speed -- --channels 64,128,256,256 --latent 32 --python ...
//! vd_speed-<hash> --mode img2img --device cuda --dtype f16 --python python3   # carried binary
//! ```

use std::path::PathBuf;
use std::process::Command;
use std::time::Instant;

use clap::Parser;
use tch::{Device, Kind, Tensor};
use versatile_diffusion::ddim::DdimScheduler;
use versatile_diffusion::pipeline::tensor_from_f32;
use versatile_diffusion::{
    AttentionKernel, AutoencoderKl, Conditioning, DualMix, DualUNet, Img2ImgSettings, Noise, RgbImages,
    SchedulerConfig, UNetConfig, UNetRun, VaeConfig, VersatileDiffusion, WeightSource,
};

#[derive(Parser)]
struct Args {
    /// `unet-step` or `img2img`.
    #[arg(long, default_value = "unet-step")]
    mode: String,
    /// U-Net channels per level.
    #[arg(long, default_value = "320,640,1280,1280")]
    channels: String,
    /// Autoencoder channels per level (img2img).
    #[arg(long, default_value = "128,256,512,512")]
    vae_channels: String,
    /// Latent side (64 for 512x512 images).
    #[arg(long, default_value_t = 64)]
    latent: i64,
    /// Batch of the U-Net step (2 = the CFG halves of one image).
    #[arg(long, default_value_t = 2)]
    batch: i64,
    /// Timed repetitions (after one warm-up).
    #[arg(long, default_value_t = 3)]
    iters: usize,
    /// DDIM steps of the full schedule (img2img).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// img2img strength (0.75: 37 steps).
    #[arg(long, default_value_t = 0.75)]
    strength: f64,
    /// `cpu` or `cuda`.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// `f32`, `f16` or `bf16`.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Python with torch and diffusers, to time the reference in the same run.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn config(channels: &[i64]) -> UNetConfig {
    let json = serde_json::json!({
        "in_channels": 4, "out_channels": 4, "block_out_channels": channels, "layers_per_block": 2,
        "attention_head_dim": 8, "cross_attention_dim": 768, "norm_num_groups": 32,
        "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    });
    serde_json::from_value(json).expect("benchmark U-Net config")
}

fn vae_config(channels: &[i64]) -> VaeConfig {
    let json = serde_json::json!({
        "block_out_channels": channels, "layers_per_block": 2, "norm_num_groups": 32,
        "down_block_types": vec!["DownEncoderBlock2D"; channels.len()],
        "up_block_types": vec!["UpDecoderBlock2D"; channels.len()],
    });
    serde_json::from_value(json).expect("benchmark VAE config")
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn ours(args: &Args, device: Device, kind: Kind) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let channels: Vec<i64> = args.channels.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let unet_source = WeightSource::random(0, device, kind);
    let unet = DualUNet::new(&config(&channels), &unet_source)?;
    drop(unet_source);
    let mut times = Vec::new();
    if args.mode == "unet-step" {
        let x = Tensor::randn([args.batch, 4, args.latent, args.latent], (kind, device));
        let ctx = Tensor::randn([args.batch, 334, 768], (kind, device));
        let run =
            UNetRun { mix: DualMix { text_weight: 0.4, ..DualMix::default() }, attention: AttentionKernel::Fused };
        let _ = unet.forward(&x, 721.0, &ctx, &run)?; // warm-up
        for _ in 0..args.iters {
            sync(device);
            let t0 = Instant::now();
            let _ = unet.forward(&x, 721.0, &ctx, &run)?;
            sync(device);
            times.push(t0.elapsed().as_secs_f64());
        }
        return Ok(times);
    }
    let vae_channels: Vec<i64> = args.vae_channels.split(',').map(str::parse).collect::<Result<_, _>>()?;
    let vae_source = WeightSource::random(1, device, kind);
    let vae = AutoencoderKl::new(&vae_config(&vae_channels), &vae_source)?;
    drop(vae_source);
    let scheduler = DdimScheduler::new(SchedulerConfig::versatile_diffusion())?;
    let model = VersatileDiffusion::from_parts(unet, vae, scheduler, device);
    let px = (args.latent * vae_config(&vae_channels).downscale()) as usize;
    let seeded = |len: usize, seed: u64| -> Vec<f32> {
        // Deterministic pseudo-random bytes/values without touching the global libtorch generator.
        (0..len).map(|i| ((i as u64).wrapping_mul(2654435761).wrapping_add(seed) % 1000) as f32 / 1000.0).collect()
    };
    let init = RgbImages::new(1, px, px, seeded(px * px * 3, 1).iter().map(|v| (v * 255.0) as u8).collect())?;
    let emb = |tokens: i64, seed: u64| tensor_from_f32(&seeded(tokens as usize * 768, seed), &[1, tokens, 768]);
    let cond = Conditioning {
        vision: emb(257, 2)?,
        text: emb(77, 3)?,
        negative_vision: emb(257, 4)?,
        negative_text: emb(77, 5)?,
    };
    let warm = Img2ImgSettings {
        steps: 2,
        strength: 1.0,
        noise_timestep: versatile_diffusion::NoiseTimestep::Consistent,
        ..Img2ImgSettings::default()
    };
    let _ = model.img2img(&init, &cond, &warm, Noise::Seed(0), &mut |_| {})?;
    let settings = Img2ImgSettings { steps: args.steps, strength: args.strength, ..Img2ImgSettings::default() };
    for _ in 0..args.iters {
        sync(device);
        let t0 = Instant::now();
        let mut steps = 0;
        let out = model.img2img(&init, &cond, &settings, Noise::Seed(0), &mut |p| steps = p.step)?;
        // The bytes are on the host, so all device work has finished.
        assert_eq!(out.data.len(), px * px * 3);
        times.push(t0.elapsed().as_secs_f64());
        eprintln!("ours: {steps} denoising steps in {:.3} s", times.last().copied().unwrap_or(0.0));
    }
    Ok(times)
}

fn reference(args: &Args, python: &PathBuf) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tools/versatile-diffusion/bench.py");
    let script = std::env::var_os("VD_BENCH_SCRIPT").map(PathBuf::from).unwrap_or(script);
    let output = Command::new(python)
        .arg(&script)
        .args(["--mode", &args.mode, "--channels", &args.channels, "--vae-channels", &args.vae_channels])
        .args(["--latent", &args.latent.to_string(), "--batch", &args.batch.to_string()])
        .args(["--iters", &args.iters.to_string(), "--steps", &args.steps.to_string()])
        .args(["--strength", &args.strength.to_string(), "--device", &args.device, "--dtype", &args.dtype])
        .output()?;
    if !output.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&output.stderr)).into());
    }
    let stdout = String::from_utf8(output.stdout)?;
    let last = stdout.lines().last().ok_or("the reference printed nothing")?;
    Ok(serde_json::from_str(last)?)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let device = match args.device.as_str() {
        "cpu" => Device::Cpu,
        "cuda" if tch::Cuda::is_available() => Device::Cuda(0),
        other => return Err(format!("device `{other}` is not available").into()),
    };
    let kind = match args.dtype.as_str() {
        "f32" => Kind::Float,
        "f16" => Kind::Half,
        "bf16" => Kind::BFloat16,
        other => return Err(format!("dtype `{other}`, expected f32, f16 or bf16").into()),
    };
    tch::no_grad(|| -> Result<(), Box<dyn std::error::Error>> {
        let what = if args.mode == "unet-step" {
            format!("one dual U-Net step, batch {}, latent {}x{}", args.batch, args.latent, args.latent)
        } else {
            format!(
                "img2img, {} of {} steps, latent {}x{}",
                (args.steps as f64 * args.strength) as usize,
                args.steps,
                args.latent,
                args.latent
            )
        };
        println!("versatile-diffusion speed: {what}, channels {}, {} {}", args.channels, args.device, args.dtype);
        let ours = ours(&args, device, kind)?;
        let (our_median, our_min) = (median(ours.clone()), ours.iter().copied().fold(f64::INFINITY, f64::min));
        eprintln!("ours: median {our_median:.3} s, min {our_min:.3} s over {} runs", ours.len());
        println!("| implementation | median s | min s | vs diffusers |");
        println!("|---|---|---|---|");
        match &args.python {
            Some(python) => {
                let theirs = reference(&args, python)?;
                let their_median = theirs["median_s"].as_f64().ok_or("reference JSON lacks median_s")?;
                let their_min = theirs["min_s"].as_f64().ok_or("reference JSON lacks min_s")?;
                let ratio = our_median / their_median;
                println!("| ours (tch 0.24) | {our_median:.3} | {our_min:.3} | {ratio:.2}x |");
                println!(
                    "| diffusers (torch {}) | {their_median:.3} | {their_min:.3} | 1.00x |",
                    theirs["torch"].as_str().unwrap_or("?")
                );
            }
            None => {
                println!("| ours (tch 0.24) | {our_median:.3} | {our_min:.3} | not run (pass --python) |");
            }
        }
        Ok(())
    })
}
