//! The diffusers `config.json` files of the U-Net, the autoencoder and the scheduler, read with
//! diffusers' defaults for absent keys, and checked for the options this crate implements.

use std::path::Path;

use serde::Deserialize;

use crate::error::DiffusionError;

/// An integer or a per-block list, as diffusers allows for `attention_head_dim`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PerBlock {
    /// The same value for every block.
    One(i64),
    /// One value per down block.
    Each(Vec<i64>),
}

impl PerBlock {
    fn get(&self, block: usize) -> i64 {
        match self {
            PerBlock::One(v) => *v,
            PerBlock::Each(v) => v.get(block).or(v.last()).copied().unwrap_or(1),
        }
    }
}

fn default_groups() -> i64 {
    32
}
fn default_eps() -> f64 {
    1e-5
}
fn default_true() -> bool {
    true
}
fn default_one() -> f64 {
    1.0
}
fn default_one_i() -> i64 {
    1
}
fn default_act() -> String {
    "silu".into()
}
fn default_scaling() -> f64 {
    0.18215
}
fn default_shift() -> String {
    "default".into()
}

/// `UNet2DConditionModel` configuration (diffusers `image_unet/config.json`).
#[derive(Clone, Debug, Deserialize)]
pub struct UNetConfig {
    /// Latent channels in (4).
    pub in_channels: i64,
    /// Latent channels out (4).
    pub out_channels: i64,
    /// Channels per resolution level (320, 640, 1280, 1280).
    pub block_out_channels: Vec<i64>,
    /// Resnets per down block (up blocks have one more).
    pub layers_per_block: i64,
    /// diffusers reads this as the *number of heads* when `num_attention_heads` is absent (VD: 8).
    #[serde(default)]
    pub attention_head_dim: Option<PerBlock>,
    /// Number of heads, when given explicitly.
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    /// Context channels of the cross-attention (768).
    pub cross_attention_dim: i64,
    /// GroupNorm groups (32).
    #[serde(default = "default_groups")]
    pub norm_num_groups: i64,
    /// GroupNorm epsilon of the resnets and the output norm (1e-5).
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    /// Cosine half first in the timestep embedding (true for VD).
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding (0 for VD).
    #[serde(default)]
    pub freq_shift: f64,
    /// Down block kinds: `CrossAttnDownBlock2D` or `DownBlock2D`.
    pub down_block_types: Vec<String>,
    /// Up block kinds: `UpBlock2D` or `CrossAttnUpBlock2D`.
    pub up_block_types: Vec<String>,
    /// Padding of the strided downsampling convolutions (1).
    #[serde(default = "default_one_i")]
    pub downsample_padding: i64,
    /// Output scale of the mid block resnets (1).
    #[serde(default = "default_one")]
    pub mid_block_scale_factor: f64,
    /// Activation (only `silu` is implemented).
    #[serde(default = "default_act")]
    pub act_fn: String,
    /// Linear instead of 1x1-convolution projections in the transformers (not used by VD).
    #[serde(default)]
    pub use_linear_projection: bool,
    /// Transformer blocks per attention position (1).
    #[serde(default)]
    pub transformer_layers_per_block: Option<PerBlock>,
    /// Time-embedding injection mode (only `default` is implemented).
    #[serde(default = "default_shift")]
    pub resnet_time_scale_shift: String,
    /// Cross-attention only, no self-attention (not used by VD).
    #[serde(default)]
    pub only_cross_attention: serde_json::Value,
    /// Softmax upcast flag of old SD-2 checkpoints (not used by VD).
    #[serde(default)]
    pub upcast_attention: bool,
    /// Input centring (not used by VD).
    #[serde(default)]
    pub center_input_sample: bool,
}

impl UNetConfig {
    /// Reads a diffusers `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| with_path(e, path))?;
        Ok(config)
    }

    /// Number of attention heads at down-block `block` (diffusers: `num_attention_heads or attention_head_dim`).
    pub fn heads(&self, block: usize) -> i64 {
        self.num_attention_heads.as_ref().or(self.attention_head_dim.as_ref()).map_or(8, |h| h.get(block))
    }

    /// Transformer blocks per attention at down-block `block`.
    pub fn transformer_layers(&self, block: usize) -> i64 {
        self.transformer_layers_per_block.as_ref().map_or(1, |l| l.get(block))
    }

    /// Time-embedding width (4 x the first block's channels).
    pub fn time_embed_dim(&self) -> i64 {
        self.block_out_channels[0] * 4
    }

    /// Checks that the configuration uses only what this crate implements.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let n = self.block_out_channels.len();
        let bad = |what: &str, message: String| Err(DiffusionError::invalid(format!("U-Net config `{what}`"), message));
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(
                "block_out_channels",
                format!(
                    "{} levels but {} down and {} up block types",
                    n,
                    self.down_block_types.len(),
                    self.up_block_types.len()
                ),
            );
        }
        for (i, kind) in self.down_block_types.iter().enumerate() {
            if kind != "CrossAttnDownBlock2D" && kind != "DownBlock2D" {
                return bad(
                    "down_block_types",
                    format!("block {i} is `{kind}`, expected CrossAttnDownBlock2D or DownBlock2D"),
                );
            }
        }
        for (i, kind) in self.up_block_types.iter().enumerate() {
            if kind != "CrossAttnUpBlock2D" && kind != "UpBlock2D" {
                return bad(
                    "up_block_types",
                    format!("block {i} is `{kind}`, expected CrossAttnUpBlock2D or UpBlock2D"),
                );
            }
        }
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            let heads = self.heads(i);
            if heads <= 0 || c % heads != 0 || c % self.norm_num_groups != 0 {
                return bad(
                    "block_out_channels",
                    format!(
                        "level {i}: {c} channels must divide into {heads} heads and {} groups",
                        self.norm_num_groups
                    ),
                );
            }
        }
        if self.act_fn != "silu" {
            return bad("act_fn", format!("`{}`, only `silu` is implemented", self.act_fn));
        }
        if self.use_linear_projection {
            return bad("use_linear_projection", "true is not implemented (VD uses 1x1 convolutions)".into());
        }
        if self.resnet_time_scale_shift != "default" {
            return bad("resnet_time_scale_shift", format!("`{}`, only `default`", self.resnet_time_scale_shift));
        }
        if self.only_cross_attention.as_bool() == Some(true) || self.upcast_attention || self.center_input_sample {
            return bad("only_cross_attention/upcast_attention/center_input_sample", "must be false".into());
        }
        Ok(())
    }
}

/// `AutoencoderKL` configuration (diffusers `vae/config.json`).
#[derive(Clone, Debug, Deserialize)]
pub struct VaeConfig {
    /// Image channels in (3).
    #[serde(default = "three")]
    pub in_channels: i64,
    /// Image channels out (3).
    #[serde(default = "three")]
    pub out_channels: i64,
    /// Latent channels (4).
    #[serde(default = "four")]
    pub latent_channels: i64,
    /// Channels per level (128, 256, 512, 512).
    pub block_out_channels: Vec<i64>,
    /// Resnets per encoder block (decoder blocks have one more).
    #[serde(default = "default_one_i")]
    pub layers_per_block: i64,
    /// GroupNorm groups (32).
    #[serde(default = "default_groups")]
    pub norm_num_groups: i64,
    /// Activation (only `silu`).
    #[serde(default = "default_act")]
    pub act_fn: String,
    /// Latent scaling factor; absent in VD's config, so diffusers' default 0.18215 applies.
    #[serde(default = "default_scaling")]
    pub scaling_factor: f64,
    /// Encoder block kinds (`DownEncoderBlock2D`).
    pub down_block_types: Vec<String>,
    /// Decoder block kinds (`UpDecoderBlock2D`).
    pub up_block_types: Vec<String>,
    /// Attention in the mid blocks (true).
    #[serde(default = "default_true")]
    pub mid_block_add_attention: bool,
    /// 1x1 `quant_conv` after the encoder (true).
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    /// 1x1 `post_quant_conv` before the decoder (true).
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
}

fn three() -> i64 {
    3
}
fn four() -> i64 {
    4
}

impl VaeConfig {
    /// Reads a diffusers `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| with_path(e, path))?;
        Ok(config)
    }

    /// Image pixels per latent pixel along one side (8 for kl-f8).
    pub fn downscale(&self) -> i64 {
        1 << (self.block_out_channels.len() - 1)
    }

    /// Checks that the configuration uses only what this crate implements.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let n = self.block_out_channels.len();
        let bad = |what: &str, message: String| Err(DiffusionError::invalid(format!("VAE config `{what}`"), message));
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad("block_out_channels", format!("{n} levels but the block type lists differ in length"));
        }
        if self.down_block_types.iter().any(|k| k != "DownEncoderBlock2D") {
            return bad("down_block_types", format!("{:?}, only DownEncoderBlock2D", self.down_block_types));
        }
        if self.up_block_types.iter().any(|k| k != "UpDecoderBlock2D") {
            return bad("up_block_types", format!("{:?}, only UpDecoderBlock2D", self.up_block_types));
        }
        if self.block_out_channels.iter().any(|c| c % self.norm_num_groups != 0) {
            return bad(
                "norm_num_groups",
                format!("{} does not divide {:?}", self.norm_num_groups, self.block_out_channels),
            );
        }
        if self.act_fn != "silu" || !self.mid_block_add_attention || !self.use_quant_conv || !self.use_post_quant_conv {
            return bad(
                "act_fn/mid_block_add_attention/use_*quant_conv",
                "only silu with attention and both quant convs".into(),
            );
        }
        Ok(())
    }
}

fn default_train_steps() -> i64 {
    1000
}
fn default_beta_start() -> f64 {
    0.0001
}
fn default_beta_end() -> f64 {
    0.02
}
fn default_schedule() -> String {
    "linear".into()
}
fn default_prediction() -> String {
    "epsilon".into()
}
fn default_spacing() -> String {
    "leading".into()
}

/// `DDIMScheduler` configuration (diffusers `scheduler/scheduler_config.json`).
#[derive(Clone, Debug, Deserialize, PartialEq)]
pub struct SchedulerConfig {
    /// Training diffusion steps (1000).
    #[serde(default = "default_train_steps")]
    pub num_train_timesteps: i64,
    /// First beta (VD: 0.00085).
    #[serde(default = "default_beta_start")]
    pub beta_start: f64,
    /// Last beta (VD: 0.012).
    #[serde(default = "default_beta_end")]
    pub beta_end: f64,
    /// `scaled_linear` (VD) or `linear`.
    #[serde(default = "default_schedule")]
    pub beta_schedule: String,
    /// Whether the step after t = 0 uses alpha-bar 1 (VD: false, so alpha-bar_0).
    #[serde(default = "default_true")]
    pub set_alpha_to_one: bool,
    /// Added to every inference timestep (VD: 1).
    #[serde(default)]
    pub steps_offset: i64,
    /// Clipping of the predicted x0 (must be false).
    #[serde(default = "default_true")]
    pub clip_sample: bool,
    /// What the network predicts (only `epsilon`).
    #[serde(default = "default_prediction")]
    pub prediction_type: String,
    /// Inference timestep spacing (only `leading`, diffusers' default).
    #[serde(default = "default_spacing")]
    pub timestep_spacing: String,
    /// Dynamic thresholding (must be false).
    #[serde(default)]
    pub thresholding: bool,
    /// Explicit betas (must be null).
    #[serde(default)]
    pub trained_betas: Option<serde_json::Value>,
}

impl SchedulerConfig {
    /// Versatile Diffusion's `scheduler_config.json` values.
    pub fn versatile_diffusion() -> Self {
        Self {
            num_train_timesteps: 1000,
            beta_start: 0.00085,
            beta_end: 0.012,
            beta_schedule: "scaled_linear".into(),
            set_alpha_to_one: false,
            steps_offset: 1,
            clip_sample: false,
            prediction_type: "epsilon".into(),
            timestep_spacing: "leading".into(),
            thresholding: false,
            trained_betas: None,
        }
    }

    /// Reads a diffusers `scheduler_config.json`.
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| with_path(e, path))?;
        Ok(config)
    }

    /// Checks that the configuration uses only what this crate implements.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let bad =
            |what: &str, message: String| Err(DiffusionError::invalid(format!("scheduler config `{what}`"), message));
        if self.beta_schedule != "scaled_linear" && self.beta_schedule != "linear" {
            return bad("beta_schedule", format!("`{}`, expected scaled_linear or linear", self.beta_schedule));
        }
        if self.clip_sample || self.thresholding {
            return bad("clip_sample/thresholding", "must be false".into());
        }
        if self.prediction_type != "epsilon" {
            return bad("prediction_type", format!("`{}`, only epsilon", self.prediction_type));
        }
        if self.timestep_spacing != "leading" {
            return bad("timestep_spacing", format!("`{}`, only leading", self.timestep_spacing));
        }
        if self.trained_betas.as_ref().is_some_and(|v| !v.is_null()) {
            return bad("trained_betas", "explicit betas are not supported".into());
        }
        if self.num_train_timesteps < 2 {
            return bad("num_train_timesteps", format!("{} is too small", self.num_train_timesteps));
        }
        Ok(())
    }
}

/// Parses a JSON file into `T`, naming the file on failure.
pub(crate) fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, DiffusionError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| DiffusionError::Io { path: path.to_path_buf(), source })?;
    parse_json(&text, path)
}

/// Parses JSON text into `T`; `path` names its origin in errors.
pub(crate) fn parse_json<T: for<'de> Deserialize<'de>>(text: &str, path: &Path) -> Result<T, DiffusionError> {
    serde_json::from_str(text).map_err(|e| DiffusionError::Format { path: path.to_path_buf(), message: e.to_string() })
}

fn with_path(error: DiffusionError, path: &Path) -> DiffusionError {
    match error {
        DiffusionError::Invalid { what, message } => {
            DiffusionError::Invalid { what: format!("{what} in {}", path.display()), message }
        }
        other => other,
    }
}
