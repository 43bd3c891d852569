//! The workflow's `extract` and `reconstruct` steps at the full model configuration (random
//! weights), against the reference's per-image loops on the same inputs in the same run.
//!
//! It writes a synthetic NSD in the native formats (`nsd_io::synth`: one subject, `--stimuli`
//! 425x425 stimuli, `--images` of them shared test images), builds the full-size models with seeded
//! random weights — VDVAE ImageNet-64, CLIP ViT-L/14 vision and text towers, Versatile Diffusion's
//! dual U-Net, autoencoder and DDIM scheduler — and runs them through [`Session`] as the command
//! line does: `prepare`, `extract` (timed per encoder), `fit`, `predict`, then `reconstruct` at
//! batch 1 and at `--batch` (every PNG of both runs must be byte-identical, or the bench fails).
//! Model construction is timed apart and left out of the step times, as the reference's model
//! loading is. The reference side is `tools/brain-diffuser/whole_step_reference.py` (diffusers'
//! dual-guided img2img loop at batch 1 on our stage-1 images and predicted embeddings; the CLIP
//! loops one image per forward; VDVAE in batches of 30 with `--vdvae-repo`, a checkout of
//! openai/vdvae), run with `--python` after our side has finished and freed its models.
//!
//! ```text
//! cargo bench -p brain-diffuser --bench whole_step --profile dev -- --python ~/.cache/brain-diffuser/torch-2.11.0/bin/python \
//!     --vdvae-repo /tmp/vdvae-ref
//! whole_step-<hash> --device cuda --precision f16 --images 32 --strength 0.75 --python python3   # carried binary
//! ```
//!
//! On the CPU the default strength runs 2 of 50 DDIM steps per image (each a U-Net forward of the
//! conditional and unconditional halves), so a run takes minutes rather than hours.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::rc::Rc;
use std::time::Instant;

use brain_diffuser::config::{Config, DataSection, DiffusionSection, Precision};
use brain_diffuser::models::ModelsDir;
use brain_diffuser::shard::Shard;
use brain_diffuser::stages::clip::{ClipTextEncoder, ClipVisionEncoder};
use brain_diffuser::stages::vdvae::{VdvaeDecoder, VdvaeEncoder};
use brain_diffuser::stages::versatile_diffusion::VersatileDiffusionRefiner;
use brain_diffuser::workflow::loaders::{CLIP_VISION_BATCH, unconditional_embeddings};
use brain_diffuser::workflow::steps::{Session, default_image_batch};
use brain_diffuser::workflow::{RunDir, WorkflowError};
use brain_diffuser::{AnyGenerator, ConditionInputs, Encoder, Generator, StageError, TargetGroup};
use clap::Parser;
use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel, TextConfig, VisionConfig};
use image::RgbImage;
use ndarray::Array2;
use nsd_io::synth::{SynthConfig, write_synthetic_nsd};
use tch::{Device, Kind};
use vdvae::{Vdvae, VdvaeConfig, WeightInit};
use versatile_diffusion::ddim::DdimScheduler;
use versatile_diffusion::{
    AutoencoderKl, DualUNet, SchedulerConfig, UNetConfig, VaeConfig, VersatileDiffusion, WeightSource,
};

#[derive(Parser)]
struct Args {
    /// Test images reconstructed (the shared images of the synthetic subject).
    #[arg(long, default_value_t = 2)]
    images: usize,
    /// Stimuli of the synthetic subject, all extracted (training and test).
    #[arg(long, default_value_t = 12)]
    stimuli: usize,
    /// DDIM steps of the full schedule.
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// img2img strength (0.04 of 50 steps: 2 denoising steps; the paper's is 0.75: 37).
    #[arg(long, default_value_t = 0.04)]
    strength: f64,
    /// The batch compared with batch 1 (default: the device's default batch, at least 2).
    #[arg(long)]
    batch: Option<usize>,
    /// `cpu`, `cuda` or `cuda:N` (the reference runs on the same device).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Precision of the models on CUDA (`f32`, `f16`, `bf16`; the CPU runs f32).
    #[arg(long, default_value = "f16")]
    precision: String,
    /// Seed of the synthetic data and of every random weight.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Work folder (replaced).
    #[arg(long, default_value = "/tmp/bd-whole-step")]
    work: PathBuf,
    /// Python with torch 2.11, diffusers and transformers: times the reference in the same run.
    #[arg(long)]
    python: Option<PathBuf>,
    /// A checkout of openai/vdvae for the reference's VDVAE extraction loop.
    #[arg(long)]
    vdvae_repo: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

/// Seconds spent inside a stage's own work (encode or generate), accumulated over the step.
#[derive(Clone, Default)]
struct Clock(Rc<Cell<f64>>);

impl Clock {
    fn time<T>(&self, device: Device, work: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let out = work();
        sync(device);
        self.0.set(self.0.get() + start.elapsed().as_secs_f64());
        out
    }
    fn take(&self) -> f64 {
        self.0.replace(0.0)
    }
}

/// A stage that runs `inner` and adds the time of its work to `clock`.
struct Timed<S> {
    inner: S,
    clock: Clock,
    device: Device,
}

impl<E: Encoder> Encoder for Timed<E> {
    type Input = E::Input;
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn feature_shape(&self) -> &[usize] {
        self.inner.feature_shape()
    }
    fn encode(&self, batch: &[Self::Input]) -> Result<Array2<f32>, StageError> {
        self.clock.time(self.device, || self.inner.encode(batch))
    }
    fn encode_at(&self, first: usize, batch: &[Self::Input]) -> Result<Array2<f32>, StageError> {
        self.clock.time(self.device, || self.inner.encode_at(first, batch))
    }
}

impl<G: Generator> Generator for Timed<G> {
    type Condition = G::Condition;
    fn name(&self) -> &str {
        self.inner.name()
    }
    fn consumes(&self) -> Vec<TargetGroup> {
        self.inner.consumes()
    }
    fn condition(&self, inputs: &ConditionInputs<'_>) -> Result<Self::Condition, StageError> {
        self.inner.condition(inputs)
    }
    fn generate(&self, condition: &Self::Condition, seeds: &[u64]) -> Result<Vec<RgbImage>, StageError> {
        self.clock.time(self.device, || self.inner.generate(condition, seeds))
    }
}

fn timed<S>(inner: S, clock: &Clock, device: Device) -> Timed<S> {
    Timed { inner, clock: clock.clone(), device }
}

fn sync(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// The synthetic subject: `stimuli` images shown twice each, the first `images` shared (test).
fn synth_config(args: &Args) -> SynthConfig {
    SynthConfig {
        seed: args.seed,
        subjects: vec![1],
        sessions: 1,
        trials_per_session: 2 * args.stimuli,
        n_images: args.stimuli,
        images_per_subject: args.stimuli,
        n_shared: args.images,
        image_size: 425,
        n_features: 16,
        volume: [10, 10, 8],
        write_stimuli: true,
        ..SynthConfig::default()
    }
}

/// The paper's configuration (full-size shapes) with the synthetic data's counts and the bench's
/// diffusion schedule.
fn bench_config(synth: &SynthConfig, args: &Args, precision: Precision) -> Config {
    let mut c = Config { data: DataSection::of_synthetic(synth), ..Config::default() };
    c.diffusion.img2img.steps = args.steps;
    c.diffusion.img2img.strength = args.strength;
    c.diffusion.cuda_precision = precision;
    c.clip.cuda_precision = precision;
    c
}

/// What the stages of one run took.
#[derive(Default)]
struct Clocks {
    vdvae_encode: Clock,
    clip_vision: Clock,
    clip_text: Clock,
    stage1: Clock,
    stage2: Clock,
    build: Clock,
}

/// A session over `run` whose stages are the full-size random-weight models.
fn full_size_session(
    args: &Args,
    run: &Path,
    nsd: &Path,
    config: Config,
    device: Device,
    clocks: &Clocks,
) -> BenchResult<Session> {
    let kind = config.clip.cuda_precision.kind_on(device);
    let name = format!("random-seed{}", args.seed);
    let started = Instant::now();
    let vdvae =
        Rc::new(Vdvae::new(&VdvaeConfig::imagenet64(), device, WeightInit::Reference { seed: args.seed as i64 })?);
    let vision = ClipVisionEncoder::new(
        ClipVisionModel::new(&VisionConfig::vit_l14(), device, kind)?,
        &name,
        config.clip.vision_resize,
        CLIP_VISION_BATCH,
    )?;
    // The CLIP vocabulary cannot be downloaded here: the bytes-only tokenizer feeds the full-size
    // tower (same shapes, same work per caption).
    let tokenizer = ClipTokenizer::from_merges(Vec::new())?;
    let text_config = TextConfig { eos_token_id: i64::from(tokenizer.eos_id()), ..TextConfig::vit_l14() };
    let text = ClipTextEncoder::new(ClipTextModel::new(&text_config, device, kind)?, tokenizer, &name)?;
    let (negative_vision, negative_text) = unconditional_embeddings(&vision, &text)?;
    clocks.build.0.set(clocks.build.0.get() + started.elapsed().as_secs_f64());

    let encoder = VdvaeEncoder::new(vdvae.clone(), &name, config.vdvae_encode_options())?;
    let decoder = VdvaeDecoder::new(
        vdvae,
        &name,
        config.vdvae.layers,
        config.vdvae_decode_options(),
        Some(config.vdvae.upscale_size),
    );
    let (build, stage2, seed, refiner_name) = (clocks.build.clone(), clocks.stage2.clone(), args.seed, name.clone());
    let refiner = move |diffusion: &DiffusionSection| -> Result<Box<dyn AnyGenerator>, WorkflowError> {
        let kind = diffusion.cuda_precision.kind_on(device);
        let model = build.time(device, || -> Result<VersatileDiffusion, versatile_diffusion::DiffusionError> {
            let unet = DualUNet::new(&UNetConfig::versatile_diffusion(), &WeightSource::random(seed, device, kind))?;
            let vae =
                AutoencoderKl::new(&VaeConfig::versatile_diffusion(), &WeightSource::random(seed + 1, device, kind))?;
            let scheduler = DdimScheduler::new(SchedulerConfig::versatile_diffusion())?;
            Ok(VersatileDiffusion::from_parts(unet, vae, scheduler, device))
        });
        let model = model.map_err(|e| WorkflowError::Invalid(format!("full-size random Versatile Diffusion: {e}")))?;
        let inner = VersatileDiffusionRefiner::new(
            model,
            diffusion.img2img.clone(),
            negative_vision.view(),
            negative_text.view(),
            diffusion.resolution,
            &refiner_name,
        );
        Ok(Box::new(Timed { inner, clock: stage2.clone(), device }))
    };
    let session = Session::new(
        RunDir::new(run),
        config,
        nsd_io::NsdLayout::new(nsd),
        ModelsDir::new(run.join("no-models")),
        vec![1],
        device,
    )
    .with_image_encoder(TargetGroup::VDVAE, timed(encoder, &clocks.vdvae_encode, device))
    .with_image_encoder(TargetGroup::CLIP_VISION, timed(vision, &clocks.clip_vision, device))
    .with_caption_encoder(TargetGroup::CLIP_TEXT, timed(text, &clocks.clip_text, device))
    .with_decoder(timed(decoder, &clocks.stage1, device))
    .with_refiner(refiner);
    Ok(session)
}

/// One `reconstruct` of the run: its wall time less model construction, and its stages' times.
struct ReconstructRun {
    label: String,
    images: usize,
    step_s: f64,
    stage1_s: f64,
    stage2_s: f64,
}

/// Runs `session.reconstruct` over every test image and times it.
fn timed_reconstruct(session: &Session, clocks: &Clocks, label: String, images: usize) -> BenchResult<ReconstructRun> {
    let build_before = clocks.build.0.get();
    clocks.stage1.take();
    clocks.stage2.take();
    let started = Instant::now();
    session.reconstruct(Shard::WHOLE)?;
    sync(session.device);
    let wall = started.elapsed().as_secs_f64();
    let build = clocks.build.0.get() - build_before;
    Ok(ReconstructRun {
        label,
        images,
        step_s: wall - build,
        stage1_s: clocks.stage1.take(),
        stage2_s: clocks.stage2.take(),
    })
}

/// The PNG files of `dir` and below, relative to it, sorted.
fn pngs(dir: &Path) -> BenchResult<Vec<PathBuf>> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "png") {
                found.push(path.strip_prefix(dir)?.to_path_buf());
            }
        }
    }
    found.sort();
    Ok(found)
}

/// How the PNGs of `b` compare with those of `a`: the files compared, how many differ in any byte and the
/// largest difference of a pixel channel among those. Fails unless both hold the same file names.
fn compare_pngs(a: &Path, b: &Path) -> BenchResult<(usize, usize, u8)> {
    let (left, right) = (pngs(a)?, pngs(b)?);
    if left != right || left.is_empty() {
        return Err(
            format!("{} and {} hold different PNG files: {left:?} vs {right:?}", a.display(), b.display()).into()
        );
    }
    let (mut differing, mut largest) = (0, 0u8);
    for name in &left {
        if std::fs::read(a.join(name))? != std::fs::read(b.join(name))? {
            differing += 1;
            let (x, y) = (image::open(a.join(name))?.to_rgb8(), image::open(b.join(name))?.to_rgb8());
            let channel_diff = x.as_raw().iter().zip(y.as_raw()).map(|(p, q)| p.abs_diff(*q)).max().unwrap_or(0);
            largest = largest.max(if x.dimensions() == y.dimensions() { channel_diff } else { u8::MAX });
        }
    }
    Ok((left.len(), differing, largest))
}

/// Runs the reference script and parses its JSON line.
fn reference(python: &Path, args: &[String]) -> BenchResult<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tools/brain-diffuser/whole_step_reference.py");
    eprintln!("reference: {} {} {}", python.display(), script.display(), args.join(" "));
    let out = Command::new(python).arg(&script).args(args).output()?;
    if !out.status.success() {
        return Err(format!("{} failed: {}", script.display(), String::from_utf8_lossy(&out.stderr)).into());
    }
    let stdout = String::from_utf8(out.stdout)?;
    let line = stdout.lines().last().ok_or("the reference printed nothing")?;
    Ok(serde_json::from_str(line)?)
}

/// Prints `phase <name> <edge> <unix seconds>` on stderr: `scripts/gpu-check.sh` takes each phase's
/// peak device memory from an `nvidia-smi` log between these marks.
fn mark(phase: &str, edge: &str) {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
    eprintln!("phase {phase} {edge} {now:.3}");
}

/// `f32`, `f16` or `bf16`, spelt as the config's `cuda_precision` key (its serde names).
fn parse_precision(name: &str) -> BenchResult<Precision> {
    serde_json::from_value(serde_json::Value::String(name.to_owned()))
        .map_err(|e| format!("--precision {name}: {e}").into())
}

fn main() -> BenchResult<()> {
    let args = Args::parse();
    let device = brain_diffuser::runtime::parse_device_from("--device", &args.device)?;
    let precision = parse_precision(&args.precision)?;
    let kind: Kind = precision.kind_on(device);
    tch::manual_seed(args.seed as i64);
    let _no_grad = tch::no_grad_guard();
    if args.work.exists() {
        std::fs::remove_dir_all(&args.work)?;
    }
    let (nsd, run, stimuli_dir) = (args.work.join("nsd"), args.work.join("run"), args.work.join("stimuli"));
    let synth = synth_config(&args);
    write_synthetic_nsd(&nsd, &synth)?;
    let config = bench_config(&synth, &args, precision);
    let clocks = Clocks::default();
    let mut session = full_size_session(&args, &run, &nsd, config, device, &clocks)?;
    eprintln!(
        "models built in {:.1} s ({kind:?} on {device:?}, {} threads)",
        clocks.build.0.get(),
        tch::get_num_threads()
    );

    session.prepare()?;
    mark("extract", "start");
    let started = Instant::now();
    session.extract(Shard::WHOLE, &TargetGroup::PAPER)?;
    let extract_s = started.elapsed().as_secs_f64();
    mark("extract", "end");
    let ours_extract = [
        ("VDVAE encoder", clocks.vdvae_encode.take()),
        ("CLIP-Vision", clocks.clip_vision.take()),
        ("CLIP-Text", clocks.clip_text.take()),
    ];
    session.fit(&TargetGroup::PAPER)?;
    session.predict()?;

    let subject = run.join("subj01");
    let reconstructions = subject.join("reconstructions");
    let batch = args.batch.unwrap_or_else(|| default_image_batch(device).max(2));
    session.image_batch = 1;
    mark("reconstruct-batch-1", "start");
    let batch1 = timed_reconstruct(&session, &clocks, "ours, batch 1".into(), args.images)?;
    mark("reconstruct-batch-1", "end");
    let batch1_dir = subject.join("reconstructions-batch1");
    std::fs::rename(&reconstructions, &batch1_dir)?;
    session.image_batch = batch;
    mark("reconstruct-batched", "start");
    let batched = timed_reconstruct(&session, &clocks, format!("ours, batch {batch}"), args.images)?;
    mark("reconstruct-batched", "end");
    // Byte-identical on the CPU (the documented guarantee); on CUDA a batch's kernels may round
    // differently, so the difference is reported (docs/brain-diffuser.md, "Batches").
    let (compared, differing, largest) = compare_pngs(&batch1_dir, &reconstructions)?;
    if differing > 0 && device == Device::Cpu {
        return Err(
            format!("{differing} of {compared} PNGs differ between batch 1 and batch {batch} on the CPU").into()
        );
    }
    let identity = format!(
        "{differing} of {compared} PNGs differ between batch 1 and batch {batch} (largest channel difference {largest})"
    );
    eprintln!("{identity}");
    // The reference reads the stage-1 images of `reconstructions/`.
    std::fs::create_dir_all(&stimuli_dir)?;
    let ids: Vec<usize> = (0..args.stimuli).collect();
    let brick = nsd_io::hdf5::StimulusBrick::open(&nsd_io::NsdLayout::new(&nsd).stimuli())?.read(&ids)?;
    for (i, image) in brick.outer_iter().enumerate() {
        let (h, w, _) = image.dim();
        let pixels: Vec<u8> = image.iter().copied().collect();
        let png = RgbImage::from_raw(w as u32, h as u32, pixels).ok_or("stimulus brick row of the wrong size")?;
        png.save(stimuli_dir.join(format!("{i:05}.png")))?;
    }
    // diffusers' img2img rule (`DdimScheduler::img2img`): min(int(steps * strength), steps).
    let denoising_steps = ((args.steps as f64 * args.strength) as usize).min(args.steps);
    drop(session);

    let dtype = if device == Device::Cpu { "f32".to_string() } else { args.precision.clone() };
    let (reference_reconstruct, reference_extract) = match &args.python {
        Some(python) => {
            let common = ["--device".to_string(), args.device.clone(), "--dtype".into(), dtype.clone()];
            let mut reconstruct_args: Vec<String> = vec![
                "reconstruct".into(),
                "--subject-dir".into(),
                subject.display().to_string(),
                "--images".into(),
                args.images.to_string(),
                "--steps".into(),
                args.steps.to_string(),
                "--strength".into(),
                args.strength.to_string(),
                "--out".into(),
                args.work.join("reference").display().to_string(),
            ];
            reconstruct_args.extend(common.iter().cloned());
            let mut extract_args: Vec<String> =
                vec!["extract".into(), "--images".into(), stimuli_dir.display().to_string()];
            if let Some(repo) = &args.vdvae_repo {
                extract_args.extend(["--vdvae-repo".into(), repo.display().to_string()]);
            }
            extract_args.extend(common.iter().cloned());
            mark("reference-reconstruct", "start");
            let reconstruct = reference(python, &reconstruct_args)?;
            mark("reference-reconstruct", "end");
            mark("reference-extract", "start");
            let extract = reference(python, &extract_args)?;
            mark("reference-extract", "end");
            (Some(reconstruct), Some(extract))
        }
        None => (None, None),
    };

    println!(
        "\n## reconstruct: {} images, {denoising_steps} denoising steps each ({} of {}), 512x512, {dtype} on {}",
        args.images, denoising_steps, args.steps, args.device
    );
    println!(
        "| run | stage 1 s | stage 2 s | step s | images/s | stage 2 s per image and denoising step | reference / this (stage 2) |"
    );
    println!("|---|---|---|---|---|---|---|");
    let reference_s = reference_reconstruct.as_ref().and_then(|r| r["seconds"].as_f64());
    let per_step = |seconds: f64| seconds / (args.images * denoising_steps.max(1)) as f64;
    for r in [&batch1, &batched] {
        let ratio = reference_s.map_or("not measured".to_string(), |s| format!("{:.2}x", s / r.stage2_s));
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.4} | {:.2} | {ratio} |",
            r.label,
            r.stage1_s,
            r.stage2_s,
            r.step_s,
            r.images as f64 / r.step_s,
            per_step(r.stage2_s)
        );
    }
    match reference_s {
        Some(s) => println!(
            "| diffusers loop, batch 1 | (our PNGs) | {s:.1} | {s:.1} | {:.4} | {:.2} | 1.00x |",
            args.images as f64 / s,
            per_step(s)
        ),
        None => println!("| diffusers loop, batch 1 | not measured (no --python) | | | | | |"),
    }

    println!("{identity}");
    println!("\n## extract: {} stimuli (425x425), {dtype} on {}; total {extract_s:.1} s", args.stimuli, args.device);
    println!("| encoder | ours s | images/s | reference loop s | reference / ours |");
    println!("|---|---|---|---|---|");
    let keys = ["vdvae_s", "clip_vision_s", "clip_text_s"];
    for ((label, ours), key) in ours_extract.iter().zip(keys) {
        let theirs = reference_extract.as_ref().and_then(|r| r[key].as_f64());
        let (theirs_s, ratio) = theirs
            .map_or(("not measured".to_string(), "".to_string()), |t| (format!("{t:.1}"), format!("{:.2}x", t / ours)));
        println!("| {label} | {ours:.1} | {:.2} | {theirs_s} | {ratio} |", args.stimuli as f64 / ours);
    }
    let ours_reconstruct: Vec<serde_json::Value> = [&batch1, &batched]
        .iter()
        .map(|r| {
            serde_json::json!({"label": r.label, "stage1_s": r.stage1_s, "stage2_s": r.stage2_s, "step_s": r.step_s})
        })
        .collect();
    let ours_extract_json: Vec<serde_json::Value> =
        ours_extract.iter().map(|(l, s)| serde_json::json!({"encoder": l, "seconds": s})).collect();
    let summary = serde_json::json!({
        "device": args.device, "dtype": dtype, "images": args.images, "stimuli": args.stimuli,
        "steps": args.steps, "strength": args.strength, "denoising_steps": denoising_steps, "batch": batch,
        "batch_identity": identity,
        "threads": tch::get_num_threads(), "seed": args.seed,
        "ours": {
            "reconstruct": ours_reconstruct,
            "extract": ours_extract_json,
            "extract_total_s": extract_s,
        },
        "reference": {"reconstruct": reference_reconstruct, "extract": reference_extract},
    });
    let json = args.work.join("whole_step.json");
    std::fs::write(&json, serde_json::to_string_pretty(&summary)?)?;
    eprintln!("wrote {}", json.display());
    Ok(())
}
