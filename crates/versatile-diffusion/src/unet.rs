//! The dual-guided U-Net: diffusers' `UNet2DConditionModel` as configured for Versatile Diffusion,
//! with every `Transformer2DModel` replaced by a [`DualTransformer2D`] (the state after diffusers'
//! `_convert_to_dual_attention`).

use tch::{Kind, Tensor};

use crate::attention::{AttentionKernel, DualMix, DualTransformer2D};
use crate::config::{TransformerSpec, UNetConfig};
use crate::error::DiffusionError;
use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::resnet::{Downsample2D, ResnetBlock2D, Upsample2D};
use crate::weights::{Manifest, Scope, WeightSource};

/// Sinusoidal timestep features `[n, channels]` in f32 (diffusers `get_timestep_embedding`):
/// frequencies `exp(-ln(10000) * j / (half - shift))`, sine half first unless `flip_sin_to_cos`.
pub fn timestep_features(timesteps: &Tensor, channels: i64, flip_sin_to_cos: bool, shift: f64) -> Tensor {
    let half = channels / 2;
    let device = timesteps.device();
    let exponent = Tensor::arange(half, (Kind::Float, device)) * (-(10000f64.ln())) / (half as f64 - shift);
    let args = timesteps.to_kind(Kind::Float).unsqueeze(1) * exponent.exp().unsqueeze(0);
    let (sin, cos) = (args.sin(), args.cos());
    let emb = if flip_sin_to_cos { Tensor::cat(&[cos, sin], 1) } else { Tensor::cat(&[sin, cos], 1) };
    if channels % 2 == 1 { emb.constant_pad_nd([0, 1]) } else { emb }
}

struct TimestepEmbedding {
    linear_1: Linear,
    linear_2: Linear,
}

impl TimestepEmbedding {
    fn forward(&self, xs: &Tensor) -> Tensor {
        self.linear_2.forward(&self.linear_1.forward(xs).silu())
    }
}

struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<DualTransformer2D>,
    downsampler: Option<Downsample2D>,
}

struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    attentions: Vec<DualTransformer2D>,
    upsampler: Option<Upsample2D>,
}

struct MidBlock {
    resnets: [ResnetBlock2D; 2],
    attention: DualTransformer2D,
}

/// Per-call options of the U-Net forward pass.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct UNetRun {
    /// Context split and text/vision weights of the dual transformers.
    pub mix: DualMix,
    /// Attention implementation.
    pub attention: AttentionKernel,
}

/// The dual-guided U-Net (image U-Net resnets and convolutions, 16 dual attention positions at
/// the VD configuration).
pub struct DualUNet {
    config: UNetConfig,
    conv_in: Conv2d,
    time_embedding: TimestepEmbedding,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl DualUNet {
    /// Builds the U-Net from `config`, taking every parameter from `source`. Call
    /// [`WeightSource::finish`] afterwards to learn about missing or unused keys.
    pub fn new(config: &UNetConfig, source: &WeightSource) -> Result<Self, DiffusionError> {
        config.validate()?;
        let layout = config.dual_layout()?;
        let root = source.root();
        let ch = &config.block_out_channels;
        let n = ch.len();
        let groups = config.norm_num_groups;
        let eps = config.norm_eps;
        let temb = config.time_embed_dim();
        let resnet = |s: &Scope, i: i64, o: i64| ResnetBlock2D::new(s, i, o, Some(temb), groups, eps, 1.0);
        // One spec pair per attention position, as `UNetConfig::dual_layout` resolves the
        // per-block config forms (heads, transformer blocks, projections) of both U-Nets.
        let dual = |s: &Scope, specs: Option<&[TransformerSpec; 2]>, place: String| {
            specs
                .map(|specs| DualTransformer2D::new(s, specs))
                .ok_or_else(|| DiffusionError::invalid("U-Net layout", format!("no transformer spec for {place}")))
        };

        let te = root.sub("time_embedding");
        let time_embedding = TimestepEmbedding {
            linear_1: Linear::new(&te.sub("linear_1"), ch[0], temb, true),
            linear_2: Linear::new(&te.sub("linear_2"), temb, temb, true),
        };

        let mut down_blocks = Vec::with_capacity(n);
        let mut output = ch[0];
        for (i, kind) in config.attention.down_block_types.iter().enumerate() {
            let s = root.sub("down_blocks").sub(i);
            let input = output;
            output = ch[i];
            let with_attention = kind == "CrossAttnDownBlock2D";
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..config.down_resnets(i) {
                let r_in = if j == 0 { input } else { output };
                resnets.push(resnet(&s.sub("resnets").sub(j), r_in, output));
                if with_attention {
                    let specs = layout.down.get(i).and_then(|b| b.get(j as usize));
                    attentions.push(dual(
                        &s.sub("attentions").sub(j),
                        specs,
                        format!("down_blocks.{i}.attentions.{j}"),
                    )?);
                }
            }
            let downsampler = (i + 1 < n)
                .then(|| Downsample2D::new(&s.sub("downsamplers").sub(0), output, config.downsample_padding));
            down_blocks.push(DownBlock { resnets, attentions, downsampler });
        }

        let m = root.sub("mid_block");
        let last = ch[n - 1];
        let mid_resnet = |j: i64| {
            ResnetBlock2D::new(
                &m.sub("resnets").sub(j),
                last,
                last,
                Some(temb),
                groups,
                eps,
                config.mid_block_scale_factor,
            )
        };
        let mid_block = MidBlock {
            resnets: [mid_resnet(0), mid_resnet(1)],
            attention: dual(&m.sub("attentions").sub(0), Some(&layout.mid), "mid_block.attentions.0".into())?,
        };

        let reversed: Vec<i64> = ch.iter().rev().copied().collect();
        let mut up_blocks = Vec::with_capacity(n);
        let mut prev_output = reversed[0];
        for (i, kind) in config.attention.up_block_types.iter().enumerate() {
            let s = root.sub("up_blocks").sub(i);
            let output = reversed[i];
            let input = reversed[(i + 1).min(n - 1)];
            let layers = config.up_resnets(i);
            let with_attention = kind == "CrossAttnUpBlock2D";
            let mut resnets = Vec::new();
            let mut attentions = Vec::new();
            for j in 0..layers {
                let skip = if j == layers - 1 { input } else { output };
                let r_in = if j == 0 { prev_output } else { output };
                resnets.push(resnet(&s.sub("resnets").sub(j), r_in + skip, output));
                if with_attention {
                    let specs = layout.up.get(i).and_then(|b| b.get(j as usize));
                    attentions.push(dual(&s.sub("attentions").sub(j), specs, format!("up_blocks.{i}.attentions.{j}"))?);
                }
            }
            let upsampler = (i + 1 < n).then(|| Upsample2D::new(&s.sub("upsamplers").sub(0), output));
            up_blocks.push(UpBlock { resnets, attentions, upsampler });
            prev_output = output;
        }

        let (kin, kout) = (config.conv_in_kernel, config.conv_out_kernel);
        Ok(Self {
            config: config.clone(),
            conv_in: Conv2d::new(&root.sub("conv_in"), config.in_channels, ch[0], kin, 1, (kin - 1) / 2),
            time_embedding,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::new(&root.sub("conv_norm_out"), groups, ch[0], eps),
            conv_out: Conv2d::new(&root.sub("conv_out"), ch[0], config.out_channels, kout, 1, (kout - 1) / 2),
        })
    }

    /// Names and shapes of every parameter at `config`, found by walking the module tree with
    /// zero-memory placeholders (nothing is allocated).
    pub fn manifest(config: &UNetConfig) -> Result<Manifest, DiffusionError> {
        let source = WeightSource::shapes_only();
        drop(Self::new(config, &source)?);
        source.finish("dual U-Net")
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &UNetConfig {
        &self.config
    }

    /// Sinusoidal features for timesteps `[n]` (any integer or float kind), to be passed to
    /// [`DualUNet::forward_with_features`]. Computing them for all steps before a sampling loop
    /// keeps host-to-device copies out of it.
    pub fn timestep_features(&self, timesteps: &Tensor) -> Tensor {
        timestep_features(
            timesteps,
            self.config.block_out_channels[0],
            self.config.flip_sin_to_cos,
            self.config.freq_shift,
        )
    }

    /// Predicts the noise for `sample` `[b, in, h, w]` at `timestep` with `context`
    /// `[b, text_tokens + vision_tokens, cross_attention_dim]`.
    pub fn forward(
        &self,
        sample: &Tensor,
        timestep: f64,
        context: &Tensor,
        run: &UNetRun,
    ) -> Result<Tensor, DiffusionError> {
        let t = Tensor::from_slice(&[timestep as f32]).to_device(sample.device());
        let features = self.timestep_features(&t);
        self.forward_with_features(sample, &features, context, run)
    }

    /// As [`DualUNet::forward`], with precomputed timestep features `[1 or b, block_out_channels[0]]`.
    pub fn forward_with_features(
        &self,
        sample: &Tensor,
        features: &Tensor,
        context: &Tensor,
        run: &UNetRun,
    ) -> Result<Tensor, DiffusionError> {
        self.check_inputs(sample, context, &run.mix)?;
        let kind = self.kind();
        let sample = sample.to_kind(kind);
        // diffusers' `center_input_sample`: the sample is mapped to 2 x - 1 first.
        let sample = if self.config.center_input_sample { sample * 2.0 - 1.0 } else { sample };
        let context = context.to_kind(kind);
        let b = sample.size()[0];
        let temb = self.time_embedding.forward(&features.to_kind(kind));
        let temb = if temb.size()[0] == b { temb } else { temb.expand([b, -1], false) };
        let (kernel, mix) = (run.attention, &run.mix);

        let mut h = self.conv_in.forward(&sample);
        let mut skips = vec![h.shallow_clone()];
        for block in &self.down_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                h = resnet.forward(&h, Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(&h, &context, mix, kernel);
                }
                skips.push(h.shallow_clone());
            }
            if let Some(down) = &block.downsampler {
                h = down.forward(&h);
                skips.push(h.shallow_clone());
            }
        }

        h = self.mid_block.resnets[0].forward(&h, Some(&temb));
        h = self.mid_block.attention.forward(&h, &context, mix, kernel);
        h = self.mid_block.resnets[1].forward(&h, Some(&temb));

        for block in &self.up_blocks {
            for (j, resnet) in block.resnets.iter().enumerate() {
                let skip = skips.pop().ok_or_else(|| DiffusionError::invalid("U-Net", "skip connections ran out"))?;
                h = resnet.forward(&Tensor::cat(&[&h, &skip], 1), Some(&temb));
                if let Some(attn) = block.attentions.get(j) {
                    h = attn.forward(&h, &context, mix, kernel);
                }
            }
            if let Some(up) = &block.upsampler {
                // Upsample to the size of the skip that comes next (x2 when sizes are even).
                let size = skips.last().map(|s| {
                    let s = s.size();
                    [s[2], s[3]]
                });
                h = up.forward(&h, size);
            }
        }
        Ok(self.conv_out.forward(&self.conv_norm_out.forward(&h).silu()))
    }

    /// The floating-point kind the weights are stored (and computed) in.
    pub fn kind(&self) -> Kind {
        self.time_embedding.linear_1.kind()
    }

    fn check_inputs(&self, sample: &Tensor, context: &Tensor, mix: &DualMix) -> Result<(), DiffusionError> {
        let s = sample.size();
        if s.len() != 4 || s[1] != self.config.in_channels {
            return Err(DiffusionError::invalid(
                "U-Net sample",
                format!("shape {s:?}, expected [batch, {}, height, width]", self.config.in_channels),
            ));
        }
        let c = context.size();
        let tokens = mix.text_tokens + mix.vision_tokens;
        if c.len() != 3 || c[0] != s[0] || c[1] != tokens || c[2] != self.config.cross_attention_dim {
            return Err(DiffusionError::invalid(
                "U-Net context",
                format!(
                    "shape {c:?}, expected [{}, {tokens} (= {} text + {} vision), {}]",
                    s[0], mix.text_tokens, mix.vision_tokens, self.config.cross_attention_dim
                ),
            ));
        }
        if !(0.0..=1.0).contains(&mix.text_weight) {
            return Err(DiffusionError::invalid("text weight", format!("{} is outside [0, 1]", mix.text_weight)));
        }
        Ok(())
    }
}
