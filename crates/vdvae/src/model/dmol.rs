//! Sampling the discretised mixture of logistics (PixelCNN++ style) that VDVAE outputs.
//!
//! Parameter layout of the last axis (M = number of mixtures): `[0, M)` mixture logits shared by
//! the three colours, then for colour c at `M + 3Mc`: M means, M log scales (clamped at -7) and
//! M raw colour coefficients (through tanh).

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

use crate::error::VdvaeError;
use crate::noise::{NoiseSource, UniformDraw};

/// How the output image is drawn from the mixture. In configuration files (serde): `"sample"` or
/// `"mode"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutputDraw {
    /// Gumbel-max mixture choice and a logistic sample, as the reference (faithful).
    #[default]
    Sample,
    /// Most likely component and the logistic's mode (no noise): deterministic, not in the reference.
    Mode,
}

/// Draws pixel values in `[-1, 1]`, NHWC `[B, H, W, 3]` f32, from the parameters
/// `[B, H, W, 10 * M]` (f32).
pub fn sample_mixture(
    params: &Tensor,
    num_mixtures: i64,
    draw: OutputDraw,
    noise: &mut dyn NoiseSource,
) -> Result<Tensor, VdvaeError> {
    let size = params.size();
    let m = num_mixtures;
    if size.len() != 4 || size[3] != 10 * m {
        return Err(VdvaeError::Invalid {
            what: "mixture parameters".into(),
            message: format!("shape {size:?}, expected [B, H, W, {}]", 10 * m),
        });
    }
    let (b, h, w) = (size[0], size[1], size[2]);
    let logits = params.narrow(3, 0, m);
    let rest = params.narrow(3, m, 9 * m).reshape([b, h, w, 3, 3 * m]);
    let device = params.device();
    let choice = match draw {
        OutputDraw::Sample => {
            let u = noise.uniform(UniformDraw::MixtureChoice, &[b, h, w, m])?.to_device(device).to_kind(Kind::Float);
            (logits - (-u.log()).log()).argmax(3, false)
        }
        OutputDraw::Mode => logits.argmax(3, false),
    };
    let index = choice.reshape([b, h, w, 1, 1]).expand([b, h, w, 3, 1], false);
    // Same element-wise ops over the same tensors as the reference, then a selection: exact.
    let pick = |t: Tensor| t.gather(4, &index, false).squeeze_dim(4);
    let means = pick(rest.narrow(4, 0, m));
    let log_scales = pick(rest.narrow(4, m, m)).clamp_min(-7.0);
    let coeffs = pick(rest.narrow(4, 2 * m, m).tanh());
    let x = match draw {
        OutputDraw::Sample => {
            let u = noise.uniform(UniformDraw::Logistic, &[b, h, w, 3])?.to_device(device).to_kind(Kind::Float);
            &means + log_scales.exp() * (u.log() - u.rsub_scalar(1.0).log())
        }
        OutputDraw::Mode => means,
    };
    let channel = |t: &Tensor, c: i64| t.select(3, c);
    let x0 = channel(&x, 0).clamp(-1.0, 1.0);
    let x1 = (channel(&x, 1) + channel(&coeffs, 0) * &x0).clamp(-1.0, 1.0);
    let x2 = (channel(&x, 2) + channel(&coeffs, 1) * &x0 + channel(&coeffs, 2) * &x1).clamp(-1.0, 1.0);
    Ok(Tensor::stack(&[x0, x1, x2], 3))
}

/// `[-1, 1]` values to uint8 as the reference: `(x + 1) * 127.5`, clipped to [0, 255], truncated.
pub fn to_u8(x: &Tensor) -> Tensor {
    ((x + 1.0) * 127.5).clamp(0.0, 255.0).to_kind(Kind::Uint8)
}
