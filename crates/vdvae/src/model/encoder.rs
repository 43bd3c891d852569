//! The bottom-up encoder: `in_conv` then the encoder blocks, keeping the last activation of
//! every resolution.

use std::collections::BTreeMap;

use tch::{Tensor, nn};

use super::layers::{Block, BlockSpec, Conv, ConvInit, WeightInit};
use crate::config::VdvaeConfig;
use crate::error::VdvaeError;

/// `encoder.*` of the state dict.
#[derive(Debug)]
pub(crate) struct Encoder {
    in_conv: Conv,
    blocks: Vec<Block>,
    /// Width of each block's output resolution (narrower outputs are zero-padded to it).
    out_widths: Vec<i64>,
}

impl Encoder {
    pub fn new(p: nn::Path, config: &VdvaeConfig, init: WeightInit) -> Result<Self, VdvaeError> {
        let specs = config.encoder_blocks()?;
        let scale = (1.0 / specs.len() as f64).sqrt();
        let mut blocks = Vec::with_capacity(specs.len());
        let mut out_widths = Vec::with_capacity(specs.len());
        let blocks_path = &p / "enc_blocks";
        for (i, s) in specs.iter().enumerate() {
            let w = config.width_at(s.res)?;
            let spec = BlockSpec {
                in_dim: w,
                mid: config.bottleneck(w),
                out_dim: w,
                res: s.res,
                residual: true,
                down_rate: s.down_rate,
            };
            let last = ConvInit { init, scale, zero: false };
            blocks.push(Block::new(&blocks_path / i, spec, init, last));
            out_widths.push(config.width_at(s.res / s.down_rate.unwrap_or(1))?);
        }
        Ok(Encoder {
            in_conv: Conv::new(&p / "in_conv", 3, config.width, 3, ConvInit::plain(init)),
            blocks,
            out_widths,
        })
    }

    /// Activations `{resolution: [B, width, r, r]}` of a normalised NHWC batch `[B, S, S, 3]`.
    /// With `channels_last`, the NCHW view of the NHWC input is used as is (channels-last strides).
    pub fn forward(&self, x_nhwc: &Tensor, channels_last: bool) -> BTreeMap<i64, Tensor> {
        let nchw = x_nhwc.permute([0, 3, 1, 2]);
        let nchw = if channels_last { nchw } else { nchw.contiguous() };
        let mut x = self.in_conv.forward(&nchw);
        let mut activations = BTreeMap::new();
        activations.insert(x.size()[2], x.shallow_clone());
        for (block, &width) in self.blocks.iter().zip(&self.out_widths) {
            x = block.forward(&x);
            let size = x.size();
            if size[1] != width {
                // pad_channels of the reference: zeros above the block's own channels.
                let pad = Tensor::zeros([size[0], width - size[1], size[2], size[3]], (x.kind(), x.device()));
                x = Tensor::cat(&[x, pad], 1);
            }
            activations.insert(size[2], x.shallow_clone());
        }
        activations
    }
}
