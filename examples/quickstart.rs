//! Quickstart: checks this machine, then runs every stage of Brain-Diffuser end to end on a
//! synthetic mini-NSD with tiny random-weight models, in a minute or two on a laptop CPU.
//!
//! What it does, in order: prints the libtorch it was built against and loaded, CUDA availability,
//! the device and thread count; writes a synthetic NSD in the native formats (NIfTI betas and ROIs,
//! MAT v5 design, npy captions) whose fMRI come from a known linear encoding model; assembles
//! subject 1 with `nsd-io`; extracts VDVAE, CLIP-Vision and CLIP-Text features with tiny random
//! models; fits the three ridge regressions; decodes stage-1 images with VDVAE and refines them with
//! a tiny random Versatile Diffusion; scores both (the Only-VDVAE ablation and the full model) with
//! the pixel metrics; and writes PNGs, a grid and the metrics under `out/quickstart/`.
//!
//! The data and the models are synthetic: the images it writes show that every stage runs and
//! composes, not what real reconstructions look like. Real data and weights go through the command
//! line, which is not written yet.
//!
//! Run with `scripts/quickstart` (sets up libtorch on first use), or `cargo run --example quickstart`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;
use std::time::Instant;

use brain_diffuser::pipeline::{Features, Stimuli};
use brain_diffuser::report::image_grid;
use brain_diffuser::runtime::{LibtorchInfo, default_device, loaded_libtorch_paths};
use brain_diffuser::stages::clip::{ClipTextEncoder, ClipVisionEncoder};
use brain_diffuser::stages::ridge::RidgeRegressor;
use brain_diffuser::stages::vdvae::{VdvaeDecoder, VdvaeEncoder};
use brain_diffuser::stages::versatile_diffusion::{VersatileDiffusionRefiner, img2img_settings};
use brain_diffuser::{Config, Encoder, Pipeline, Regressor};
use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel, TextConfig, VisionConfig};
use image::{ImageEncoder, RgbImage};
use metrics::high_level::two_way_identification;
use metrics::{Extractors, Protocol};
use ndarray::Array2;
use nsd_io::synth::{SynthConfig, write_synthetic_nsd};
use tch::{Device, Kind, Tensor};
use vdvae::{DecodeOptions, EncodeOptions, PosteriorDraw, Vdvae, VdvaeConfig, WeightInit};
use versatile_diffusion::{VdWeights, VersatileDiffusion};

type AnyError = Box<dyn std::error::Error>;

/// Seed of every random draw of the run, recorded in `out/quickstart/run.toml`.
const SEED: u64 = 2023;
/// Side of the synthetic stimuli and of the tiny Versatile Diffusion's images.
const SIDE: u32 = 64;

fn main() -> ExitCode {
    tracing_subscriber::fmt().with_env_filter(tracing_subscriber::EnvFilter::from_default_env()).init();
    let device = match environment_report() {
        Ok(device) => device,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let out = PathBuf::from("out/quickstart");
    match run(&out, device) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Prints what libtorch offers and checks it with a seeded linear solve; returns the device.
fn environment_report() -> Result<Device, String> {
    let info = LibtorchInfo::query();
    println!("brain-diffuser quickstart");
    println!("  libtorch built against : {}", info.version);
    match loaded_libtorch_paths().iter().find(|p| p.ends_with("libtorch_cpu.so")) {
        Some(path) => println!("  libtorch loaded from   : {path}"),
        None => println!("  libtorch loaded from   : (not visible in /proc/self/maps on this system)"),
    }
    println!("  CUDA available         : {} ({} device(s))", info.cuda_available, info.cuda_devices);
    let device = default_device().map_err(|m| format!("BRAIN_DIFFUSER_DEVICE: {m}"))?;
    println!("  device                 : {device:?}");
    println!("  intra-op threads       : {}", info.threads);
    tch::manual_seed(SEED as i64);
    let n = 256;
    let options = (Kind::Double, device);
    let b = Tensor::randn([n, n], options);
    let a = b.matmul(&b.tr()) + Tensor::eye(n, options) * (n as f64);
    let rhs = Tensor::randn([n, 1], options);
    let x = Tensor::f_linalg_solve(&a, &rhs, true).map_err(|e| format!("linalg_solve: {e}"))?;
    let residual = (a.matmul(&x) - &rhs).norm().double_value(&[]) / rhs.norm().double_value(&[]);
    if !residual.is_finite() || residual >= 1e-10 {
        return Err(format!("libtorch check failed: relative residual {residual:e} of a {n}x{n} solve"));
    }
    println!("  libtorch check         : seeded {n}x{n} SPD solve, relative residual {residual:.1e} -- OK\n");
    Ok(device)
}

fn run(out: &Path, device: Device) -> Result<(), AnyError> {
    let start = Instant::now();
    println!("SYNTHETIC DATA AND TINY RANDOM MODELS: this run shows that every stage works and composes;");
    println!("its images are not reconstructions of real scenes.\n");

    // 1. A synthetic NSD in the native formats, and subject 1 assembled from it as the reference does.
    let synth = SynthConfig {
        seed: SEED,
        sessions: 4,
        trials_per_session: 150,
        volume: [14, 14, 10],
        n_images: 600,
        images_per_subject: 200,
        n_shared: 40,
        image_size: SIDE as usize,
        n_features: 16,
        noise_sd: 0.5,
        ..SynthConfig::default()
    };
    let data_dir = out.join("nsd");
    let nsd = write_synthetic_nsd(&data_dir, &synth)?;
    let mut subject = nsd_io::assemble_subject(&nsd.layout, 1, &synth.assembly_options())?;
    subject.divide(f64::from(synth.beta_scale));
    subject.zscore_with_train_stats()?;
    println!(
        "[{:>5.1}s] synthetic NSD in {}: subject 1 has {} train and {} test images, {} voxels",
        start.elapsed().as_secs_f64(),
        data_dir.display(),
        subject.train_ids.len(),
        subject.test_ids.len(),
        subject.n_voxels()
    );
    let image = |id: usize| -> Result<RgbImage, AnyError> {
        let pixels = nsd.truth.image(id)?;
        RgbImage::from_raw(SIDE, SIDE, pixels.into_raw_vec_and_offset().0).ok_or_else(|| "stimulus size".into())
    };
    let train_images = subject.train_ids.iter().map(|&id| image(id)).collect::<Result<Vec<_>, _>>()?;
    let test_images = subject.test_ids.iter().map(|&id| image(id)).collect::<Result<Vec<_>, _>>()?;
    let train_captions = subject.train_captions.rows.clone();
    let test_captions = subject.test_captions.rows.clone();

    // 2. Tiny random models with the real architectures, and the paper's pipeline around them.
    let mut config = Config::default();
    config.regression.vdvae_alpha = 100.0; // the paper's alphas suit 15,724 voxels and 8,859 images
    config.regression.clip_vision_alpha = 100.0;
    config.regression.clip_text_alpha = 100.0;
    config.diffusion.steps = 10; // strength 0.75: 7 denoising steps
    config.diffusion.resolution = SIDE;
    let pipeline = build_pipeline(config, device)?;
    println!("[{:>5.1}s] tiny random models built", start.elapsed().as_secs_f64());

    // 3. Features, regressions, stage 1, stage 2.
    let stimuli = Stimuli {
        train_images: &train_images,
        test_images: &test_images,
        train_captions: &train_captions,
        test_captions: &test_captions,
    };
    let features = pipeline.extract(&stimuli)?;
    println!("[{:>5.1}s] features extracted (VDVAE, CLIP-Vision, CLIP-Text)", start.elapsed().as_secs_f64());
    let predictions = pipeline.fit_predict(subject.train_fmri.view(), subject.test_fmri.view(), &features)?;
    print_identification(&features, &predictions);
    let stage1 = pipeline.initial_guesses(&predictions, SEED)?;
    println!("[{:>5.1}s] stage 1: {} VDVAE images", start.elapsed().as_secs_f64(), stage1.len());
    let final_images = pipeline.refine(stage1.clone(), &predictions, SEED)?;
    println!("[{:>5.1}s] stage 2: {} Versatile Diffusion images", start.elapsed().as_secs_f64(), final_images.len());

    // 4. Outputs and scores.
    for (dir, images) in [("ground_truth", &test_images), ("stage1", &stage1), ("final", &final_images)] {
        for (i, img) in images.iter().enumerate() {
            save_png(&out.join(dir).join(format!("{i}.png")), img)?;
        }
    }
    let rows: Vec<Vec<RgbImage>> = (0..8.min(test_images.len()))
        .map(|i| vec![test_images[i].clone(), stage1[i].clone(), final_images[i].clone()])
        .collect();
    save_png(&out.join("grid.png"), &image_grid(&rows, SIDE, 4))?;
    let names: Vec<String> = (0..test_images.len()).map(|i| format!("{i}.png")).collect();
    let protocol = Protocol::brain_diffuser();
    for (label, images) in [("only-vdvae", &stage1), ("brain-diffuser", &final_images)] {
        let report = metrics::evaluate(&test_images, images, &names, &protocol, &Extractors::new(), 8)?;
        report.write(&out.join("metrics").join(label))?;
        println!("\n{label} (pixel metrics; feature networks need real weights):\n{}", report.summary());
    }
    let record = format!(
        "# quickstart run\nseed = {SEED}\nsynthetic = true\nmodels = \"tiny, random weights\"\n\n{}",
        pipeline.config.to_toml()
    );
    nsd_io::write_atomic(&out.join("run.toml"), |w| {
        w.write_all(record.as_bytes()).map_err(|e| nsd_io::NsdError::Io { path: out.join("run.toml"), source: e })
    })?;
    println!(
        "[{:>5.1}s] wrote {} (ground_truth/, stage1/, final/, grid.png, metrics/, run.toml)",
        start.elapsed().as_secs_f64(),
        out.display()
    );
    println!("\nReminder: synthetic data and tiny random models. The brain-diffuser command line for real NSD");
    println!("data and real checkpoints is not implemented yet.");
    Ok(())
}

/// The pipeline with tiny random-weight models of the real architectures.
fn build_pipeline(config: Config, device: Device) -> Result<Pipeline, AnyError> {
    tch::manual_seed(SEED as i64);
    // VDVAE: the structure of the shared parity fixture (every kind of block), 16x16 images.
    let vdvae_config = VdvaeConfig {
        width: 16,
        zdim: 4,
        image_size: 16,
        num_mixtures: 3,
        enc_blocks: "16x2,16d2,8x2,8d2,4x2,4d4,1x2".into(),
        dec_blocks: "1x2,4m1,4x1,8m4,8x2,16m8,16x2".into(),
        ..VdvaeConfig::imagenet64()
    };
    let vdvae = Rc::new(Vdvae::new(&vdvae_config, device, WeightInit::Reference { seed: SEED as i64 })?);
    let latent_blocks = 4;
    let encode = EncodeOptions {
        n_blocks: latent_blocks,
        posterior: PosteriorDraw::Sample,
        seed: config.seeds.vdvae_targets,
        batch_size: 32,
    };
    let vdvae_encoder = VdvaeEncoder::new(vdvae.clone(), "tiny-random", encode)?;
    let decoder = VdvaeDecoder::new(vdvae, "tiny-random", latent_blocks, DecodeOptions::default(), Some(SIDE));

    // CLIP: 2-layer towers, 16-wide projections (the tiny Versatile Diffusion's context width).
    let vision_config = VisionConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        image_size: 28,
        patch_size: 14,
        num_channels: 3,
        projection_dim: Some(16),
        layer_norm_eps: 1e-5,
        hidden_act: "quick_gelu".into(),
    };
    let tokenizer = ClipTokenizer::from_merges(Vec::new())?; // bytes only: 514 tokens
    let text_config = TextConfig {
        vocab_size: tokenizer.vocab_size() as i64,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: tokenizer.context_length() as i64,
        projection_dim: Some(16),
        layer_norm_eps: 1e-5,
        hidden_act: "quick_gelu".into(),
        eos_token_id: i64::from(tokenizer.eos_id()),
    };
    let clip_vision = ClipVisionEncoder::new(
        ClipVisionModel::new(&vision_config, device, Kind::Float)?,
        "tiny-random",
        config.clip.vision_resize,
        16,
    )?;
    let clip_text =
        ClipTextEncoder::new(ClipTextModel::new(&text_config, device, Kind::Float)?, tokenizer, "tiny-random")?;

    // Versatile Diffusion's unconditional embeddings: a grey image and the empty prompt.
    let grey = RgbImage::from_pixel(SIDE, SIDE, image::Rgb([127, 127, 127]));
    let negative_vision = reshape(clip_vision.encode(&[grey])?, clip_vision.feature_shape())?;
    let negative_text = reshape(clip_text.encode(&[vec![String::new()]])?, clip_text.feature_shape())?;
    let vd_folder = Path::new(env!("CARGO_MANIFEST_DIR")).join("../versatile-diffusion/tests/fixtures/tiny");
    let vd = VersatileDiffusion::from_weights(
        VdWeights::from_diffusers_folder(&vd_folder)?,
        device,
        Kind::Float,
        Kind::Float,
    )?;
    let settings = img2img_settings(&config.diffusion);
    let refiner = VersatileDiffusionRefiner::new(
        vd,
        settings,
        negative_vision.view(),
        negative_text.view(),
        config.diffusion.resolution,
        "tiny-random",
    );
    Ok(Pipeline {
        config,
        vdvae: Box::new(vdvae_encoder),
        clip_vision: Box::new(clip_vision),
        clip_text: Box::new(clip_text),
        regressor: Box::new(|group, config| -> Box<dyn Regressor> {
            Box::new(RidgeRegressor::fixed(group.alpha(config), config.regression.fit_intercept))
        }),
        initial_guess: Box::new(decoder),
        refiner: Box::new(refiner),
    })
}

/// One encoded item `[1, tokens * width]` as `[tokens, width]`.
fn reshape(row: Array2<f32>, shape: &[usize]) -> Result<Array2<f32>, AnyError> {
    let &[tokens, width] = shape else { return Err(format!("feature shape {shape:?} is not 2-D").into()) };
    Ok(row.into_shape_with_order((tokens, width))?)
}

/// Two-way identification of the predicted test features against the true ones (chance: 50%).
fn print_identification(features: &Features, predictions: &brain_diffuser::pipeline::Predictions) {
    println!("  two-way identification of predicted vs extracted test features (chance 50%):");
    for (name, truth, predicted) in [
        ("VDVAE", &features.vdvae.test, &predictions.vdvae),
        ("CLIP-Vision", &features.clip_vision.test, &predictions.clip_vision),
        ("CLIP-Text", &features.clip_text.test, &predictions.clip_text),
    ] {
        match two_way_identification(truth.view(), predicted.view()) {
            Ok(score) => println!("    {name:<12} {:>6.1}%", 100.0 * score),
            Err(e) => println!("    {name:<12} not computed: {e}"),
        }
    }
}

/// Writes a PNG atomically.
fn save_png(path: &Path, img: &RgbImage) -> Result<(), AnyError> {
    nsd_io::write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .map_err(|e| nsd_io::NsdError::Io { path: path.to_path_buf(), source: std::io::Error::other(e) })
    })?;
    Ok(())
}
