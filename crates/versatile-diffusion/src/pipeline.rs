//! The dual-guided img2img pipeline of Brain-Diffuser's stage 2: encode the init image with the
//! autoencoder, noise it to the strength's level, denoise with the dual U-Net under
//! classifier-free guidance (conditional and unconditional halves in one batched forward), decode.

use std::path::Path;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use tracing::debug;

use crate::attention::{AttentionKernel, DualMix};
use crate::checkpoint::VdWeights;
use crate::ddim::{DdimScheduler, NoiseTimestep};
use crate::error::DiffusionError;
use crate::unet::{DualUNet, UNetRun};
use crate::vae::AutoencoderKl;
use crate::weights::WeightSource;

/// A batch of RGB images, 8 bits per channel, stored `[n, height, width, 3]` row-major.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImages {
    /// Number of images.
    pub count: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// `count * height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl RgbImages {
    /// Wraps NHWC bytes, checking their length.
    pub fn new(count: usize, height: usize, width: usize, data: Vec<u8>) -> Result<Self, DiffusionError> {
        if data.len() != count * height * width * 3 {
            return Err(DiffusionError::invalid(
                "RGB images",
                format!("{} bytes for {count} images of {height}x{width}x3", data.len()),
            ));
        }
        Ok(Self { count, height, width, data })
    }

    /// The images as an NCHW f32 tensor in [-1, 1] on `device`.
    fn to_tensor(&self, device: Device) -> Tensor {
        let shape = [self.count as i64, self.height as i64, self.width as i64, 3];
        Tensor::from_slice(&self.data).reshape(shape).to_device(device).permute([0, 3, 1, 2]).to_kind(Kind::Float)
            / 255.0
            * 2.0
            - 1.0
    }
}

/// A tensor from flat f32 values (for callers that hold embeddings outside tch).
pub fn tensor_from_f32(values: &[f32], shape: &[i64]) -> Result<Tensor, DiffusionError> {
    let expected: i64 = shape.iter().product();
    if expected != values.len() as i64 {
        return Err(DiffusionError::invalid("embedding", format!("{} values for shape {shape:?}", values.len())));
    }
    Ok(Tensor::from_slice(values).reshape(shape))
}

/// The CLIP embeddings that guide generation (Versatile Diffusion's normalised CLIP ViT-L/14
/// outputs; this crate never computes them).
pub struct Conditioning {
    /// Vision embeddings `[n, 257, 768]`.
    pub vision: Tensor,
    /// Text embeddings `[n, 77, 768]`.
    pub text: Tensor,
    /// Unconditional vision embedding `[1 or n, 257, 768]` (VD: a grey image).
    pub negative_vision: Tensor,
    /// Unconditional text embedding `[1 or n, 77, 768]` (VD: the empty prompt).
    pub negative_text: Tensor,
}

/// How the init latent is taken from the autoencoder's posterior.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum PosteriorMode {
    /// A seeded sample `mean + std * noise` (Brain-Diffuser and diffusers img2img).
    #[default]
    Sample,
    /// The posterior mean (deterministic).
    Mean,
}

/// How decoded images in [-1, 1] become bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Quantize {
    /// `floor(255 x)` as torchvision's `ToPILImage` does (Brain-Diffuser).
    #[default]
    Truncate,
    /// `round(255 x)` as diffusers' image processor does.
    Round,
}

/// Settings of one img2img run. The defaults are Brain-Diffuser's.
///
/// As a configuration (serde; unknown keys are errors, missing keys take the defaults) it has the
/// keys `steps`, `strength`, `guidance_scale`, `text_weight`, `eta` and `noise_start` (the field
/// `noise_timestep`); the other fields are implementation choices and token counts that the
/// caller sets from the conditioning, never read from or written to a file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Img2ImgSettings {
    /// DDIM steps of the full schedule (50).
    pub steps: usize,
    /// Fraction of the schedule that is run (0.75: 37 of 50 steps).
    pub strength: f64,
    /// Classifier-free guidance scale (7.5); guidance is off at or below 1.
    pub guidance_scale: f64,
    /// Weight of the text transformers (0.4; vision gets 0.6).
    pub text_weight: f64,
    /// DDIM eta (0: deterministic).
    pub eta: f64,
    /// Noise level convention of the init latent (key `noise_start`).
    #[serde(rename = "noise_start")]
    pub noise_timestep: NoiseTimestep,
    /// Posterior sample or mean.
    #[serde(skip)]
    pub posterior: PosteriorMode,
    /// Conversion to bytes.
    #[serde(skip)]
    pub quantize: Quantize,
    /// Attention implementation.
    #[serde(skip)]
    pub attention: AttentionKernel,
    /// Text context length (77).
    #[serde(skip)]
    pub text_tokens: i64,
    /// Vision context length (257).
    #[serde(skip)]
    pub vision_tokens: i64,
}

impl Default for Img2ImgSettings {
    fn default() -> Self {
        Self {
            steps: 50,
            strength: 0.75,
            guidance_scale: 7.5,
            text_weight: 0.4,
            eta: 0.0,
            noise_timestep: NoiseTimestep::BrainDiffuser,
            posterior: PosteriorMode::Sample,
            quantize: Quantize::Truncate,
            attention: AttentionKernel::Fused,
            text_tokens: 77,
            vision_tokens: 257,
        }
    }
}

/// Every random draw of a run.
pub enum Noise {
    /// Drawn on the host from ChaCha8 seeded with this value, in the order: posterior noise (if
    /// sampling), init noise, then per-step noise (if eta > 0).
    Seed(u64),
    /// One seed per image of the batch: image `k` draws from ChaCha8 seeded with `seeds[k]`, in
    /// the order of [`Noise::Seed`] for one image, so that every image of a batch gets the noise
    /// it would get alone (a batch of one with `[s]` equals `Seed(s)`).
    PerImage(Vec<u64>),
    /// Supplied standard normal draws: `posterior` and `initial` `[n, 4, h/8, w/8]`, `steps`
    /// `[denoising steps, n, 4, h/8, w/8]` (needed only when eta > 0).
    Supplied {
        /// Posterior noise (needed with [`PosteriorMode::Sample`]).
        posterior: Option<Tensor>,
        /// Noise added to the init latent.
        initial: Tensor,
        /// Per-step DDIM noise.
        steps: Option<Tensor>,
    },
}

/// Reported after each denoising step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StepProgress {
    /// Steps done (1-based).
    pub step: usize,
    /// Steps in this run.
    pub total: usize,
    /// The timestep just denoised.
    pub timestep: i64,
}

/// How a batch of images goes through the U-Net and the autoencoder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BatchForward {
    /// One forward per step for the whole batch on CUDA; image by image on the CPU, whose
    /// kernels are not batch-invariant (oneDNN's convolutions: one image alone and inside a batch
    /// of 6 differ by 2e-5): there every image of a batch comes out exactly as it does alone.
    #[default]
    Auto,
    /// One forward for the whole batch on every device (on the CPU, images then equal their
    /// batch-of-one selves only to a rounding level).
    Together,
    /// Image by image on every device.
    OneByOne,
}

/// The loaded models: dual U-Net, autoencoder and scheduler.
pub struct VersatileDiffusion {
    /// The dual-guided U-Net.
    pub unet: DualUNet,
    /// The autoencoder.
    pub vae: AutoencoderKl,
    /// The DDIM scheduler.
    pub scheduler: DdimScheduler,
    device: Device,
    batch_forward: BatchForward,
}

fn standard_normal(rng: &mut ChaCha8Rng, shape: &[i64]) -> Tensor {
    let n: i64 = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Tensor::from_slice(&values).reshape(shape)
}

impl VersatileDiffusion {
    /// Builds the models from loaded weights on `device`, the U-Net in `unet_kind` and the
    /// autoencoder in `vae_kind` (f32 on CPU; f16 or bf16 on CUDA). Every missing, unexpected or
    /// mis-shaped key is reported by name.
    pub fn from_weights(
        weights: VdWeights,
        device: Device,
        unet_kind: Kind,
        vae_kind: Kind,
    ) -> Result<Self, DiffusionError> {
        let VdWeights { unet_config, vae_config, scheduler_config, unet, vae, origin, .. } = weights;
        let source = WeightSource::from_state_dict(unet, format!("{origin} (U-Net)"), device, unet_kind);
        let unet = DualUNet::new(&unet_config, &source)?;
        source.finish("dual U-Net")?;
        let source = WeightSource::from_state_dict(vae, format!("{origin} (VAE)"), device, vae_kind);
        let vae = AutoencoderKl::new(&vae_config, &source)?;
        source.finish("AutoencoderKL")?;
        Ok(Self {
            unet,
            vae,
            scheduler: DdimScheduler::new(scheduler_config)?,
            device,
            batch_forward: BatchForward::Auto,
        })
    }

    /// Assembles already-built models that live on `device`.
    pub fn from_parts(unet: DualUNet, vae: AutoencoderKl, scheduler: DdimScheduler, device: Device) -> Self {
        Self { unet, vae, scheduler, device, batch_forward: BatchForward::Auto }
    }

    /// The models with another way of running a batch (default [`BatchForward::Auto`]).
    pub fn with_batch_forward(mut self, batch_forward: BatchForward) -> Self {
        self.batch_forward = batch_forward;
        self
    }

    /// Whether a batch of `n` images runs image by image.
    fn one_by_one(&self, n: i64) -> bool {
        n > 1
            && match self.batch_forward {
                BatchForward::Auto => self.device == Device::Cpu,
                BatchForward::Together => false,
                BatchForward::OneByOne => true,
            }
    }

    /// Loads a diffusers folder or a merged safetensors file (see [`VdWeights::open`]).
    pub fn load(path: &Path, device: Device, unet_kind: Kind, vae_kind: Kind) -> Result<Self, DiffusionError> {
        Self::from_weights(VdWeights::open(path)?, device, unet_kind, vae_kind)
    }

    /// The device the models run on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Encodes RGB images to scaled init latents (`scaling_factor * z`), in f32.
    pub fn encode_init(
        &self,
        images: &RgbImages,
        mode: PosteriorMode,
        noise: Option<&Tensor>,
    ) -> Result<Tensor, DiffusionError> {
        let pixels = images.to_tensor(self.device);
        let encode = |pixels: &Tensor, noise: Option<Tensor>| -> Result<Tensor, DiffusionError> {
            let posterior = self.vae.encode(pixels)?;
            match (mode, noise) {
                (PosteriorMode::Mean, _) => Ok(posterior.mean.shallow_clone()),
                (PosteriorMode::Sample, Some(noise)) => Ok(posterior.sample_with(&noise.to_device(self.device))),
                (PosteriorMode::Sample, None) => {
                    Err(DiffusionError::invalid("posterior", "sampling needs a noise tensor"))
                }
            }
        };
        let n = pixels.size()[0];
        let z = if self.one_by_one(n) {
            let parts = (0..n)
                .map(|k| encode(&pixels.narrow(0, k, 1), noise.map(|t| t.narrow(0, k, 1))))
                .collect::<Result<Vec<_>, _>>()?;
            Tensor::cat(&parts, 0)
        } else {
            encode(&pixels, noise.map(Tensor::shallow_clone))?
        };
        Ok(z.to_kind(Kind::Float) * self.vae.config().scaling_factor)
    }

    /// Decodes scaled latents to images in about [-1, 1] (f32 NCHW).
    pub fn decode_latents(&self, latents: &Tensor) -> Result<Tensor, DiffusionError> {
        let n = latents.size().first().copied().unwrap_or(1);
        let decode = |z: &Tensor| -> Result<Tensor, DiffusionError> {
            Ok(self.vae.decode(&(z / self.vae.config().scaling_factor))?.to_kind(Kind::Float))
        };
        if self.one_by_one(n) {
            let parts = (0..n).map(|k| decode(&latents.narrow(0, k, 1))).collect::<Result<Vec<_>, _>>()?;
            return Ok(Tensor::cat(&parts, 0));
        }
        decode(latents)
    }

    /// Converts decoded images in [-1, 1] to bytes.
    pub fn to_rgb(decoded: &Tensor, quantize: Quantize) -> Result<RgbImages, DiffusionError> {
        let scaled = ((decoded / 2.0 + 0.5).clamp(0.0, 1.0) * 255.0).to_kind(Kind::Float);
        let scaled = if quantize == Quantize::Round { scaled.round() } else { scaled };
        let bytes = scaled.to_kind(Kind::Uint8).permute([0, 2, 3, 1]).contiguous().to_device(Device::Cpu);
        let s = bytes.size();
        let data = Vec::<u8>::try_from(bytes.flatten(0, -1))?;
        RgbImages::new(s[0] as usize, s[1] as usize, s[2] as usize, data)
    }

    /// The denoising loop from scaled init latents `z0` `[n, 4, h, w]`; returns the final latents.
    ///
    /// Everything the loop needs (timestep features, contexts, step noise, coefficients) is
    /// prepared before it, so the loop only queues device work: no value is read back to the host.
    pub fn denoise(
        &self,
        z0: &Tensor,
        cond: &Conditioning,
        settings: &Img2ImgSettings,
        initial_noise: &Tensor,
        step_noise: Option<&Tensor>,
        progress: &mut dyn FnMut(StepProgress),
    ) -> Result<Tensor, DiffusionError> {
        let schedule = self.scheduler.img2img(settings.steps, settings.strength, settings.noise_timestep)?;
        let n = z0.size()[0];
        let guidance = settings.guidance_scale > 1.0;
        let context = self.context(cond, n, guidance)?;
        let coefficients = schedule
            .timesteps
            .iter()
            .map(|&t| self.scheduler.step_coefficients(t, settings.steps, settings.eta))
            .collect::<Result<Vec<_>, _>>()?;
        let step_noise = match (settings.eta > 0.0, step_noise) {
            (false, _) => None,
            (true, Some(noise)) => Some(noise.to_device(self.device).to_kind(Kind::Float)),
            (true, None) => return Err(DiffusionError::invalid("DDIM eta", "eta > 0 needs step noise")),
        };
        let timesteps = Tensor::from_slice(&schedule.timesteps).to_device(self.device);
        let features = self.unet.timestep_features(&timesteps);
        let run = UNetRun {
            mix: DualMix {
                text_weight: settings.text_weight,
                text_tokens: settings.text_tokens,
                vision_tokens: settings.vision_tokens,
            },
            attention: settings.attention,
        };
        let z0 = z0.to_device(self.device).to_kind(Kind::Float);
        let mut latents =
            self.scheduler.add_noise(&z0, &initial_noise.to_device(self.device), schedule.noise_timestep)?;
        let total = schedule.timesteps.len();
        for (i, (&t, c)) in schedule.timesteps.iter().zip(&coefficients).enumerate() {
            let feature = features.get(i as i64).unsqueeze(0);
            // The unconditional and conditional halves of each image go through one forward.
            let eps_of = |latents: &Tensor, context: &Tensor| -> Result<Tensor, DiffusionError> {
                Ok(if guidance {
                    let input = Tensor::cat(&[latents, latents], 0);
                    let both = self.unet.forward_with_features(&input, &feature, context, &run)?.to_kind(Kind::Float);
                    let halves = both.chunk(2, 0);
                    &halves[0] + (&halves[1] - &halves[0]) * settings.guidance_scale
                } else {
                    self.unet.forward_with_features(latents, &feature, context, &run)?.to_kind(Kind::Float)
                })
            };
            let eps = if self.one_by_one(n) {
                let parts = (0..n)
                    .map(|k| {
                        let rows = match guidance {
                            true => Tensor::cat(&[context.narrow(0, k, 1), context.narrow(0, n + k, 1)], 0),
                            false => context.narrow(0, k, 1),
                        };
                        eps_of(&latents.narrow(0, k, 1), &rows)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Tensor::cat(&parts, 0)
            } else {
                eps_of(&latents, &context)?
            };
            latents = &latents * c.x_coef + eps * c.eps_coef;
            if let Some(noise) = &step_noise {
                latents += noise.get(i as i64) * c.noise_std;
            }
            debug!(step = i + 1, total, timestep = t, "denoised");
            progress(StepProgress { step: i + 1, total, timestep: t });
        }
        Ok(latents)
    }

    /// The batched U-Net context: `[uncond; cond]` (2n rows) with guidance, `cond` (n rows)
    /// without; each row is `cat(text, vision)` along the tokens, as diffusers orders them.
    fn context(&self, cond: &Conditioning, n: i64, guidance: bool) -> Result<Tensor, DiffusionError> {
        let dim = self.unet.config().cross_attention_dim;
        let check = |what: &str, t: &Tensor, tokens: Option<i64>, rows: &[i64]| -> Result<(), DiffusionError> {
            let s = t.size();
            let ok = s.len() == 3 && rows.contains(&s[0]) && tokens.is_none_or(|k| s[1] == k) && s[2] == dim;
            if ok {
                Ok(())
            } else {
                Err(DiffusionError::invalid(what, format!("shape {s:?}, expected [{rows:?}, tokens, {dim}]")))
            }
        };
        check("vision embeddings", &cond.vision, None, &[n])?;
        check("text embeddings", &cond.text, None, &[n])?;
        check("negative vision embedding", &cond.negative_vision, Some(cond.vision.size()[1]), &[1, n])?;
        check("negative text embedding", &cond.negative_text, Some(cond.text.size()[1]), &[1, n])?;
        let kind = self.unet.kind();
        let prep = |t: &Tensor| t.to_device(self.device).to_kind(kind);
        let positive = Tensor::cat(&[prep(&cond.text), prep(&cond.vision)], 1);
        if !guidance {
            return Ok(positive);
        }
        let negative = Tensor::cat(&[prep(&cond.negative_text), prep(&cond.negative_vision)], 1);
        let negative = negative.expand([n, -1, -1], false);
        Ok(Tensor::cat(&[&negative, &positive], 0))
    }

    /// The whole img2img run: init images (sides multiples of the autoencoder's downscale, 512x512
    /// for VD) plus embeddings -> generated images of the same size.
    pub fn img2img(
        &self,
        init: &RgbImages,
        cond: &Conditioning,
        settings: &Img2ImgSettings,
        noise: Noise,
        progress: &mut dyn FnMut(StepProgress),
    ) -> Result<RgbImages, DiffusionError> {
        let f = self.vae.config().downscale() as usize;
        let latent_shape =
            [init.count as i64, self.vae.config().latent_channels, (init.height / f) as i64, (init.width / f) as i64];
        let denoise_steps =
            self.scheduler.img2img(settings.steps, settings.strength, settings.noise_timestep)?.timesteps.len();
        let sample = settings.posterior == PosteriorMode::Sample;
        let (posterior, initial, steps) = match noise {
            Noise::Seed(seed) => {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let posterior = sample.then(|| standard_normal(&mut rng, &latent_shape));
                let initial = standard_normal(&mut rng, &latent_shape);
                let mut step_shape = vec![denoise_steps as i64];
                step_shape.extend_from_slice(&latent_shape);
                let steps = (settings.eta > 0.0).then(|| standard_normal(&mut rng, &step_shape));
                (posterior, initial, steps)
            }
            Noise::PerImage(seeds) => {
                if seeds.len() != init.count {
                    return Err(DiffusionError::invalid(
                        "noise seeds",
                        format!("{} seeds for {} images", seeds.len(), init.count),
                    ));
                }
                let mut one = latent_shape;
                one[0] = 1;
                let mut one_step = vec![denoise_steps as i64];
                one_step.extend_from_slice(&one);
                let (mut posterior, mut initial, mut steps) = (Vec::new(), Vec::new(), Vec::new());
                for &seed in &seeds {
                    let mut rng = ChaCha8Rng::seed_from_u64(seed);
                    if sample {
                        posterior.push(standard_normal(&mut rng, &one));
                    }
                    initial.push(standard_normal(&mut rng, &one));
                    if settings.eta > 0.0 {
                        steps.push(standard_normal(&mut rng, &one_step));
                    }
                }
                (
                    sample.then(|| Tensor::cat(&posterior, 0)),
                    Tensor::cat(&initial, 0),
                    (settings.eta > 0.0).then(|| Tensor::cat(&steps, 1)),
                )
            }
            Noise::Supplied { posterior, initial, steps } => (posterior, initial, steps),
        };
        let z0 = self.encode_init(init, settings.posterior, posterior.as_ref())?;
        if initial.size() != z0.size() {
            return Err(DiffusionError::invalid(
                "initial noise",
                format!("shape {:?}, expected {:?}", initial.size(), z0.size()),
            ));
        }
        let latents = self.denoise(&z0, cond, settings, &initial, steps.as_ref(), progress)?;
        Self::to_rgb(&self.decode_latents(&latents)?, settings.quantize)
    }
}
