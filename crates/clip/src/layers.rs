//! The transformer pieces shared by both towers, with transformers' parameter names
//! (`self_attn.{q,k,v,out}_proj`, `layer_norm1`, `mlp.fc1`, `mlp.fc2`, `layer_norm2`).

use tch::{Tensor, nn};

/// A dense layer `y = x W^T + b` (one fused `addmm`, like `torch.nn.functional.linear`).
#[derive(Debug)]
pub(crate) struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
}

impl Linear {
    pub fn new(p: nn::Path, in_dim: i64, out_dim: i64, bias: bool) -> Self {
        let weight = p.var("weight", &[out_dim, in_dim], nn::Init::Randn { mean: 0., stdev: 0.02 });
        let bias = bias.then(|| p.var("bias", &[out_dim], nn::Init::Const(0.)));
        Self { weight, bias }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.linear(&self.weight, self.bias.as_ref())
    }
}

/// `torch.nn.LayerNorm` over the last dimension.
#[derive(Debug)]
pub(crate) struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
    dim: i64,
}

impl LayerNorm {
    pub fn new(p: nn::Path, dim: i64, eps: f64) -> Self {
        Self {
            weight: p.var("weight", &[dim], nn::Init::Const(1.)),
            bias: p.var("bias", &[dim], nn::Init::Const(0.)),
            eps,
            dim,
        }
    }

    pub fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm([self.dim], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Multi-head self-attention through libtorch's `scaled_dot_product_attention` (the same kernel
/// transformers' default "sdpa" path calls), scale head_dim^-0.5.
#[derive(Debug)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: i64,
    scale: f64,
}

impl Attention {
    fn new(p: nn::Path, dim: i64, heads: i64) -> Self {
        Self {
            q_proj: Linear::new(&p / "q_proj", dim, dim, true),
            k_proj: Linear::new(&p / "k_proj", dim, dim, true),
            v_proj: Linear::new(&p / "v_proj", dim, dim, true),
            out_proj: Linear::new(&p / "out_proj", dim, dim, true),
            heads,
            scale: ((dim / heads) as f64).powf(-0.5),
        }
    }

    fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let s = x.size();
        let (b, n, c) = (s[0], s[1], s[2]);
        let split = |t: Tensor| t.view([b, n, self.heads, c / self.heads]).transpose(1, 2);
        let q = split(self.q_proj.forward(x));
        let k = split(self.k_proj.forward(x));
        let v = split(self.v_proj.forward(x));
        let o = Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, causal, self.scale, false);
        self.out_proj.forward(&o.transpose(1, 2).reshape([b, n, c]))
    }
}

/// The MLP activation named by `hidden_act`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Activation {
    /// `x * sigmoid(1.702 x)`, OpenAI CLIP's.
    QuickGelu,
    /// The exact (erf) GELU.
    Gelu,
}

impl Activation {
    pub fn from_name(name: &str) -> Self {
        if name == "gelu" { Self::Gelu } else { Self::QuickGelu }
    }

    fn apply(self, x: &Tensor) -> Tensor {
        match self {
            Self::QuickGelu => x * (x * 1.702).sigmoid(),
            Self::Gelu => x.gelu("none"),
        }
    }
}

/// One pre-norm transformer layer: `h += attn(ln1(h)); h += fc2(act(fc1(ln2(h))))`.
#[derive(Debug)]
struct EncoderLayer {
    self_attn: Attention,
    layer_norm1: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    layer_norm2: LayerNorm,
    act: Activation,
}

/// Sizes of an encoder stack.
pub(crate) struct EncoderDims {
    pub width: i64,
    pub intermediate: i64,
    pub layers: i64,
    pub heads: i64,
    pub eps: f64,
    pub act: Activation,
}

/// The `encoder.layers.{i}` stack.
#[derive(Debug)]
pub(crate) struct Encoder {
    layers: Vec<EncoderLayer>,
}

impl Encoder {
    pub fn new(p: nn::Path, d: &EncoderDims) -> Self {
        let p = &p / "layers";
        let layers = (0..d.layers)
            .map(|i| {
                let l = &p / i;
                let mlp = &l / "mlp";
                EncoderLayer {
                    self_attn: Attention::new(&l / "self_attn", d.width, d.heads),
                    layer_norm1: LayerNorm::new(&l / "layer_norm1", d.width, d.eps),
                    fc1: Linear::new(&mlp / "fc1", d.width, d.intermediate, true),
                    fc2: Linear::new(&mlp / "fc2", d.intermediate, d.width, true),
                    layer_norm2: LayerNorm::new(&l / "layer_norm2", d.width, d.eps),
                    act: d.act,
                }
            })
            .collect();
        Self { layers }
    }

    pub fn forward(&self, x: &Tensor, causal: bool) -> Tensor {
        let mut h = x.shallow_clone();
        for l in &self.layers {
            h = &h + l.self_attn.forward(&l.layer_norm1.forward(&h), causal);
            let m = l.fc2.forward(&l.act.apply(&l.fc1.forward(&l.layer_norm2.forward(&h))));
            h += m;
        }
        h
    }
}

/// Names and shapes of the parameters [`Encoder::new`] creates under `prefix`, without allocating.
pub(crate) fn encoder_shapes(prefix: &str, d: &EncoderDims, out: &mut Vec<(String, Vec<i64>)>) {
    let (w, m) = (d.width, d.intermediate);
    for i in 0..d.layers {
        let l = format!("{prefix}.layers.{i}");
        for proj in ["q_proj", "k_proj", "v_proj", "out_proj"] {
            out.push((format!("{l}.self_attn.{proj}.weight"), vec![w, w]));
            out.push((format!("{l}.self_attn.{proj}.bias"), vec![w]));
        }
        for ln in ["layer_norm1", "layer_norm2"] {
            out.push((format!("{l}.{ln}.weight"), vec![w]));
            out.push((format!("{l}.{ln}.bias"), vec![w]));
        }
        out.push((format!("{l}.mlp.fc1.weight"), vec![m, w]));
        out.push((format!("{l}.mlp.fc1.bias"), vec![m]));
        out.push((format!("{l}.mlp.fc2.weight"), vec![w, m]));
        out.push((format!("{l}.mlp.fc2.bias"), vec![w]));
    }
}
