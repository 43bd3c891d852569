//! The two building blocks of VDVAE: a plain convolution and the bottleneck residual `Block`.

use tch::{Tensor, nn};

/// How fresh parameters are initialised.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum WeightInit {
    /// All zeros (gain ones): cheapest, for models whose weights are loaded right after.
    Zeros,
    /// The reference's training initialisation: PyTorch's default conv init
    /// (uniform in +-1/sqrt(fan_in)), zero biases, last convs of residual paths scaled by
    /// sqrt(1/n_blocks), zeroed prior output. Draws from libtorch's generator seeded by `seed`.
    Reference { seed: i64 },
}

/// What to do to a conv's weights on top of the default initialisation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConvInit {
    pub init: WeightInit,
    /// Multiplier of the weight bound (the reference scales some weights after init).
    pub scale: f64,
    /// The reference zeroes this weight at init (`zero_weights`).
    pub zero: bool,
}

impl ConvInit {
    pub fn plain(init: WeightInit) -> Self {
        ConvInit { init, scale: 1.0, zero: false }
    }
}

/// A stride-1 convolution with bias and "same" padding (`get_3x3` / `get_1x1`).
#[derive(Debug)]
pub(crate) struct Conv {
    weight: Tensor,
    bias: Tensor,
    padding: i64,
}

impl Conv {
    /// Registers `weight` `[out, in, k, k]` and `bias` `[out]` under `p`.
    pub fn new(p: nn::Path, in_dim: i64, out_dim: i64, kernel: i64, init: ConvInit) -> Self {
        let weight_init = match init.init {
            WeightInit::Reference { .. } if !init.zero => {
                let bound = init.scale / ((in_dim * kernel * kernel) as f64).sqrt();
                nn::Init::Uniform { lo: -bound, up: bound }
            }
            _ => nn::Init::Const(0.0),
        };
        Conv {
            weight: p.var("weight", &[out_dim, in_dim, kernel, kernel], weight_init),
            bias: p.var("bias", &[out_dim], nn::Init::Const(0.0)),
            padding: (kernel - 1) / 2,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.conv2d(&self.weight, Some(&self.bias), [1, 1], [self.padding, self.padding], [1, 1], 1)
    }
}

/// `Block(in, mid, out, down_rate, residual, use_3x3, zero_last)` of the reference:
/// `c4(gelu(c3(gelu(c2(gelu(c1(gelu(x))))))))`, plus `x` if residual, then an optional average pool.
#[derive(Debug)]
pub(crate) struct Block {
    c1: Conv,
    c2: Conv,
    c3: Conv,
    c4: Conv,
    residual: bool,
    down_rate: Option<i64>,
}

/// Shape and behaviour of one [`Block`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BlockSpec {
    pub in_dim: i64,
    pub mid: i64,
    pub out_dim: i64,
    pub res: i64,
    pub residual: bool,
    pub down_rate: Option<i64>,
}

impl Block {
    pub fn new(p: nn::Path, spec: BlockSpec, init: WeightInit, last: ConvInit) -> Self {
        // Blocks at 1x1 and 2x2 use 1x1 convs throughout (reference: use_3x3 = res > 2).
        let k = if spec.res > 2 { 3 } else { 1 };
        Block {
            c1: Conv::new(&p / "c1", spec.in_dim, spec.mid, 1, ConvInit::plain(init)),
            c2: Conv::new(&p / "c2", spec.mid, spec.mid, k, ConvInit::plain(init)),
            c3: Conv::new(&p / "c3", spec.mid, spec.mid, k, ConvInit::plain(init)),
            c4: Conv::new(&p / "c4", spec.mid, spec.out_dim, 1, last),
            residual: spec.residual,
            down_rate: spec.down_rate,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        // GELU in its exact erf form, before every conv (the first included).
        let h = self.c1.forward(&x.gelu("none"));
        let h = self.c2.forward(&h.gelu("none"));
        let h = self.c3.forward(&h.gelu("none"));
        let h = self.c4.forward(&h.gelu("none"));
        let out = if self.residual { x + h } else { h };
        match self.down_rate {
            Some(d) => out.avg_pool2d([d, d], [d, d], [0, 0], false, true, None),
            None => out,
        }
    }
}
