//! diffusers `AutoencoderKL` (Stable Diffusion's kl-f8, used by Versatile Diffusion): encoder to a
//! diagonal Gaussian posterior, decoder from latents. Parameter names are the current diffusers
//! ones (`to_q`/`to_k`/`to_v`/`to_out.0` in the mid-block attention); see
//! [`crate::checkpoint::rename_legacy_vae_keys`] for the legacy names in VD's file.

use tch::{Kind, Tensor};

use crate::attention::{AttentionKernel, attend};
use crate::config::VaeConfig;
use crate::error::DiffusionError;
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::weights::{Manifest, Scope, WeightSource};

const EPS: f64 = 1e-6;

/// The single-head self-attention of the autoencoder's mid block, over the H*W positions.
struct MidAttention {
    group_norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
}

impl MidAttention {
    fn new(scope: &Scope, channels: i64, groups: i64) -> Self {
        Self {
            group_norm: GroupNorm::new(&scope.sub("group_norm"), groups, channels, EPS),
            to_q: Linear::new(&scope.sub("to_q"), channels, channels, true),
            to_k: Linear::new(&scope.sub("to_k"), channels, channels, true),
            to_v: Linear::new(&scope.sub("to_v"), channels, channels, true),
            to_out: Linear::new(&scope.sub("to_out").sub(0), channels, channels, true),
        }
    }

    fn forward(&self, xs: &Tensor, kernel: AttentionKernel) -> Tensor {
        let s = xs.size();
        let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
        let tokens = self.group_norm.forward(xs).reshape([b, c, h * w]).transpose(1, 2);
        let q = self.to_q.forward(&tokens);
        let k = self.to_k.forward(&tokens);
        let v = self.to_v.forward(&tokens);
        let out = self.to_out.forward(&attend(&q, &k, &v, 1, kernel));
        out.transpose(1, 2).reshape([b, c, h, w]) + xs
    }
}

struct MidBlock {
    resnet_0: ResnetBlock2D,
    attention: MidAttention,
    resnet_1: ResnetBlock2D,
}

impl MidBlock {
    fn new(scope: &Scope, channels: i64, groups: i64) -> Self {
        let r = scope.sub("resnets");
        Self {
            resnet_0: ResnetBlock2D::new(&r.sub(0), channels, channels, None, groups, EPS, 1.0),
            attention: MidAttention::new(&scope.sub("attentions").sub(0), channels, groups),
            resnet_1: ResnetBlock2D::new(&r.sub(1), channels, channels, None, groups, EPS, 1.0),
        }
    }

    fn forward(&self, xs: &Tensor, kernel: AttentionKernel) -> Tensor {
        let h = self.resnet_0.forward(xs, None);
        let h = self.attention.forward(&h, kernel);
        self.resnet_1.forward(&h, None)
    }
}

/// The posterior `N(mean, exp(logvar))` of one encoded batch (logvar clamped to [-30, 20]).
pub struct Posterior {
    /// Mean `[n, latent_channels, h/8, w/8]`.
    pub mean: Tensor,
    /// Log-variance, clamped as diffusers' `DiagonalGaussianDistribution` does.
    pub logvar: Tensor,
}

impl Posterior {
    /// Standard deviation `exp(logvar / 2)`.
    pub fn std(&self) -> Tensor {
        (&self.logvar * 0.5).exp()
    }

    /// `mean + std * noise`, with `noise` a standard normal draw of the mean's shape.
    pub fn sample_with(&self, noise: &Tensor) -> Tensor {
        &self.mean + self.std() * noise.to_kind(self.mean.kind())
    }
}

/// The autoencoder: [`AutoencoderKl::encode`] gives the posterior of the (unscaled) latents,
/// [`AutoencoderKl::decode`] maps (unscaled) latents back to images in [-1, 1].
pub struct AutoencoderKl {
    config: VaeConfig,
    enc_conv_in: Conv2d,
    enc_blocks: Vec<(Vec<ResnetBlock2D>, Option<Downsample2D>)>,
    enc_mid: MidBlock,
    enc_norm_out: GroupNorm,
    enc_conv_out: Conv2d,
    quant_conv: Conv2d,
    post_quant_conv: Conv2d,
    dec_conv_in: Conv2d,
    dec_mid: MidBlock,
    dec_blocks: Vec<(Vec<ResnetBlock2D>, Option<Upsample2D>)>,
    dec_norm_out: GroupNorm,
    dec_conv_out: Conv2d,
    /// Attention implementation of the mid blocks.
    pub attention: AttentionKernel,
}

impl AutoencoderKl {
    /// Builds the autoencoder from `config`, taking every parameter from `source`.
    pub fn new(config: &VaeConfig, source: &WeightSource) -> Result<Self, DiffusionError> {
        config.validate()?;
        let root = source.root();
        let ch = &config.block_out_channels;
        let n = ch.len();
        let g = config.norm_num_groups;
        let latent = config.latent_channels;
        let last = ch[n - 1];

        let enc = root.sub("encoder");
        let mut enc_blocks = Vec::new();
        let mut output = ch[0];
        for (i, &c) in ch.iter().enumerate() {
            let s = enc.sub("down_blocks").sub(i);
            let input = output;
            output = c;
            let resnets = (0..config.layers_per_block)
                .map(|j| {
                    let r_in = if j == 0 { input } else { output };
                    ResnetBlock2D::new(&s.sub("resnets").sub(j), r_in, output, None, g, EPS, 1.0)
                })
                .collect();
            let down = (i + 1 < n).then(|| Downsample2D::new(&s.sub("downsamplers").sub(0), output, 0));
            enc_blocks.push((resnets, down));
        }

        let dec = root.sub("decoder");
        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let mut dec_blocks = Vec::new();
        let mut prev = reversed[0];
        for (i, &c) in reversed.iter().enumerate() {
            let s = dec.sub("up_blocks").sub(i);
            let resnets = (0..config.layers_per_block + 1)
                .map(|j| {
                    let r_in = if j == 0 { prev } else { c };
                    ResnetBlock2D::new(&s.sub("resnets").sub(j), r_in, c, None, g, EPS, 1.0)
                })
                .collect();
            let up = (i + 1 < n).then(|| Upsample2D::new(&s.sub("upsamplers").sub(0), c));
            dec_blocks.push((resnets, up));
            prev = c;
        }

        Ok(Self {
            config: config.clone(),
            enc_conv_in: Conv2d::new(&enc.sub("conv_in"), config.in_channels, ch[0], 3, 1, 1),
            enc_blocks,
            enc_mid: MidBlock::new(&enc.sub("mid_block"), last, g),
            enc_norm_out: GroupNorm::new(&enc.sub("conv_norm_out"), g, last, EPS),
            enc_conv_out: Conv2d::new(&enc.sub("conv_out"), last, 2 * latent, 3, 1, 1),
            quant_conv: Conv2d::new(&root.sub("quant_conv"), 2 * latent, 2 * latent, 1, 1, 0),
            post_quant_conv: Conv2d::new(&root.sub("post_quant_conv"), latent, latent, 1, 1, 0),
            dec_conv_in: Conv2d::new(&dec.sub("conv_in"), latent, last, 3, 1, 1),
            dec_mid: MidBlock::new(&dec.sub("mid_block"), last, g),
            dec_blocks,
            dec_norm_out: GroupNorm::new(&dec.sub("conv_norm_out"), g, ch[0], EPS),
            dec_conv_out: Conv2d::new(&dec.sub("conv_out"), ch[0], config.out_channels, 3, 1, 1),
            attention: AttentionKernel::default(),
        })
    }

    /// Names and shapes of every parameter at `config`, without allocating weights.
    pub fn manifest(config: &VaeConfig) -> Result<Manifest, DiffusionError> {
        let source = WeightSource::shapes_only();
        drop(Self::new(config, &source)?);
        source.finish("AutoencoderKL")
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The floating-point kind the weights are stored in.
    pub fn kind(&self) -> Kind {
        self.enc_norm_out.kind()
    }

    /// Encodes images `[n, 3, h, w]` in [-1, 1] (h, w multiples of the downscale factor).
    pub fn encode(&self, images: &Tensor) -> Result<Posterior, DiffusionError> {
        let s = images.size();
        let f = self.config.downscale();
        if s.len() != 4 || s[1] != self.config.in_channels || s[2] % f != 0 || s[3] % f != 0 {
            return Err(DiffusionError::invalid(
                "AutoencoderKL input",
                format!("shape {s:?}, expected [n, {}, h, w] with h, w multiples of {f}", self.config.in_channels),
            ));
        }
        let mut h = self.enc_conv_in.forward(&images.to_kind(self.kind()));
        for (resnets, down) in &self.enc_blocks {
            for r in resnets {
                h = r.forward(&h, None);
            }
            if let Some(d) = down {
                h = d.forward(&h);
            }
        }
        h = self.enc_mid.forward(&h, self.attention);
        h = self.enc_conv_out.forward(&self.enc_norm_out.forward(&h).silu());
        let moments = self.quant_conv.forward(&h).chunk(2, 1);
        Ok(Posterior { mean: moments[0].shallow_clone(), logvar: moments[1].clamp(-30.0, 20.0) })
    }

    /// Decodes (unscaled) latents `[n, latent_channels, h, w]` to images in about [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor, DiffusionError> {
        let s = latents.size();
        if s.len() != 4 || s[1] != self.config.latent_channels {
            return Err(DiffusionError::invalid(
                "AutoencoderKL latents",
                format!("shape {s:?}, expected [n, {}, h, w]", self.config.latent_channels),
            ));
        }
        let z = self.post_quant_conv.forward(&latents.to_kind(self.kind()));
        let mut h = self.dec_conv_in.forward(&z);
        h = self.dec_mid.forward(&h, self.attention);
        for (resnets, up) in &self.dec_blocks {
            for r in resnets {
                h = r.forward(&h, None);
            }
            if let Some(u) = up {
                h = u.forward(&h, None);
            }
        }
        Ok(self.dec_conv_out.forward(&self.dec_norm_out.forward(&h).silu()))
    }
}
