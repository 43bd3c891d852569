//! Measures whether the demo's tiny random VDVAE can carry a "known answer" for stage 1 (issue 17,
//! point 1): stimuli decoded from seeded latents, their encoder latents extracted as the pipeline
//! does (posterior means of the first blocks), and those latents decoded again.
//!
//! Decoding is deterministic here (prior mean for the remaining blocks, the output mixture's
//! mode), so any resemblance comes from the latents alone. For each scale `k` of the posterior's
//! last convolution (`decoder.dec_blocks.*.enc.c4`, weight and bias, so its whole output; `k = 1`
//! is the demo's model) it prints
//! the spread of the extracted posterior means, their correlation with the generating latents, and
//! PixCorr of decode(encode(decode(z))) against decode(z), matched and against a shifted pairing.
//!
//! `cargo run --example tiny_vdvae_round_trip`

use std::error::Error;

use brain_diffuser::models::{ModelsDir, write_tiny_models};
use image::RgbImage;
use metrics::MetricsError;
use metrics::low_level::{pearson, pearson_u8};
use tch::{Device, Kind, Tensor};
use vdvae::{DecodeOptions, EncodeOptions, Latents, OutputDraw, PosteriorDraw};

const IMAGES: usize = 40;
const LATENT_BLOCKS: usize = 4;
const SEED: i64 = 1;

/// Mean PixCorr of `a[i]` with `b[i]` and with `b[i + 1]` (the shuffled control); a constant
/// image (NaN correlation) counts as 0, no resemblance.
fn matched_and_shifted(a: &[RgbImage], b: &[RgbImage]) -> Result<(f64, f64), MetricsError> {
    let n = a.len();
    let mean = |shift: usize| -> Result<f64, MetricsError> {
        let mut sum = 0.0;
        for i in 0..n {
            let r = pearson_u8(a[i].as_raw(), b[(i + shift) % n].as_raw())?;
            sum += if r.is_nan() { 0.0 } else { r };
        }
        Ok(sum / n as f64)
    };
    Ok((mean(0)?, mean(1)?))
}

fn main() -> Result<(), Box<dyn Error>> {
    let dir = tempfile::tempdir()?;
    let tiny = write_tiny_models(dir.path(), 0)?;
    let dim = tiny.vdvae.latent_layout(LATENT_BLOCKS)?.dim();
    tch::manual_seed(SEED);
    let z = Vec::<f32>::try_from(Tensor::randn([(IMAGES * dim) as i64], (Kind::Float, Device::Cpu)))?;
    let generating = Latents { n_blocks: LATENT_BLOCKS, dim, values: z.clone() };
    let decode = DecodeOptions { temperature: 0.0, output: OutputDraw::Mode, seed: 0, batch_size: IMAGES };
    let encode = EncodeOptions { n_blocks: LATENT_BLOCKS, posterior: PosteriorDraw::Mean, seed: 0, batch_size: IMAGES };
    let z64: Vec<f64> = z.iter().map(|&v| f64::from(v)).collect();
    let demo_model = ModelsDir::new(dir.path()).load_vdvae(Device::Cpu)?;
    let zeros = Latents { n_blocks: LATENT_BLOCKS, dim, values: vec![0.0; dim] };
    let grey = &demo_model.decode(&zeros, &decode)?[0];
    let lowest = grey.as_raw().iter().copied().min().unwrap_or_default();
    let highest = grey.as_raw().iter().copied().max().unwrap_or_default();
    println!("the demo's model decodes all-zero latents to pixel values {lowest}..={highest}");
    println!("{IMAGES} images, {LATENT_BLOCKS} latent blocks ({dim} values), latents ~ N(0, 1), seed {SEED}");
    println!("| posterior c4 scale | posterior-mean rms | corr(encoded, z) | PixCorr matched | PixCorr shifted |");
    println!("|---|---|---|---|---|");
    for scale in [1.0, 30.0, 300.0, 1000.0] {
        let model = ModelsDir::new(dir.path()).load_vdvae(Device::Cpu)?;
        tch::no_grad(|| {
            for (name, mut weight) in model.var_store().variables() {
                if name.contains(".enc.c4.") {
                    let _ = weight.g_mul_scalar_(scale);
                }
            }
        });
        let stimuli = model.decode(&generating, &decode)?;
        let encoded = model.encode(&stimuli, &encode)?;
        let rms =
            (encoded.values.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / encoded.values.len() as f64).sqrt();
        let encoded64: Vec<f64> = encoded.values.iter().map(|&v| f64::from(v)).collect();
        let (matched, shifted) = matched_and_shifted(&model.decode(&encoded, &decode)?, &stimuli)?;
        println!("| {scale} | {rms:.2e} | {:.3} | {matched:.3} | {shifted:.3} |", pearson(&encoded64, &z64)?);
    }
    Ok(())
}
