//! Replaying a reference fixture: a safetensors file written by the original VDVAE code, with the
//! configuration in its metadata (`hps`, `normalisation`, `manual_latent_blocks`), the inputs,
//! every random draw and the expected outputs. The replay runs this crate's model on the same
//! inputs and draws and reports, for each output, its error against the reference.
//!
//! Relative error of a tensor = max |ours - reference| / max |reference| (a norm-wise measure
//! that stays meaningful where individual values are near zero).

use std::collections::HashMap;
use std::path::Path;

use tch::{Device, Kind, Tensor};

use crate::config::{Normalisation, VdvaeConfig};
use crate::error::VdvaeError;
use crate::model::dmol::{sample_mixture, to_u8};
use crate::model::{OutputDraw, PosteriorDraw, Vdvae};
use crate::noise::{ExplicitNoise, GaussianDraw, UniformDraw};

/// A reference fixture: its configuration and named tensors (on the CPU).
#[derive(Debug)]
pub struct Fixture {
    /// Model configuration from the `hps` and `normalisation` metadata.
    pub config: VdvaeConfig,
    /// Number of leading decoder blocks whose latents the manual decoding was given.
    pub manual_latent_blocks: usize,
    tensors: HashMap<String, Tensor>,
}

fn fixture_error(path: &Path, message: String) -> VdvaeError {
    VdvaeError::Invalid { what: format!("fixture {}", path.display()), message }
}

impl Fixture {
    /// Reads a fixture (or a weights file carrying the same metadata) from a safetensors file.
    pub fn read(path: &Path) -> Result<Self, VdvaeError> {
        let bytes = std::fs::read(path).map_err(|source| VdvaeError::Io { path: path.to_path_buf(), error: source })?;
        let (_, header) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| fixture_error(path, e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let get = |key: &str| meta.get(key).ok_or_else(|| fixture_error(path, format!("metadata has no {key:?}")));
        let mut config = VdvaeConfig::from_hps_json(get("hps")?)?;
        if let Some(norm) = meta.get("normalisation") {
            config.normalisation = serde_json::from_str::<Normalisation>(norm)
                .map_err(|e| fixture_error(path, format!("normalisation: {e}")))?;
        }
        let manual_latent_blocks = match meta.get("manual_latent_blocks") {
            Some(v) => {
                v.parse().map_err(|_| fixture_error(path, format!("manual_latent_blocks {v:?} is not a count")))?
            }
            None => 0,
        };
        let tensors =
            Tensor::read_safetensors(path).map_err(|e| fixture_error(path, e.to_string()))?.into_iter().collect();
        Ok(Fixture { config, manual_latent_blocks, tensors })
    }

    /// The tensor stored under `name`.
    pub fn tensor(&self, name: &str) -> Result<&Tensor, VdvaeError> {
        self.tensors
            .get(name)
            .ok_or_else(|| VdvaeError::Invalid { what: "fixture".into(), message: format!("has no tensor {name:?}") })
    }

    /// Names of the stored tensors, sorted.
    pub fn names(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self.tensors.keys().map(String::as_str).collect();
        v.sort_unstable();
        v
    }
}

/// Error of one float output against the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct OutputError {
    /// Fixture name of the output.
    pub name: String,
    /// max |ours - reference|.
    pub max_abs: f64,
    /// max |ours - reference| / max |reference|.
    pub max_rel: f64,
}

/// Agreement of the uint8 image sample with the reference.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct U8Agreement {
    /// Number of values compared.
    pub total: usize,
    /// Values that differ by exactly one level where our float lies within 1e-4 (in the [-1, 1]
    /// scale) of a quantisation boundary: allowed.
    pub off_by_one_at_boundary: usize,
    /// Any other differing values: not allowed.
    pub other_mismatches: usize,
}

/// Everything a replay measured.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplayReport {
    /// Float outputs, in replay order.
    pub outputs: Vec<OutputError>,
    /// The uint8 sample.
    pub sample: U8Agreement,
}

impl ReplayReport {
    /// True when every float output is within `tolerance` (relative) and the uint8 sample agrees
    /// except for off-by-one values at boundaries.
    pub fn passes(&self, tolerance: f64) -> bool {
        self.outputs.iter().all(|o| o.max_rel <= tolerance) && self.sample.other_mismatches == 0
    }

    /// The worst relative error among the float outputs.
    pub fn worst(&self) -> Option<&OutputError> {
        self.outputs.iter().max_by(|a, b| a.max_rel.total_cmp(&b.max_rel))
    }
}

/// Compares one float tensor with the reference.
pub fn compare(name: &str, ours: &Tensor, reference: &Tensor) -> Result<OutputError, VdvaeError> {
    if ours.size() != reference.size() {
        return Err(VdvaeError::Invalid {
            what: format!("output {name}"),
            message: format!("shape {:?}, reference {:?}", ours.size(), reference.size()),
        });
    }
    let ours = ours.to_device(Device::Cpu).to_kind(Kind::Double);
    let reference = reference.to_device(Device::Cpu).to_kind(Kind::Double);
    let max_abs = (&ours - &reference).abs().max().double_value(&[]);
    let scale = reference.abs().max().double_value(&[]);
    let max_rel = if scale > 0.0 { max_abs / scale } else { max_abs };
    Ok(OutputError { name: name.to_string(), max_abs, max_rel: if max_rel.is_nan() { f64::INFINITY } else { max_rel } })
}

/// Runs `model` on the fixture's inputs and draws and compares every recorded output:
/// normalised input, encoder activations, the posterior pass (z, KL per block, px_z), decoding
/// from the first `manual_latent_blocks` posterior latents at temperatures 1 and 0.6 (when
/// recorded), the output-distribution parameters and the sampled uint8 image.
pub fn replay(model: &Vdvae, fixture: &Fixture) -> Result<ReplayReport, VdvaeError> {
    let mut outputs = Vec::new();
    let device = model.device();
    let on = |t: &Tensor| t.to_device(device);

    // Input normalisation (images already at the model's size: the resize is the identity).
    let image_u8 = fixture.tensor("input.image_u8")?;
    let norm = model.config().normalisation;
    let x = (image_u8.to_kind(Kind::Float) + (norm.shift as f32) as f64) * (norm.scale as f32) as f64;
    outputs.push(compare("input.x", &x, fixture.tensor("input.x")?)?);

    let activations = model.encoder_activations(&x)?;
    for (r, act) in &activations {
        let name = format!("encoder.act.{r}");
        if let Ok(reference) = fixture.tensor(&name) {
            outputs.push(compare(&name, act, reference)?);
        }
    }

    let n_blocks = model.n_decoder_blocks();
    let mut posterior_noise = ExplicitNoise::new();
    for i in 0..n_blocks {
        posterior_noise = posterior_noise.with_gaussian(
            GaussianDraw::Posterior,
            i,
            fixture.tensor(&format!("posterior.eps.{i}"))?.shallow_clone(),
        );
    }
    let pass = model.posterior_pass(&activations, n_blocks, PosteriorDraw::Sample, &mut posterior_noise, true)?;
    for (i, (z, kl)) in pass.z.iter().zip(&pass.kl).enumerate() {
        outputs.push(compare(&format!("posterior.z.{i}"), z, fixture.tensor(&format!("posterior.z.{i}"))?)?);
        outputs.push(compare(&format!("posterior.kl.{i}"), kl, fixture.tensor(&format!("posterior.kl.{i}"))?)?);
    }
    if let Some(px_z) = &pass.px_z {
        outputs.push(compare("posterior.px_z", px_z, fixture.tensor("posterior.px_z")?)?);
    }

    // Decoding from the reference's own posterior latents of the first blocks.
    let given: Vec<Tensor> = (0..fixture.manual_latent_blocks)
        .map(|i| fixture.tensor(&format!("posterior.z.{i}")).map(on))
        .collect::<Result<_, _>>()?;
    let batch = image_u8.size()[0] as usize;
    let mut px_z_t1 = None;
    for (prefix, temperature) in [("manual_t1", 1.0), ("manual_t06", 0.6)] {
        if fixture.tensor(&format!("{prefix}.px_z")).is_err() {
            continue;
        }
        let mut noise = ExplicitNoise::new();
        for i in fixture.manual_latent_blocks..n_blocks {
            noise = noise.with_gaussian(
                GaussianDraw::Prior,
                i,
                fixture.tensor(&format!("{prefix}.prior_eps.{i}"))?.shallow_clone(),
            );
        }
        let px_z = model.generate(batch, &given, temperature, &mut noise)?;
        outputs.push(compare(&format!("{prefix}.px_z"), &px_z, fixture.tensor(&format!("{prefix}.px_z"))?)?);
        if temperature == 1.0 {
            px_z_t1 = Some(px_z);
        }
    }

    // Output distribution of the temperature-1 decoding, then the sample.
    let mut sample = U8Agreement::default();
    if let (Some(px_z), Ok(reference_u8)) = (px_z_t1, fixture.tensor("dmol.sample_u8")) {
        let params = model.output_params(&px_z);
        outputs.push(compare("dmol.params", &params, fixture.tensor("dmol.params")?)?);
        let mut noise = ExplicitNoise::new()
            .with_uniform(UniformDraw::MixtureChoice, fixture.tensor("dmol.u_mix")?.shallow_clone())
            .with_uniform(UniformDraw::Logistic, fixture.tensor("dmol.u_logistic")?.shallow_clone());
        let _guard = tch::no_grad_guard();
        let x = sample_mixture(&params, model.config().num_mixtures, OutputDraw::Sample, &mut noise)?
            .to_device(Device::Cpu);
        sample = compare_u8(&to_u8(&x), &x, reference_u8)?;
    }
    Ok(ReplayReport { outputs, sample })
}

/// Compares our uint8 sample (and the [-1, 1] floats it came from) with the reference's.
fn compare_u8(ours: &Tensor, floats: &Tensor, reference: &Tensor) -> Result<U8Agreement, VdvaeError> {
    if ours.size() != reference.size() {
        return Err(VdvaeError::Invalid {
            what: "dmol.sample_u8".into(),
            message: format!("shape {:?}, reference {:?}", ours.size(), reference.size()),
        });
    }
    let ours = Vec::<u8>::try_from(ours.reshape([-1]))?;
    let theirs = Vec::<u8>::try_from(reference.to_device(Device::Cpu).reshape([-1]))?;
    let floats = Vec::<f32>::try_from(floats.reshape([-1]))?;
    let mut agreement = U8Agreement { total: ours.len(), ..Default::default() };
    for ((&a, &b), &x) in ours.iter().zip(&theirs).zip(&floats) {
        if a == b {
            continue;
        }
        // Levels change where (x + 1) * 127.5 crosses an integer.
        let level = (x as f64 + 1.0) * 127.5;
        let distance = (level - level.round()).abs() / 127.5;
        if a.abs_diff(b) == 1 && distance <= 1e-4 {
            agreement.off_by_one_at_boundary += 1;
        } else {
            agreement.other_mismatches += 1;
        }
    }
    Ok(agreement)
}
