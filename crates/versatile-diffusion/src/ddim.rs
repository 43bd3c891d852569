//! The DDIM sampler as diffusers' `DDIMScheduler` computes it (epsilon prediction, "leading"
//! timestep spacing, no clipping), plus the img2img start logic and Brain-Diffuser's noise-level
//! convention.

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};

use crate::config::SchedulerConfig;
use crate::error::DiffusionError;

/// At which timestep an img2img run noises the encoded init image. In configuration files
/// (serde): `"reference"` (also `"brain-diffuser"`) or `"consistent"`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseTimestep {
    /// Brain-Diffuser / CompVis img2img: the latent is noised one DDIM step above the first step
    /// that is denoised (strength 0.75 with 50 steps: noise at t = 741, denoise from 721). This
    /// reproduces the published numbers (the reference code's off-by-one).
    #[default]
    #[serde(rename = "reference", alias = "brain-diffuser")]
    BrainDiffuser,
    /// diffusers img2img: noised at the first denoised timestep (721 for both).
    Consistent,
}

/// The timesteps of one img2img run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Img2ImgSchedule {
    /// The timestep whose noise level is added to the init latent.
    pub noise_timestep: i64,
    /// The timesteps denoised, in order (e.g. 721, 701, ..., 1).
    pub timesteps: Vec<i64>,
}

/// The per-step coefficients of `x_prev = x_coef * x + eps_coef * eps + noise_std * noise`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StepCoefficients {
    /// Coefficient of the current sample.
    pub x_coef: f64,
    /// Coefficient of the predicted noise.
    pub eps_coef: f64,
    /// Standard deviation of the fresh noise (0 when eta = 0).
    pub noise_std: f64,
}

/// DDIM with diffusers' scaled-linear schedule and timestep rules.
#[derive(Clone, Debug)]
pub struct DdimScheduler {
    config: SchedulerConfig,
    alphas_cumprod: Vec<f32>,
}

impl DdimScheduler {
    /// Builds the schedule. Betas and their cumulative product are computed in f32 by libtorch on
    /// the CPU, exactly as diffusers does (`linspace(sqrt(b0), sqrt(b1), n)^2`, `cumprod`).
    pub fn new(config: SchedulerConfig) -> Result<Self, DiffusionError> {
        config.validate()?;
        let n = config.num_train_timesteps;
        let opts = (Kind::Float, Device::Cpu);
        let betas = match config.beta_schedule.as_str() {
            "scaled_linear" => Tensor::linspace(config.beta_start.sqrt(), config.beta_end.sqrt(), n, opts).square(),
            _ => Tensor::linspace(config.beta_start, config.beta_end, n, opts),
        };
        let alphas_cumprod = (betas.neg() + 1.0).cumprod(0, Kind::Float);
        let alphas_cumprod = Vec::<f32>::try_from(&alphas_cumprod)?;
        Ok(Self { config, alphas_cumprod })
    }

    /// The configuration.
    pub fn config(&self) -> &SchedulerConfig {
        &self.config
    }

    /// The cumulative products of (1 - beta) for the training timesteps 0..n.
    pub fn alphas_cumprod(&self) -> &[f32] {
        &self.alphas_cumprod
    }

    /// alpha-bar at `timestep`; a negative timestep means "after the last step", which is 1 or
    /// alpha-bar_0 depending on `set_alpha_to_one`.
    pub fn alpha_bar(&self, timestep: i64) -> Result<f64, DiffusionError> {
        if timestep < 0 {
            return Ok(if self.config.set_alpha_to_one { 1.0 } else { self.alphas_cumprod[0] as f64 });
        }
        self.alphas_cumprod.get(timestep as usize).map(|&a| a as f64).ok_or_else(|| {
            DiffusionError::invalid(
                "timestep",
                format!("{timestep} is beyond the {} training steps", self.config.num_train_timesteps),
            )
        })
    }

    fn step_ratio(&self, steps: usize) -> Result<i64, DiffusionError> {
        let n = self.config.num_train_timesteps;
        if steps == 0 || steps as i64 > n {
            return Err(DiffusionError::invalid("inference steps", format!("{steps}, expected 1..={n}")));
        }
        Ok(n / steps as i64)
    }

    /// The inference timesteps, descending ("leading" spacing: `k * (n / steps) + steps_offset`).
    pub fn timesteps(&self, steps: usize) -> Result<Vec<i64>, DiffusionError> {
        let ratio = self.step_ratio(steps)?;
        Ok((0..steps as i64).rev().map(|k| k * ratio + self.config.steps_offset).collect())
    }

    /// The img2img timesteps for `strength` as diffusers' img2img pipelines compute them
    /// (`init = min(int(steps * strength), steps)`, skip the first `steps - init`), and the
    /// timestep at which the init latent is noised, per `noise`.
    pub fn img2img(
        &self,
        steps: usize,
        strength: f64,
        noise: NoiseTimestep,
    ) -> Result<Img2ImgSchedule, DiffusionError> {
        if !(0.0..=1.0).contains(&strength) {
            return Err(DiffusionError::invalid("strength", format!("{strength} is outside [0, 1]")));
        }
        let all = self.timesteps(steps)?;
        let init = ((steps as f64 * strength) as usize).min(steps);
        if init == 0 {
            return Err(DiffusionError::invalid("strength", format!("{strength} with {steps} steps denoises nothing")));
        }
        let start = steps - init;
        let noise_timestep = match noise {
            NoiseTimestep::Consistent => all[start],
            NoiseTimestep::BrainDiffuser if start == 0 => {
                return Err(DiffusionError::invalid(
                    "strength",
                    format!(
                        "{strength}: the Brain-Diffuser noise convention needs a timestep above {} (use strength < 1 or NoiseTimestep::Consistent)",
                        all[0]
                    ),
                ));
            }
            NoiseTimestep::BrainDiffuser => all[start - 1],
        };
        Ok(Img2ImgSchedule { noise_timestep, timesteps: all[start..].to_vec() })
    }

    /// The coefficients of the DDIM update from `timestep` in a run of `steps` steps with `eta`.
    pub fn step_coefficients(&self, timestep: i64, steps: usize, eta: f64) -> Result<StepCoefficients, DiffusionError> {
        let prev = timestep - self.step_ratio(steps)?;
        let a_t = self.alpha_bar(timestep)?;
        let a_prev = self.alpha_bar(prev)?;
        let beta_t = 1.0 - a_t;
        let variance = (1.0 - a_prev) / beta_t * (1.0 - a_t / a_prev);
        let std = eta * variance.sqrt();
        // x0 = (x - sqrt(beta_t) eps) / sqrt(a_t);  x_prev = sqrt(a_prev) x0 + sqrt(1 - a_prev - std^2) eps
        let x_coef = a_prev.sqrt() / a_t.sqrt();
        let eps_coef = (1.0 - a_prev - std * std).sqrt() - a_prev.sqrt() * beta_t.sqrt() / a_t.sqrt();
        Ok(StepCoefficients { x_coef, eps_coef, noise_std: std })
    }

    /// One DDIM step: the sample at the previous timestep. `noise` (a standard normal draw of the
    /// sample's shape) is required when `eta > 0`.
    pub fn step(
        &self,
        eps: &Tensor,
        timestep: i64,
        sample: &Tensor,
        steps: usize,
        eta: f64,
        noise: Option<&Tensor>,
    ) -> Result<Tensor, DiffusionError> {
        let c = self.step_coefficients(timestep, steps, eta)?;
        let out = sample * c.x_coef + eps * c.eps_coef;
        match (c.noise_std > 0.0, noise) {
            (false, _) => Ok(out),
            (true, Some(noise)) => Ok(out + noise * c.noise_std),
            (true, None) => Err(DiffusionError::invalid("DDIM step", format!("eta {eta} > 0 needs a noise tensor"))),
        }
    }

    /// `sqrt(a_t) x0 + sqrt(1 - a_t) noise` (the forward process at `timestep`).
    pub fn add_noise(&self, x0: &Tensor, noise: &Tensor, timestep: i64) -> Result<Tensor, DiffusionError> {
        let a = self.alpha_bar(timestep)?;
        if timestep < 0 {
            return Err(DiffusionError::invalid("timestep", format!("{timestep} is negative")));
        }
        Ok(x0 * a.sqrt() + noise * (1.0 - a).sqrt())
    }
}
