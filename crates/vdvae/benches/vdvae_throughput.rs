//! Throughput of VDVAE encode (latents of the first N blocks) and decode at a full configuration
//! with random weights, against the machine's measured matmul rate.
//!
//! `cargo bench -p vdvae --bench vdvae_throughput -- [--batch 8] [--reps 3] [--blocks 31]
//!  [--device cpu|cuda] [--config imagenet64|small] [--skip-reference] [--no-warmup]`
//!
//! Rows: `encode (ours, ...)` runs the encoder and the posterior pass over the first N decoder blocks
//! only (later blocks cannot change those latents); `encode (reference)` runs the full posterior
//! pass as brain-diffuser's extraction does (same kernels, same results for the first N blocks);
//! `decode` runs the generative pass from N given latent blocks with the rest drawn from the
//! prior (seeded noise generated on the CPU, included) and samples the output. NCHW rows use the
//! reference's memory layout, NHWC rows `Vdvae::set_channels_last(true)`. FLOP counts are
//! the convolutions' 2 x multiply-accumulates, computed from the configuration.

use std::time::Instant;

use tch::{Device, Kind, Tensor};
use vdvae::{OutputDraw, PosteriorDraw, SeededNoise, Vdvae, VdvaeConfig, WeightInit};

struct Args {
    batch: usize,
    reps: usize,
    blocks: usize,
    device: Device,
    config: VdvaeConfig,
    reference: bool,
    warmup: bool,
}

fn parse_args() -> Args {
    let mut args = Args {
        batch: 8,
        reps: 3,
        blocks: 31,
        device: Device::Cpu,
        config: VdvaeConfig::imagenet64(),
        reference: true,
        warmup: true,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = || argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--batch" => args.batch = value().parse().expect("--batch N"),
            "--reps" => args.reps = value().parse().expect("--reps N"),
            "--blocks" => args.blocks = value().parse().expect("--blocks N"),
            "--device" => {
                args.device = match value().as_str() {
                    "cuda" => Device::Cuda(0),
                    _ => Device::Cpu,
                }
            }
            "--config" => {
                if value() == "small" {
                    // Same block structure as ImageNet-64 at a quarter of the width: a quick check.
                    args.config.width = 128;
                }
            }
            "--skip-reference" => {
                args.reference = false;
                i -= 1;
            }
            "--no-warmup" => {
                args.warmup = false;
                i -= 1;
            }
            "--bench" => i -= 1, // passed by `cargo bench`
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    args
}

/// Multiply-accumulates per image of the encoder, of the posterior pass over `n` blocks, and of
/// the generative pass (all blocks, no posterior nets) plus the output conv.
fn macs(config: &VdvaeConfig, n: usize) -> (f64, f64, f64) {
    let conv = |i: i64, o: i64, k: i64, r: i64| (i * o * k * k * r * r) as f64;
    let block = |i: i64, m: i64, o: i64, r: i64| {
        let k = if r > 2 { 3 } else { 1 };
        conv(i, m, 1, r) + 2.0 * conv(m, m, k, r) + conv(m, o, 1, r)
    };
    let s = config.image_size;
    let mut encoder = conv(3, config.width, 3, s);
    for b in config.encoder_blocks().unwrap() {
        let w = config.width_at(b.res).unwrap();
        encoder += block(w, config.bottleneck(w), w, b.res);
    }
    let z = config.zdim;
    let (mut posterior, mut generative) = (0.0, 0.0);
    for (i, b) in config.decoder_blocks().unwrap().iter().enumerate() {
        let (w, r) = (config.width_at(b.res).unwrap(), b.res);
        let m = config.bottleneck(w);
        let shared = block(w, m, 2 * z + w, r) + conv(z, w, 1, r) + block(w, m, w, r);
        if i < n {
            posterior += shared + block(2 * w, m, 2 * z, r);
        }
        generative += shared;
    }
    generative += conv(config.width, 10 * config.num_mixtures, 1, s);
    (encoder, posterior, generative)
}

/// Median seconds of `reps` runs of `f` (after one warm-up run unless disabled).
fn time(reps: usize, warmup: bool, device: Device, mut f: impl FnMut()) -> f64 {
    if warmup {
        f();
    }
    let mut t: Vec<f64> = (0..reps)
        .map(|_| {
            let start = Instant::now();
            f();
            if let Device::Cuda(_) = device {
                tch::Cuda::synchronize(0);
            }
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    let args = parse_args();
    let _guard = tch::no_grad_guard();
    let n = args.batch;
    println!(
        "VDVAE throughput: width {}, batch {n}, {} latent blocks, device {:?}, {} torch threads, median of {} reps",
        args.config.width,
        args.blocks,
        args.device,
        tch::get_num_threads(),
        args.reps
    );

    // Machine rate: f32 matmul.
    let dim = 2048;
    let a = Tensor::randn([dim, dim], (Kind::Float, args.device));
    let b = Tensor::randn([dim, dim], (Kind::Float, args.device));
    let gemm = time(args.reps, args.warmup, args.device, || {
        let _ = a.matmul(&b);
    });
    let machine = 2.0 * (dim as f64).powi(3) / gemm;
    println!("machine rate: f32 matmul {dim}^3: {:.1} GFLOP/s", machine / 1e9);

    let mut model = Vdvae::new(&args.config, args.device, WeightInit::Reference { seed: 0 }).expect("model");
    let s = args.config.image_size;
    let x = Tensor::randn([n as i64, s, s, 3], (Kind::Float, args.device));
    let (enc_macs, post_macs, gen_macs) = macs(&args.config, args.blocks);
    let (_, full_post_macs, _) = macs(&args.config, model.n_decoder_blocks());
    let layout = args.config.latent_layout(args.blocks).expect("layout");

    let mut rows: Vec<(&str, f64, f64)> = Vec::new();
    let encode = |model: &Vdvae, blocks: usize| {
        let acts = model.encoder_activations(&x).expect("encoder");
        let mut noise = SeededNoise::new(1, n);
        let pass = model.posterior_pass(&acts, blocks, PosteriorDraw::Sample, &mut noise, false).expect("posterior");
        let _ = layout.flatten(&pass.z[..args.blocks]).expect("flatten");
    };
    if args.reference {
        let t = time(args.reps, args.warmup, args.device, || encode(&model, model.n_decoder_blocks()));
        rows.push(("encode (reference)", t, 2.0 * (enc_macs + full_post_macs)));
    }
    let t = time(args.reps, args.warmup, args.device, || encode(&model, args.blocks));
    rows.push(("encode (ours, NCHW)", t, 2.0 * (enc_macs + post_macs)));
    let latents: Vec<Tensor> = (0..args.blocks)
        .map(|i| {
            let [c, h, w] = layout.shape(i);
            Tensor::randn([n as i64, c, h, w], (Kind::Float, args.device))
        })
        .collect();
    let decode = |model: &Vdvae| {
        let mut noise = SeededNoise::new(2, n);
        let px_z = model.generate(n, &latents, 1.0, &mut noise).expect("generate");
        let _ = model.sample_output(&px_z, OutputDraw::Sample, &mut noise).expect("sample");
    };
    let t = time(args.reps, args.warmup, args.device, || decode(&model));
    rows.push(("decode (NCHW)", t, 2.0 * gen_macs));

    model.set_channels_last(true);
    let t = time(args.reps, args.warmup, args.device, || encode(&model, args.blocks));
    rows.push(("encode (ours, NHWC)", t, 2.0 * (enc_macs + post_macs)));
    let t = time(args.reps, args.warmup, args.device, || decode(&model));
    rows.push(("decode (NHWC)", t, 2.0 * gen_macs));

    println!(
        "{:<20} {:>10} {:>10} {:>12} {:>10} {:>10}",
        "stage", "s/batch", "images/s", "GFLOP/image", "GFLOP/s", "of matmul"
    );
    for (name, t, flop) in rows {
        let rate = flop * n as f64 / t;
        println!(
            "{name:<20} {t:>10.3} {:>10.2} {:>12.1} {:>10.1} {:>9.0}%",
            n as f64 / t,
            flop / 1e9,
            rate / 1e9,
            100.0 * rate / machine
        );
    }
}
