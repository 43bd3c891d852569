//! Attention and the transformer blocks of the U-Net: diffusers' `Attention`,
//! `BasicTransformerBlock` (self-attention, cross-attention, GEGLU feed-forward),
//! `Transformer2DModel` and Versatile Diffusion's `DualTransformer2DModel`.

use tch::{Kind, Tensor};

use crate::config::TransformerSpec;
use crate::layers::{Conv2d, GroupNorm, LayerNorm, Linear};
use crate::weights::Scope;

/// How the attention product `softmax(q k^T / sqrt(d)) v` is computed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum AttentionKernel {
    /// libtorch's `scaled_dot_product_attention` (what diffusers uses through
    /// `AttnProcessor2_0`). Its flash and memory-efficient CUDA kernels, and the CPU flash kernel,
    /// keep the softmax statistics in f32 for f16/bf16 inputs and never store the full score matrix.
    #[default]
    Fused,
    /// Scores as one matrix product in the input precision, softmax evaluated in f32 and cast
    /// back, then the product with v: the explicit "upcast softmax" form, for checking the fused one.
    Explicit,
}

/// Multi-head attention over `[batch, tokens, heads * head_dim]` tensors.
pub fn attend(q: &Tensor, k: &Tensor, v: &Tensor, heads: i64, kernel: AttentionKernel) -> Tensor {
    // Shapes are checked where the model is entered; here q is [batch, tokens, channels].
    let s = q.size();
    let (b, nq, inner) = (s[0], s[1], s[2]);
    let head_dim = inner / heads;
    let split = |t: &Tensor| {
        let n = t.size()[1];
        t.reshape([b, n, heads, head_dim]).transpose(1, 2)
    };
    let (q, k, v) = (split(q), split(k), split(v));
    let out = match kernel {
        AttentionKernel::Fused => {
            Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, None, false)
        }
        AttentionKernel::Explicit => {
            let scale = (head_dim as f64).powf(-0.5);
            let scores = (q * scale).matmul(&k.transpose(-1, -2));
            scores.softmax(-1, Kind::Float).to_kind(v.kind()).matmul(&v)
        }
    };
    out.transpose(1, 2).reshape([b, nq, inner])
}

/// diffusers `Attention` as used in `BasicTransformerBlock`: q from the hidden states, k and v from
/// the context (cross-attention) or the hidden states (self-attention); no q/k/v bias.
pub struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: i64,
}

impl Attention {
    /// `query_dim` channels, `context_dim` context channels, `heads` heads of `query_dim / heads`.
    pub fn new(scope: &Scope, query_dim: i64, context_dim: i64, heads: i64) -> Self {
        Self {
            to_q: Linear::new(&scope.sub("to_q"), query_dim, query_dim, false),
            to_k: Linear::new(&scope.sub("to_k"), context_dim, query_dim, false),
            to_v: Linear::new(&scope.sub("to_v"), context_dim, query_dim, false),
            to_out: Linear::new(&scope.sub("to_out").sub(0), query_dim, query_dim, true),
            heads,
        }
    }

    /// Attends from `xs` to `context` (or to itself when `context` is `None`).
    pub fn forward(&self, xs: &Tensor, context: Option<&Tensor>, kernel: AttentionKernel) -> Tensor {
        let context = context.unwrap_or(xs);
        let q = self.to_q.forward(xs);
        let k = self.to_k.forward(context);
        let v = self.to_v.forward(context);
        self.to_out.forward(&attend(&q, &k, &v, self.heads, kernel))
    }
}

/// The GEGLU feed-forward: `net.0.proj` to 2 x 4C, `a * gelu(g)` (exact erf GELU), `net.2` back to C.
pub struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    /// A feed-forward of `dim` channels with inner width `4 * dim`.
    pub fn new(scope: &Scope, dim: i64) -> Self {
        let net = scope.sub("net");
        Self {
            proj: Linear::new(&net.sub(0).sub("proj"), dim, dim * 8, true),
            out: Linear::new(&net.sub(2), dim * 4, dim, true),
        }
    }

    /// Applies the feed-forward over the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        let projected = self.proj.forward(xs);
        let halves = projected.chunk(2, -1);
        self.out.forward(&(&halves[0] * halves[1].gelu("none")))
    }
}

/// diffusers `BasicTransformerBlock` (layer-norm variant): self-attention (or, with
/// `only_cross_attention`, a first cross-attention), cross-attention and feed-forward, each
/// pre-normalised and residual.
pub struct BasicTransformerBlock {
    only_cross_attention: bool,
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl BasicTransformerBlock {
    /// A block of `dim` channels attending to a `context_dim` context with `heads` heads; with
    /// `only_cross_attention` the first attention reads the context too (diffusers'
    /// `only_cross_attention`).
    pub fn new(scope: &Scope, dim: i64, context_dim: i64, heads: i64, only_cross_attention: bool) -> Self {
        let attn1_context = if only_cross_attention { context_dim } else { dim };
        Self {
            only_cross_attention,
            norm1: LayerNorm::new(&scope.sub("norm1"), dim, 1e-5),
            attn1: Attention::new(&scope.sub("attn1"), dim, attn1_context, heads),
            norm2: LayerNorm::new(&scope.sub("norm2"), dim, 1e-5),
            attn2: Attention::new(&scope.sub("attn2"), dim, context_dim, heads),
            norm3: LayerNorm::new(&scope.sub("norm3"), dim, 1e-5),
            ff: FeedForward::new(&scope.sub("ff"), dim),
        }
    }

    /// Runs the block on `[batch, tokens, dim]` hidden states.
    pub fn forward(&self, xs: &Tensor, context: &Tensor, kernel: AttentionKernel) -> Tensor {
        let first_context = self.only_cross_attention.then_some(context);
        let xs = self.attn1.forward(&self.norm1.forward(xs), first_context, kernel) + xs;
        let xs = self.attn2.forward(&self.norm2.forward(&xs), Some(context), kernel) + xs;
        self.ff.forward(&self.norm3.forward(&xs)) + xs
    }
}

/// `proj_in` / `proj_out` of a [`Transformer2D`]: 1x1 convolutions, or (diffusers'
/// `use_linear_projection`) linear layers applied to the token sequence.
enum Projection {
    Conv(Conv2d),
    Linear(Linear),
}

impl Projection {
    fn new(scope: &Scope, input: i64, output: i64, linear: bool) -> Self {
        if linear {
            Projection::Linear(Linear::new(scope, input, output, true))
        } else {
            Projection::Conv(Conv2d::new(scope, input, output, 1, 1, 0))
        }
    }
}

/// diffusers `Transformer2DModel` (continuous input): group norm (eps 1e-6), `proj_in` to the
/// inner width `heads * head_dim`, transformer blocks over the H*W tokens, `proj_out` back to the
/// channels, plus the input.
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<BasicTransformerBlock>,
    proj_out: Projection,
    inner: i64,
}

impl Transformer2D {
    /// The transformer `spec` describes (channels, heads, blocks, norm groups, projections).
    pub fn new(scope: &Scope, spec: &TransformerSpec) -> Self {
        let blocks = scope.sub("transformer_blocks");
        let (c, inner, linear) = (spec.channels, spec.inner_dim(), spec.linear_projection);
        Self {
            norm: GroupNorm::new(&scope.sub("norm"), spec.groups, c, 1e-6),
            proj_in: Projection::new(&scope.sub("proj_in"), c, inner, linear),
            blocks: (0..spec.layers)
                .map(|i| {
                    BasicTransformerBlock::new(
                        &blocks.sub(i),
                        inner,
                        spec.context_dim,
                        spec.heads,
                        spec.only_cross_attention,
                    )
                })
                .collect(),
            proj_out: Projection::new(&scope.sub("proj_out"), inner, c, linear),
            inner,
        }
    }

    /// Runs the transformer on an NCHW tensor with a `[batch, tokens, context_dim]` context;
    /// the result includes the residual input, as in diffusers.
    pub fn forward(&self, xs: &Tensor, context: &Tensor, kernel: AttentionKernel) -> Tensor {
        let s = xs.size();
        let (b, c, h, w) = (s[0], s[1], s[2], s[3]);
        let inner = self.inner;
        let normed = self.norm.forward(xs);
        let mut hidden = match &self.proj_in {
            Projection::Conv(conv) => conv.forward(&normed).permute([0, 2, 3, 1]).reshape([b, h * w, inner]),
            Projection::Linear(linear) => linear.forward(&normed.permute([0, 2, 3, 1]).reshape([b, h * w, c])),
        };
        for block in &self.blocks {
            hidden = block.forward(&hidden, context, kernel);
        }
        let out = match &self.proj_out {
            Projection::Conv(conv) => {
                conv.forward(&hidden.reshape([b, h, w, inner]).permute([0, 3, 1, 2]).contiguous())
            }
            Projection::Linear(linear) => {
                linear.forward(&hidden).reshape([b, h, w, c]).permute([0, 3, 1, 2]).contiguous()
            }
        };
        out + xs
    }
}

/// How the dual transformers split and mix the context (diffusers `DualTransformer2DModel` with
/// `set_transformer_params(text_to_image_strength, ("text", "image"))`).
///
/// The context holds `text_tokens` text tokens followed by `vision_tokens` vision tokens. The text
/// tokens go to `transformers.1` (the text U-Net's block), the vision tokens to `transformers.0`
/// (the image U-Net's block), and the output is
/// `x + text_weight * (T_text(x) - x) + (1 - text_weight) * (T_vision(x) - x)`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DualMix {
    /// Weight of the text transformer (diffusers' `text_to_image_strength`, brain-diffuser's
    /// `mix_str`; the paper uses 0.4, so vision gets 0.6).
    pub text_weight: f64,
    /// Text context length (CLIP's 77 positions).
    pub text_tokens: i64,
    /// Vision context length (CLIP ViT-L/14: 256 patches + CLS = 257).
    pub vision_tokens: i64,
}

impl Default for DualMix {
    fn default() -> Self {
        Self { text_weight: 0.4, text_tokens: 77, vision_tokens: 257 }
    }
}

/// Versatile Diffusion's `DualTransformer2DModel`: the image U-Net's transformer (`transformers.0`,
/// vision context) and the text U-Net's transformer at the same position (`transformers.1`, text
/// context), mixed by [`DualMix`].
pub struct DualTransformer2D {
    vision: Transformer2D,
    text: Transformer2D,
}

impl DualTransformer2D {
    /// Both transformers, under `scope.transformers.{0,1}`: `specs[0]` the image U-Net's
    /// (vision context), `specs[1]` the text U-Net's (text context). They may differ in heads,
    /// blocks, norm groups and projections, as in diffusers, where each keeps its own U-Net's
    /// configuration.
    pub fn new(scope: &Scope, specs: &[TransformerSpec; 2]) -> Self {
        let t = scope.sub("transformers");
        Self { vision: Transformer2D::new(&t.sub(0), &specs[0]), text: Transformer2D::new(&t.sub(1), &specs[1]) }
    }

    /// Mixes the two transformers. A weight of exactly 0 or 1 skips the transformer it silences.
    pub fn forward(&self, xs: &Tensor, context: &Tensor, mix: &DualMix, kernel: AttentionKernel) -> Tensor {
        let text_ctx = context.narrow(1, 0, mix.text_tokens);
        let vision_ctx = context.narrow(1, mix.text_tokens, mix.vision_tokens);
        let r = mix.text_weight;
        if r == 1.0 {
            return self.text.forward(xs, &text_ctx, kernel);
        }
        if r == 0.0 {
            return self.vision.forward(xs, &vision_ctx, kernel);
        }
        // Same order of operations as diffusers: (e_text * r + e_vision * (1 - r)) + x.
        let text_delta = self.text.forward(xs, &text_ctx, kernel) - xs;
        let vision_delta = self.vision.forward(xs, &vision_ctx, kernel) - xs;
        text_delta * r + vision_delta * (1.0 - r) + xs
    }
}
