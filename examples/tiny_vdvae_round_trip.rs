//! Measures whether a tiny VDVAE can carry a "known answer" for stage 1 (issue 17, point 1):
//! stimuli decoded from seeded latents and upscaled as the demo's are, their latents extracted as
//! `extract` does (posterior samples of the first 4 blocks from the stimuli resized to the model's
//! 16x16), and those latents decoded again as stage 1 does (prior temperature 1, sampled output).
//!
//! Two models of the demo's configuration: a random one with the reference initialisation, and
//! the demo's own, built so that its encoder inverts its decoder (`brain_diffuser::demo::mosaic_vdvae`).
//! For each it prints the spread of the extracted latents, their correlation with the generating
//! latents, and PixCorr of the round trip against its stimulus, matched and shifted by one image
//! (`metrics::shuffled_control`, brain-diffuser protocol).
//!
//! `cargo run --example tiny_vdvae_round_trip`

use std::error::Error;

use brain_diffuser::demo::tiny_models::{VDVAE_LATENT_BLOCKS, write_tiny_models};
use brain_diffuser::models::ModelsDir;
use image::RgbImage;
use image::imageops::{FilterType, resize};
use metrics::Protocol;
use metrics::low_level::pearson;
use tch::{Device, Kind, Tensor};
use vdvae::{DecodeOptions, EncodeOptions, Latents, OutputDraw, PosteriorDraw, Vdvae, WeightInit};

const IMAGES: usize = 40;
const SEED: i64 = 1;
/// The demo's stimulus side (the VDVAE's 16x16 images repeated 4x).
const STIMULUS_SIDE: u32 = 64;

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let tiny = write_tiny_models(dir.path(), 0)?;
    let dim = tiny.vdvae.latent_layout(VDVAE_LATENT_BLOCKS)?.dim();
    tch::manual_seed(SEED);
    let z = Vec::<f32>::try_from(Tensor::randn([(IMAGES * dim) as i64], (Kind::Float, Device::Cpu)))?;
    let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    let generating = Latents { n_blocks: VDVAE_LATENT_BLOCKS, dim, values: z };
    let deterministic = DecodeOptions { temperature: 0.0, output: OutputDraw::Mode, seed: 0, batch_size: IMAGES };
    let stage1 = DecodeOptions { seed: 2, batch_size: IMAGES, ..DecodeOptions::default() };
    let extract =
        EncodeOptions { n_blocks: VDVAE_LATENT_BLOCKS, posterior: PosteriorDraw::Sample, seed: 3, batch_size: IMAGES };
    println!("{IMAGES} images, {VDVAE_LATENT_BLOCKS} latent blocks ({dim} values), latents ~ N(0, 1), seed {SEED}");
    println!("| model | extracted-latent rms | corr(extracted, z) | PixCorr matched | PixCorr shifted |");
    println!("|---|---|---|---|---|");
    let random = Vdvae::new(&tiny.vdvae, Device::Cpu, WeightInit::Reference { seed: 0 })?;
    let demo = ModelsDir::new(dir.path()).load_vdvae(Device::Cpu)?;
    for (name, model) in
        [("random, reference initialisation", &random), ("the demo's (mosaic, built to invert)", &demo)]
    {
        let stimuli: Vec<RgbImage> = model
            .decode(&generating, &deterministic)?
            .iter()
            .map(|small| resize(small, STIMULUS_SIDE, STIMULUS_SIDE, FilterType::Nearest))
            .collect();
        let extracted = model.encode(&stimuli, &extract)?;
        let rms = (extracted.values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / extracted.values.len() as f64)
            .sqrt();
        let extracted64: Vec<f64> = extracted.values.iter().map(|&v| f64::from(v)).collect();
        let round_trip: Vec<RgbImage> = model
            .decode(&extracted, &stage1)?
            .iter()
            .map(|small| resize(small, STIMULUS_SIDE, STIMULUS_SIDE, FilterType::Nearest))
            .collect();
        // The brain-diffuser protocol's PixCorr, matched and with each stimulus against the next round trip.
        let control = metrics::shuffled_control(&stimuli, &round_trip, &Protocol::brain_diffuser(), &[1])?;
        let (matched, shifted) = (control.pixcorr, control.shuffled_pixcorr);
        println!("| {name} | {rms:.2e} | {:.3} | {matched:.3} | {shifted:.3} |", pearson(&extracted64, &z64)?);
    }
    Ok(())
}
