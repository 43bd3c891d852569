//! `brain-diffuser`: reconstruct seen images from NSD fMRI, step by step.
//!
//! Steps, in order: `prepare`, `extract`, `fit`, `predict`, `reconstruct`, `evaluate`; then the
//! analyses `ablate`, `average`, `roi`, `weights-roi` and `report`. `models` checks a models
//! folder; `demo` writes a synthetic NSD and tiny random models to try everything without data.
//! Every step resumes where an interrupted run stopped; `extract`, `reconstruct`, `ablate`,
//! `average` and `roi` take `--shard K/N` to split their images over machines.

use std::process::ExitCode;

use anyhow::{Result, bail};
use brain_diffuser::cli::{Cli, Command, Global, error_chain};
use brain_diffuser::config::Config;
use brain_diffuser::models::ModelsDir;
use brain_diffuser::runtime::select_device;
use brain_diffuser::workflow::steps::Session;
use brain_diffuser::workflow::{self, RunDir};
use clap::{CommandFactory, Parser};
use nsd_io::NsdLayout;

fn main() -> ExitCode {
    // Logging, and threads that share the CPUs well (docs/ARCHITECTURE.md, "Threads").
    if let Err(e) = brain_diffuser::runtime::init_program("info") {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let cli = Cli::parse();
    if let Err(e) = cli.validate() {
        // A usage error, like clap's own (exit code 2).
        Cli::command().error(clap::error::ErrorKind::ValueValidation, e).exit();
    }
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(e.as_ref()));
            ExitCode::FAILURE
        }
    }
}

/// The configuration of the run: `--config`, else the run's recorded one, else the paper's. The
/// first step records it in the run folder; a different `--config` for an existing run is refused.
fn load_config(global: &Global, run: &RunDir, record: bool) -> Result<Config> {
    let recorded = run.config_file();
    let config = match (&global.config, recorded.exists()) {
        (Some(path), _) => Config::load(path)?,
        (None, true) => Config::load(&recorded)?,
        (None, false) => Config::default(),
    };
    if recorded.exists() {
        let previous = Config::load(&recorded)?;
        if previous != config {
            bail!(
                "{} was made with another configuration ({}); use another --run folder or the same --config",
                run.root().display(),
                recorded.display()
            );
        }
    } else if record {
        workflow::write_text(&recorded, &config.to_toml())?;
    }
    Ok(config)
}

fn session(global: &Global) -> Result<Session> {
    let run = RunDir::new(&global.run);
    let config = load_config(global, &run, true)?;
    let device = select_device(global.device.as_deref())?;
    let nsd = match &global.captions {
        Some(path) => NsdLayout::new(&global.nsd).with_captions(path),
        None => NsdLayout::new(&global.nsd),
    };
    let subjects = config.data.subjects_or(&global.subjects);
    let session = Session::new(run, config, nsd, ModelsDir::new(&global.models), subjects, device);
    Ok(match global.batch {
        Some(batch) => session.with_image_batch(batch),
        None => session,
    })
}

fn run(cli: Cli) -> Result<()> {
    let global = &cli.global;
    let s = match cli.command {
        Command::Demo { out, seed, world } => {
            println!("{}", brain_diffuser::demo::write_demo_world(&out, seed, world)?);
            return Ok(());
        }
        Command::Models => {
            let report = ModelsDir::new(&global.models).check();
            println!("{report}");
            if !report.all_present_and_valid() {
                bail!("the models folder {} is incomplete or invalid (see above)", global.models.display());
            }
            return Ok(());
        }
        Command::Config => {
            print!("{}", load_config(global, &RunDir::new(&global.run), false)?.to_toml());
            return Ok(());
        }
        _ => session(global)?,
    };
    match cli.command {
        Command::Prepare => {
            for (subject, p) in s.prepare()? {
                println!(
                    "subject {subject}: {} train and {} test images, {} voxels{}{}",
                    p.train_images,
                    p.test_images,
                    p.voxels,
                    if p.roi_patterns { ", ROI patterns" } else { ", no ROI volumes" },
                    if p.reused { " (cached)" } else { "" }
                );
            }
        }
        Command::Extract { shard, groups } => {
            s.extract(shard, &groups)?;
            println!("features of shard {shard} in {}/subjNN/features", s.run.root().display());
        }
        Command::Fit { groups } => {
            s.fit(&groups)?;
            println!("regressions in {}/subjNN/regression", s.run.root().display());
        }
        Command::Predict => {
            s.predict()?;
            println!("predictions in {}/subjNN/predicted", s.run.root().display());
        }
        Command::Reconstruct { shard } => {
            s.reconstruct(shard)?;
            println!("reconstructions of shard {shard} in {}/subjNN/reconstructions", s.run.root().display());
        }
        Command::Ablate { shard, variants, subject } => {
            s.ablate(subject, &variants, shard)?;
            println!(
                "ablations of subject {subject} in {}",
                s.run.subject(subject).outputs.root().join("reconstructions").display()
            );
        }
        Command::Average { shard } => {
            s.average(shard)?;
            println!("average of subjects {:?} in {}", s.subjects, s.run.average().root().display());
        }
        Command::Roi { shard } => {
            for folder in s.roi(shard)? {
                println!("ROI-optimal images in {}", folder.display());
            }
        }
        Command::Evaluate { protocols, batch_size } => {
            let protocols = s.config.evaluation.protocols_or(&protocols);
            for (label, variant, report) in s.evaluate(&protocols, batch_size)? {
                println!("{label}, {}:\n{}", variant.name(), report.summary());
            }
        }
        Command::WeightsRoi => {
            let summary = s.weights_roi()?;
            println!("{:<8} {:>24} {:>24}", "ROI", "CLIP-Vision (SEM)", "CLIP-Text (SEM)");
            for r in &summary {
                println!(
                    "{:<8} {:>14.4} ({:.4}) {:>14.4} ({:.4})",
                    r.roi, r.clip_vision.0, r.clip_vision.1, r.clip_text.0, r.clip_text.1
                );
            }
            println!("wrote {}/figure7.csv and figure7.png", s.run.weights_roi().display());
        }
        Command::Report { images, cell } => {
            let files = s.report(images, cell)?;
            println!("wrote {} and {}", files.grid.display(), files.metrics.display());
            println!("report page: {}", files.page.display());
        }
        Command::Demo { .. } | Command::Models | Command::Config => {}
    }
    Ok(())
}
