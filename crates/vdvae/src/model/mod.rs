//! The VDVAE network in tch, under the official state-dict key names.

mod decoder;
pub mod dmol;
mod encoder;
mod layers;

use std::collections::BTreeMap;
use std::path::Path;

use tch::{Device, Kind, Tensor, nn};
use tracing::info;

pub use decoder::{PosteriorDraw, PosteriorPass};
pub use dmol::OutputDraw;
pub use layers::WeightInit;

use crate::checkpoint::{compare_keys, dtype_name, non_float_tensors, read_state_dict};
use crate::config::VdvaeConfig;
use crate::error::VdvaeError;
use crate::noise::NoiseSource;

/// A VDVAE: encoder, decoder and output distribution, with its parameters in a `VarStore` whose
/// variable names are exactly the keys of the official checkpoint.
pub struct Vdvae {
    config: VdvaeConfig,
    vs: nn::VarStore,
    encoder: encoder::Encoder,
    decoder: decoder::Decoder,
    kind: Kind,
    channels_last: bool,
}

impl std::fmt::Debug for Vdvae {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vdvae")
            .field("config", &self.config)
            .field("device", &self.vs.device())
            .field("kind", &self.kind)
            .finish()
    }
}

impl Vdvae {
    /// Builds the model for `config` on `device` (f32) with fresh parameters.
    pub fn new(config: &VdvaeConfig, device: Device, init: WeightInit) -> Result<Self, VdvaeError> {
        config.validate()?;
        if let WeightInit::Reference { seed } = init {
            tch::manual_seed(seed);
        }
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let encoder = encoder::Encoder::new(&root / "encoder", config, init)?;
        let decoder = decoder::Decoder::new(&root / "decoder", config, init)?;
        vs.freeze();
        Ok(Vdvae { config: config.clone(), vs, encoder, decoder, kind: Kind::Float, channels_last: false })
    }

    /// Builds the model for `config` on `device` and loads `checkpoint` into it
    /// (see [`load_weights`](Self::load_weights)).
    pub fn load(checkpoint: &Path, config: &VdvaeConfig, device: Device) -> Result<Self, VdvaeError> {
        let mut model = Self::new(config, device, WeightInit::Zeros)?;
        model.load_weights(checkpoint)?;
        Ok(model)
    }

    /// Copies the tensors of a state dict file (`torch.save`, zip or legacy, or safetensors, `module.`
    /// prefix stripped) into the model, casting f16, bf16 and f64 tensors to the model's precision.
    /// Every key, shape and dtype is checked first: on any difference nothing is copied and the
    /// error lists missing, unexpected and mis-shaped keys and tensors that are not floating point.
    pub fn load_weights(&mut self, checkpoint: &Path) -> Result<(), VdvaeError> {
        let tensors = read_state_dict(checkpoint)?;
        let found: Vec<(String, Vec<i64>)> = tensors.iter().map(|(k, t)| (k.clone(), t.size())).collect();
        let mut mismatch = compare_keys(&self.parameter_shapes(), &found);
        let mut variables = self.vs.variables();
        let dtypes: Vec<(&str, String)> = tensors
            .iter()
            .filter(|(k, _)| variables.contains_key(k))
            .map(|(k, t)| (k.as_str(), dtype_name(t.kind())))
            .collect();
        mismatch.wrong_dtype = non_float_tensors(dtypes.iter().map(|(k, d)| (*k, d.as_str())));
        if !mismatch.is_empty() {
            return Err(VdvaeError::CheckpointMismatch { path: checkpoint.to_path_buf(), mismatch });
        }
        let _guard = tch::no_grad_guard();
        for (name, tensor) in &tensors {
            if let Some(var) = variables.get_mut(name) {
                var.f_copy_(tensor)?;
            }
        }
        info!(path = %checkpoint.display(), tensors = tensors.len(), "loaded VDVAE weights");
        Ok(())
    }

    /// Names and shapes of the model's parameters, as stored in its `VarStore`, sorted by name.
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<(String, Vec<i64>)> = self.vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
        v.sort();
        v
    }

    /// Converts the parameters to `kind` (`Float`, `Double`, `Half` or `BFloat16`); inputs and
    /// noise are converted to it on the fly, the output distribution is always sampled in f32.
    pub fn set_precision(&mut self, kind: Kind) -> Result<(), VdvaeError> {
        match kind {
            Kind::Float => self.vs.float(),
            Kind::Double => self.vs.double(),
            Kind::Half => self.vs.half(),
            Kind::BFloat16 => self.vs.bfloat16(),
            other => {
                return Err(VdvaeError::Invalid {
                    what: "precision".into(),
                    message: format!("{other:?} is not a floating-point kind"),
                });
            }
        }
        self.kind = kind;
        Ok(())
    }

    /// Stores the 4-d parameters in channels-last (NHWC) memory order, or back in the default
    /// NCHW order. libtorch then runs the convolutions with its channels-last kernels, which on
    /// CPUs are much faster for this model's 1x1 convolutions; results agree with the default
    /// layout to float rounding (the parity replay passes in both).
    pub fn set_channels_last(&mut self, channels_last: bool) {
        let _guard = tch::no_grad_guard();
        for (_, mut var) in self.vs.variables() {
            if var.dim() == 4 {
                let data = if channels_last {
                    var.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
                } else {
                    var.contiguous()
                };
                var.set_data(&data);
            }
        }
        self.channels_last = channels_last;
    }

    /// Whether parameters are stored channels-last (see [`set_channels_last`](Self::set_channels_last)).
    pub fn channels_last(&self) -> bool {
        self.channels_last
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &VdvaeConfig {
        &self.config
    }

    /// Device of the parameters.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Floating-point kind of the parameters.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// The parameter store (names = official checkpoint keys).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Number of decoder blocks.
    pub fn n_decoder_blocks(&self) -> usize {
        self.decoder.n_blocks()
    }

    /// Encoder activations `{r: [B, width, r, r]}` of a normalised NHWC batch `[B, S, S, 3]`.
    pub fn encoder_activations(&self, x_nhwc: &Tensor) -> Result<BTreeMap<i64, Tensor>, VdvaeError> {
        let s = self.config.image_size;
        let size = x_nhwc.size();
        if size.len() != 4 || size[1] != s || size[2] != s || size[3] != 3 {
            return Err(VdvaeError::Invalid {
                what: "encoder input".into(),
                message: format!("shape {size:?}, expected [B, {s}, {s}, 3] (normalised NHWC)"),
            });
        }
        let _guard = tch::no_grad_guard();
        Ok(self.encoder.forward(&x_nhwc.to_device(self.device()).to_kind(self.kind), self.channels_last))
    }

    /// The posterior pass over the first `n_blocks` decoder blocks (all of them yield `px_z`),
    /// with optional analytic KL per block.
    pub fn posterior_pass(
        &self,
        activations: &BTreeMap<i64, Tensor>,
        n_blocks: usize,
        draw: PosteriorDraw,
        noise: &mut dyn NoiseSource,
        want_kl: bool,
    ) -> Result<PosteriorPass, VdvaeError> {
        self.check_blocks(n_blocks)?;
        let _guard = tch::no_grad_guard();
        self.decoder.posterior(activations, n_blocks, draw, noise, want_kl)
    }

    /// The generative pass for `n` images from the latents of the first blocks (`[n, zdim, r, r]`
    /// each), the remaining blocks drawn from the prior at `temperature`. Returns `px_z`
    /// `[n, width, S, S]` (after gain and bias).
    pub fn generate(
        &self,
        n: usize,
        latents: &[Tensor],
        temperature: f64,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor, VdvaeError> {
        if latents.len() > self.n_decoder_blocks() {
            self.check_blocks(latents.len())?;
        }
        if !(temperature >= 0.0 && temperature.is_finite()) {
            return Err(VdvaeError::Invalid {
                what: "temperature".into(),
                message: format!("{temperature} is not a finite non-negative number"),
            });
        }
        let _guard = tch::no_grad_guard();
        self.decoder.generate(n as i64, latents, temperature, noise)
    }

    /// Mixture-of-logistics parameters (NHWC, f32) of a decoder output.
    pub fn output_params(&self, px_z: &Tensor) -> Tensor {
        let _guard = tch::no_grad_guard();
        self.decoder.output_params(px_z)
    }

    /// Draws uint8 NHWC images `[B, S, S, 3]` from a decoder output.
    pub fn sample_output(
        &self,
        px_z: &Tensor,
        draw: OutputDraw,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor, VdvaeError> {
        let _guard = tch::no_grad_guard();
        let params = self.decoder.output_params(px_z);
        Ok(dmol::to_u8(&dmol::sample_mixture(&params, self.config.num_mixtures, draw, noise)?))
    }

    fn check_blocks(&self, n_blocks: usize) -> Result<(), VdvaeError> {
        if n_blocks == 0 || n_blocks > self.n_decoder_blocks() {
            return Err(VdvaeError::Invalid {
                what: "n_blocks".into(),
                message: format!("{n_blocks} requested; the decoder has {} blocks", self.n_decoder_blocks()),
            });
        }
        Ok(())
    }
}
