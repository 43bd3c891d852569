//! Residual blocks and resampling layers shared by the U-Net and the autoencoder
//! (diffusers `ResnetBlock2D`, `Downsample2D`, `Upsample2D`).

use tch::Tensor;

use crate::layers::{Conv2d, GroupNorm, Linear};
use crate::weights::Scope;

/// diffusers `ResnetBlock2D` (`time_embedding_norm = "default"`, SiLU): GN, SiLU, conv3x3,
/// + projected time embedding, GN, SiLU, conv3x3, plus the (1x1-projected) input.
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale: f64,
}

impl ResnetBlock2D {
    /// A block `input -> output` channels; `temb_channels` is `None` in the autoencoder.
    pub fn new(
        scope: &Scope,
        input: i64,
        output: i64,
        temb_channels: Option<i64>,
        groups: i64,
        eps: f64,
        output_scale: f64,
    ) -> Self {
        Self {
            norm1: GroupNorm::new(&scope.sub("norm1"), groups, input, eps),
            conv1: Conv2d::new(&scope.sub("conv1"), input, output, 3, 1, 1),
            time_emb_proj: temb_channels.map(|t| Linear::new(&scope.sub("time_emb_proj"), t, output, true)),
            norm2: GroupNorm::new(&scope.sub("norm2"), groups, output, eps),
            conv2: Conv2d::new(&scope.sub("conv2"), output, output, 3, 1, 1),
            conv_shortcut: (input != output).then(|| Conv2d::new(&scope.sub("conv_shortcut"), input, output, 1, 1, 0)),
            output_scale,
        }
    }

    /// Applies the block; `temb` is the U-Net time embedding `[batch, temb_channels]`.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Tensor {
        let mut h = self.conv1.forward(&self.norm1.forward(xs).silu());
        if let (Some(proj), Some(temb)) = (&self.time_emb_proj, temb) {
            h += proj.forward(&temb.silu()).unsqueeze(-1).unsqueeze(-1);
        }
        let h = self.conv2.forward(&self.norm2.forward(&h).silu());
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs),
            None => xs.shallow_clone(),
        };
        let out = shortcut + h;
        if self.output_scale == 1.0 { out } else { out / self.output_scale }
    }
}

/// A stride-2 3x3 convolution. With `padding == 0` (the autoencoder) the input is first padded by
/// one zero row and column at the bottom and right, as diffusers does.
pub struct Downsample2D {
    conv: Conv2d,
    asymmetric_pad: bool,
}

impl Downsample2D {
    /// A downsampler at `scope.conv` over `channels` channels.
    pub fn new(scope: &Scope, channels: i64, padding: i64) -> Self {
        Self { conv: Conv2d::new(&scope.sub("conv"), channels, channels, 3, 2, padding), asymmetric_pad: padding == 0 }
    }

    /// Halves the spatial size.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        if self.asymmetric_pad { self.conv.forward(&xs.constant_pad_nd([0, 1, 0, 1])) } else { self.conv.forward(xs) }
    }
}

/// Nearest-neighbour upsampling followed by a 3x3 convolution.
pub struct Upsample2D {
    conv: Conv2d,
}

impl Upsample2D {
    /// An upsampler at `scope.conv` over `channels` channels.
    pub fn new(scope: &Scope, channels: i64) -> Self {
        Self { conv: Conv2d::new(&scope.sub("conv"), channels, channels, 3, 1, 1) }
    }

    /// Upsamples to `size` (`[height, width]`), or doubles the size when `None`.
    pub fn forward(&self, xs: &Tensor, size: Option<[i64; 2]>) -> Tensor {
        let s = xs.size();
        let size = size.unwrap_or([s[2] * 2, s[3] * 2]);
        self.conv.forward(&xs.upsample_nearest2d(size, None, None))
    }
}
