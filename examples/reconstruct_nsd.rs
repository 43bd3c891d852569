//! Brain-Diffuser on the real Natural Scenes Dataset with the real checkpoints, for one subject, in
//! one command: the same steps as `brain-diffuser prepare ... report`, run in order.
//!
//! ```text
//! cargo run --release --example reconstruct_nsd -- --nsd /data/nsd --models /data/models --subject 1
//! ```
//!
//! It first checks the models folder (every file present with the expected keys and shapes; where
//! to download what is missing: docs/models.md) and the NSD files it reads (docs/nsd-io.md), and
//! stops with the list of what is missing. Then it prepares the subject, extracts the three feature
//! sets, fits the regressions, reconstructs the 982 test images (stage 1, then stage 2) and scores
//! them under both protocols, resuming wherever an earlier run stopped. Expect hours on one GPU
//! (extraction of 9,841 images and 982 x 37 denoising steps); the outputs land in `--run`.

use std::path::PathBuf;
use std::process::ExitCode;

use brain_diffuser::Config;
use brain_diffuser::TargetGroup;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::runtime::select_device;
use brain_diffuser::shard::Shard;
use brain_diffuser::workflow::RunDir;
use brain_diffuser::workflow::steps::Session;
use clap::Parser;
use nsd_io::NsdLayout;

#[derive(Parser, Debug)]
#[command(about = "Reconstruct one NSD subject's test images with the real Brain-Diffuser models")]
struct Args {
    /// NSD root (nsddata/, nsddata_betas/, nsddata_stimuli/).
    #[arg(long)]
    nsd: PathBuf,
    /// The curated caption array (default: <nsd>/annots/COCO_73k_annots_curated.npy).
    #[arg(long)]
    captions: Option<PathBuf>,
    /// The models folder (docs/models.md).
    #[arg(long)]
    models: PathBuf,
    /// Where the outputs go.
    #[arg(long, default_value = "runs/reconstruct_nsd")]
    run: PathBuf,
    /// The NSD subject (1, 2, 5 or 7 in the paper; NSD has 1 to 8).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=8))]
    subject: u8,
    /// Configuration (default: the paper's, configs/paper.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// cpu, cuda or cuda:N (default: the first GPU if any).
    #[arg(long)]
    device: Option<String>,
}

fn main() -> ExitCode {
    // Logging, and threads that share the CPUs well (docs/ARCHITECTURE.md, "Threads").
    if let Err(e) = brain_diffuser::runtime::init_program("info") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let models = ModelsDir::new(&args.models);
    let report = models.check();
    println!("{report}");
    if !report.reconstruction_ready() {
        return Err("the models folder cannot run the pipeline (see the table above and docs/models.md)".into());
    }
    let nsd = match &args.captions {
        Some(path) => NsdLayout::new(&args.nsd).with_captions(path),
        None => NsdLayout::new(&args.nsd),
    };
    let needed =
        [nsd.expdesign(), nsd.stimuli(), nsd.roi(args.subject, "nsdgeneral"), nsd.betas_session(args.subject, 1)];
    let missing: Vec<String> = needed.iter().filter(|p| !p.exists()).map(|p| p.display().to_string()).collect();
    if !missing.is_empty() {
        return Err(format!("NSD files missing (docs/nsd-io.md says where they come from): {missing:?}").into());
    }
    let config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    let device = select_device(args.device.as_deref())?;
    let session = Session::new(RunDir::new(&args.run), config, nsd, models, vec![args.subject], device);
    brain_diffuser::workflow::write_text(&session.run.config_file(), &session.config.to_toml())?;
    session.prepare()?;
    session.extract(Shard::WHOLE, &TargetGroup::PAPER)?;
    session.fit(&TargetGroup::PAPER)?;
    session.predict()?;
    session.reconstruct(Shard::WHOLE)?;
    for (label, variant, report) in session.evaluate(&session.config.evaluation.protocols.clone(), 32)? {
        println!("{label}, {}:\n{}", variant.name(), report.summary());
    }
    let report = session.report(8, 128)?;
    println!("report: {} and {}", report.grid.display(), report.page.display());
    Ok(())
}
