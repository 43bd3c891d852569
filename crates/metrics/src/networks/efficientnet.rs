//! EfficientNet-B1 exactly as torchvision builds it (`efficientnet_b1()`), up to the 1280-d
//! `avgpool` output. tch's built-in `efficientnet::b1` has torchvision's parameter names but pads
//! stride-2 convolutions TensorFlow-style (asymmetric "same") and uses batch-norm eps 1e-3, whereas
//! torchvision pads symmetrically by (k - 1) / 2 and uses eps 1e-5 for B0-B3: same weights, different
//! features. This port follows torchvision.

use tch::{Tensor, nn};

use crate::MetricsError;

/// `Conv2dNormActivation`: convolution (no bias, padding (k-1)/2), batch norm (eps 1e-5), optional SiLU.
#[derive(Debug)]
struct ConvNormAct {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
    silu: bool,
}

impl ConvNormAct {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: i64, stride: i64, groups: i64, silu: bool) -> Self {
        let config = nn::ConvConfig { stride, padding: (kernel - 1) / 2, groups, bias: false, ..Default::default() };
        ConvNormAct {
            conv: nn::conv2d(&p / "0", c_in, c_out, kernel, config),
            bn: nn::batch_norm2d(&p / "1", c_out, nn::BatchNormConfig { eps: 1e-5, ..Default::default() }),
            silu,
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let y = x.apply(&self.conv).apply_t(&self.bn, false);
        Ok(if self.silu { y.f_silu()? } else { y })
    }
}

/// `SqueezeExcitation(expanded, squeeze, activation=SiLU)` with 1x1-conv `fc1` / `fc2`.
#[derive(Debug)]
struct SqueezeExcitation {
    fc1: nn::Conv2D,
    fc2: nn::Conv2D,
}

impl SqueezeExcitation {
    fn new(p: nn::Path, channels: i64, squeeze: i64) -> Self {
        SqueezeExcitation {
            fc1: nn::conv2d(&p / "fc1", channels, squeeze, 1, Default::default()),
            fc2: nn::conv2d(&p / "fc2", squeeze, channels, 1, Default::default()),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let scale = x.f_adaptive_avg_pool2d([1, 1])?.apply(&self.fc1).f_silu()?.apply(&self.fc2).f_sigmoid()?;
        Ok(x.f_mul(&scale)?)
    }
}

/// One `MBConv` block: optional 1x1 expansion, depthwise conv, squeeze-excitation, 1x1 projection,
/// residual when shape is kept (stochastic depth is the identity at inference).
#[derive(Debug)]
struct MbConv {
    expand: Option<ConvNormAct>,
    depthwise: ConvNormAct,
    se: SqueezeExcitation,
    project: ConvNormAct,
    residual: bool,
}

impl MbConv {
    fn new(p: nn::Path, expand_ratio: i64, kernel: i64, stride: i64, c_in: i64, c_out: i64) -> Self {
        let block = &p / "block";
        let expanded = make_divisible(c_in * expand_ratio);
        let mut index = 0;
        let mut next = || {
            let path = &block / index.to_string();
            index += 1;
            path
        };
        let expand = (expanded != c_in).then(|| ConvNormAct::new(next(), c_in, expanded, 1, 1, 1, true));
        let depthwise = ConvNormAct::new(next(), expanded, expanded, kernel, stride, expanded, true);
        let se = SqueezeExcitation::new(next(), expanded, (c_in / 4).max(1));
        let project = ConvNormAct::new(next(), expanded, c_out, 1, 1, 1, false);
        MbConv { expand, depthwise, se, project, residual: stride == 1 && c_in == c_out }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let mut y = match &self.expand {
            Some(e) => e.forward(x)?,
            None => x.shallow_clone(),
        };
        y = self.project.forward(&self.se.forward(&self.depthwise.forward(&y)?)?)?;
        Ok(if self.residual { y.f_add(x)? } else { y })
    }
}

/// torchvision's `_make_divisible(v, 8)`.
fn make_divisible(v: i64) -> i64 {
    let new_v = ((v + 4) / 8 * 8).max(8);
    if (new_v as f64) < 0.9 * v as f64 { new_v + 8 } else { new_v }
}

/// The B0 stage table (expand ratio, kernel, stride, in, out, layers) torchvision scales per variant.
const B0_STAGES: [(i64, i64, i64, i64, i64, i64); 7] = [
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
];

/// EfficientNet-B1's depth multiplier (width multiplier 1.0 leaves every channel count unchanged).
const B1_DEPTH_MULT: f64 = 1.1;

/// torchvision EfficientNet-B1 up to `avgpool`.
#[derive(Debug)]
pub struct EfficientNetB1 {
    stem: ConvNormAct,
    blocks: Vec<MbConv>,
    head: ConvNormAct,
}

/// Output names, in the order [`EfficientNetB1::forward`] returns them.
pub const EFFICIENTNET_OUTPUTS: [&str; 1] = ["avgpool"];

impl EfficientNetB1 {
    /// Registers `features.0` .. `features.8` with torchvision's names under `p`.
    pub fn new(p: &nn::Path) -> Self {
        let features = p / "features";
        let stem = ConvNormAct::new(&features / "0", 3, 32, 3, 2, 1, true);
        let mut blocks = Vec::new();
        for (stage, &(expand, kernel, stride, c_in, c_out, layers)) in B0_STAGES.iter().enumerate() {
            let layers = (layers as f64 * B1_DEPTH_MULT).ceil() as i64;
            let stage_path = &features / (stage + 1).to_string();
            for layer in 0..layers {
                let (c_in, stride) = if layer == 0 { (c_in, stride) } else { (c_out, 1) };
                blocks.push(MbConv::new(&stage_path / layer.to_string(), expand, kernel, stride, c_in, c_out));
            }
        }
        let head = ConvNormAct::new(&features / "8", 320, 1280, 1, 1, 1, true);
        EfficientNetB1 { stem, blocks, head }
    }

    /// Returns `[avgpool]` (N x 1280 x 1 x 1) for an ImageNet-normalised NCHW batch.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, MetricsError> {
        let mut t = self.stem.forward(x)?;
        for block in &self.blocks {
            t = block.forward(&t)?;
        }
        t = self.head.forward(&t)?;
        Ok(vec![t.f_adaptive_avg_pool2d([1, 1])?])
    }
}
