//! Quickstart: checks this machine, then runs every stage of Brain-Diffuser end to end on a
//! synthetic mini-NSD with tiny models, in a minute or two on a laptop CPU.
//!
//! What it does, in order: prints the libtorch it was built against and loaded, CUDA availability,
//! the device and thread count; writes the demo of `brain-diffuser demo` — tiny models in the real
//! checkpoint formats and a synthetic NSD in the native formats (NIfTI betas and ROIs, MAT v5
//! design, HDF5 stimuli, npy captions) whose stimuli the tiny VDVAE decodes from seeded latents
//! and whose fMRI are a known linear map of those latents and of the stimuli's CLIP-Vision
//! features — and then runs the command line's own steps on subject 1: prepare, extract (VDVAE,
//! CLIP-Vision, CLIP-Text), fit (three ridge regressions), predict, reconstruct (VDVAE stage 1,
//! Versatile Diffusion stage 2), the ablation without CLIP-Text, the ROI-optimal images,
//! evaluation, stage 1 against a shuffled pairing, and the report. Everything lands under
//! `out/quickstart/`: PNGs, `report/grid.png`, metrics tables, `report/index.html`.
//!
//! Stage 1 has a known answer here: its images must resemble the ground truth, and the quickstart
//! prints by how much (PixCorr and SSIM against the same images paired at random). Stage 2 runs a
//! tiny random Versatile Diffusion: its images show that the step runs and composes, not what real
//! reconstructions look like. Real data and weights go through the same steps with
//! `brain-diffuser` (see the README).
//!
//! Run with `scripts/quickstart` (sets up libtorch on first use), or `cargo run --example quickstart`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use brain_diffuser::demo::write_demo;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::runtime::{LibtorchInfo, default_device, loaded_libtorch_paths};
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::evaluate::shuffled_control;
use brain_diffuser::workflow::features::FeatureFiles;
use brain_diffuser::workflow::fit::load_subject_predicted;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{DataSplit, RunDir, Variant};
use brain_diffuser::{Config, TargetGroup};
use metrics::high_level::two_way_identification;
use tch::{Device, Kind, Tensor};

type AnyError = Box<dyn std::error::Error>;

/// Seed of the synthetic data and the tiny models (named in the header of
/// `out/quickstart/config.toml`, as `brain-diffuser demo --seed` does).
const SEED: u64 = 2023;

fn main() -> ExitCode {
    // Logging, and threads that share the CPUs well (docs/ARCHITECTURE.md, "Threads").
    if let Err(e) = brain_diffuser::runtime::init_program("warn") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
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
    let device = default_device().map_err(|e| e.to_string())?;
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
    let elapsed = || start.elapsed().as_secs_f64();
    println!("SYNTHETIC DATA AND TINY MODELS: this run shows that every stage works and composes. Stage 1 has a");
    println!("known answer (the stimuli are decoded by the tiny VDVAE from latents the fMRI encode); stage 2's");
    println!("tiny random Versatile Diffusion does not: its images are not reconstructions of real scenes.\n");

    // 1. The demo: a synthetic NSD in the native formats, tiny models in the real formats.
    let demo = write_demo(out, SEED)?;
    if demo.run.exists() {
        std::fs::remove_dir_all(&demo.run)?; // a fresh run each time (the steps would resume otherwise)
    }
    let config = Config::load(&demo.config)?;
    println!("[{:>5.1}s] synthetic NSD in {}, tiny models in {}", elapsed(), demo.nsd.display(), demo.models.display());

    // 2. The command line's steps, in process, for subject 1.
    let session = Session::new(
        RunDir::new(&demo.run),
        config.clone(),
        nsd_io::NsdLayout::new(&demo.nsd),
        ModelsDir::new(&demo.models),
        vec![1],
        device,
    );
    for (subject, p) in session.prepare()? {
        println!(
            "[{:>5.1}s] prepare: subject {subject} has {} train and {} test images, {} voxels",
            elapsed(),
            p.train_images,
            p.test_images,
            p.voxels
        );
    }
    session.extract(Shard::WHOLE, &TargetGroup::PAPER)?;
    println!("[{:>5.1}s] extract: VDVAE, CLIP-Vision and CLIP-Text features", elapsed());
    session.fit(&TargetGroup::PAPER)?;
    session.predict()?;
    println!("[{:>5.1}s] fit + predict: three ridge regressions", elapsed());
    print_identification(&session)?;
    session.reconstruct(Shard::WHOLE)?;
    println!("[{:>5.1}s] reconstruct: stage 1 (VDVAE) and stage 2 (Versatile Diffusion)", elapsed());
    session.ablate(1, &[Variant::NoClipText], Shard::WHOLE)?;
    println!("[{:>5.1}s] ablate: without CLIP-Text", elapsed());
    let roi = session.roi(Shard::WHOLE)?;
    println!("[{:>5.1}s] roi: ROI-optimal images in {}", elapsed(), roi[0].display());
    for (label, variant, report) in session.evaluate(&["brain-diffuser".to_owned()], 8)? {
        println!(
            "\n{label}, {} (pixel metrics; the feature networks need real weights):\n{}",
            variant.name(),
            report.summary()
        );
    }
    print_stage1_control(&session)?;
    let report = session.report(8, 64)?;
    println!("[{:>5.1}s] report: {} and metrics.md", elapsed(), report.grid.display());
    println!("\nOutputs: {}/subj01/reconstructions/<variant>/, roi/, metrics/; report/grid.png", demo.run.display());
    println!("\nReminder: synthetic data and tiny models. For real NSD data and checkpoints, run the same");
    println!("steps with the brain-diffuser command line (README: \"Running on NSD\").");
    println!("\nReport page (open in a browser, no server needed): {}", report.page.display());
    Ok(())
}

/// Stage 1 against its known answer: the demo's stimuli are decoded by its VDVAE from latents that
/// the fMRI encode, so the VDVAE images decoded from the predicted latents must resemble them.
fn print_stage1_control(session: &Session) -> Result<(), AnyError> {
    let dir = session.run.subject(1);
    let c = shuffled_control(&dir.outputs, &dir.ground_truth(), Variant::OnlyVdvae, &session.config)?;
    let (pixcorr_margin, ssim_margin) = c.margins();
    println!("\nStage 1 (VDVAE) against the ground truth, {} test images (brain-diffuser protocol):", c.images);
    println!("  {:<8} {:>8} {:>24} {:>10}", "", "matched", "shuffled (mean +- SE)", "margin");
    for (metric, matched, shuffled, se, margin) in [
        ("PixCorr", c.pixcorr, c.shuffled_pixcorr, c.null_se_pixcorr, pixcorr_margin),
        ("SSIM", c.ssim, c.shuffled_ssim, c.null_se_ssim, ssim_margin),
    ] {
        println!("  {metric:<8} {matched:>8.3} {:>24} {:>7.1} SE", format!("{shuffled:.3} +- {se:.3}"), margin);
    }
    println!("  (shuffled: each ground truth against the reconstructions of the next {} images)", c.shifts.len());
    Ok(())
}

/// Two-way identification of the predicted test features against the extracted ones (chance 50%).
fn print_identification(session: &Session) -> Result<(), AnyError> {
    let dir = session.run.subject(1);
    let groups = session.groups();
    let predicted = load_subject_predicted(&dir, &groups)?;
    println!("  two-way identification of predicted vs extracted test features (chance 50%):");
    for group in &groups {
        let p = predicted.rows(group)?;
        let truth = FeatureFiles::open(&dir.features(group, DataSplit::Test), p.nrows())?.read_all()?;
        println!("    {:<12} {:>6.1}%", group.name(), 100.0 * two_way_identification(truth.view(), p.view())?);
    }
    Ok(())
}
