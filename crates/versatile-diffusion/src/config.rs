//! The diffusers `config.json` files of the U-Net, the autoencoder and the scheduler, read with
//! diffusers' defaults for absent keys, and checked for the options this crate implements.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::DiffusionError;

/// One value for every down block, or a list with one value per down block: the `int | tuple`
/// forms diffusers accepts for `attention_head_dim`, `layers_per_block`, `only_cross_attention`,
/// `transformer_layers_per_block` (whose entries may themselves be per-layer lists), and so on.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PerBlock<T> {
    /// The same value for every block.
    One(T),
    /// One value per down block (up blocks read the list reversed, the mid block its last entry).
    Each(Vec<T>),
}

impl<T: Clone> PerBlock<T> {
    /// The value at index `i` (`None` past the end of a list).
    pub fn at(&self, i: usize) -> Option<T> {
        match self {
            PerBlock::One(v) => Some(v.clone()),
            PerBlock::Each(v) => v.get(i).cloned(),
        }
    }

    /// The last entry of a list, or the single value (what diffusers gives the mid block).
    pub fn last(&self) -> Option<T> {
        match self {
            PerBlock::One(v) => Some(v.clone()),
            PerBlock::Each(v) => v.last().cloned(),
        }
    }

    /// Number of entries of a list (`None` for a single value).
    fn list_len(&self) -> Option<usize> {
        match self {
            PerBlock::One(_) => None,
            PerBlock::Each(v) => Some(v.len()),
        }
    }
}

/// As JSON (`8`, `[5,10,20,null]`), the way the config file writes it.
impl<T: Serialize> std::fmt::Display for PerBlock<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&serde_json::to_string(self).map_err(|_| std::fmt::Error)?)
    }
}

/// One diffusers `Transformer2DModel` as built at one attention position: what decides its
/// parameters and its computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TransformerSpec {
    /// Channels in and out (the block's `block_out_channels` entry).
    pub channels: i64,
    /// Attention heads (diffusers' `attention_head_dim` entry, which it reads as the head count).
    pub heads: i64,
    /// Channels per head, `channels / heads` rounded down as diffusers does; the transformer's
    /// inner width is `heads * head_dim`.
    pub head_dim: i64,
    /// `BasicTransformerBlock`s in the transformer.
    pub layers: i64,
    /// GroupNorm groups of the transformer's input norm (the U-Net's `norm_num_groups`).
    pub groups: i64,
    /// Context channels of the cross-attention.
    pub context_dim: i64,
    /// The first attention also attends to the context instead of the hidden states.
    pub only_cross_attention: bool,
    /// `proj_in`/`proj_out` are linear layers instead of 1x1 convolutions.
    pub linear_projection: bool,
}

impl TransformerSpec {
    /// Width of the attention and feed-forward blocks (`heads * head_dim`).
    pub fn inner_dim(&self) -> i64 {
        self.heads * self.head_dim
    }
}

/// The transformers at every attention position of one U-Net, block by block (a block without
/// attention has an empty list).
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionLayout {
    /// Down block -> one spec per attention (`down_blocks.<i>.attentions.<j>`).
    pub down: Vec<Vec<TransformerSpec>>,
    /// The mid block's attention (`mid_block.attentions.0`).
    pub mid: TransformerSpec,
    /// Up block -> one spec per attention (`up_blocks.<i>.attentions.<j>`).
    pub up: Vec<Vec<TransformerSpec>>,
}

/// The dual U-Net's attention positions: at each, `[transformers.0, transformers.1]` = [image
/// U-Net's transformer (vision context), text U-Net's transformer (text context)].
pub type DualLayout = DualPositions<[TransformerSpec; 2]>;

/// Values at every attention position of the U-Net, block by block.
#[derive(Clone, Debug, PartialEq)]
pub struct DualPositions<T> {
    /// Down block -> one value per attention.
    pub down: Vec<Vec<T>>,
    /// The mid block's attention.
    pub mid: T,
    /// Up block -> one value per attention.
    pub up: Vec<Vec<T>>,
}

fn default_groups() -> i64 {
    32
}
fn default_true() -> bool {
    true
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

/// A diffusers U-Net `config.json` as written, every key with `UNet2DConditionModel`'s (and
/// `UNetFlatConditionModel`'s: they share the signature) default; the polymorphic keys stay JSON
/// values until [`UNetConfig`] / [`TextUNetConfig`] read them with messages naming the key.
#[derive(Deserialize)]
struct RawUNet {
    #[serde(default, deserialize_with = "keep_null")]
    in_channels: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    out_channels: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    block_out_channels: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    layers_per_block: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    attention_head_dim: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    num_attention_heads: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    cross_attention_dim: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    norm_num_groups: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    norm_eps: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    flip_sin_to_cos: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    freq_shift: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    down_block_types: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    up_block_types: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    mid_block_type: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    downsample_padding: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    mid_block_scale_factor: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    act_fn: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    use_linear_projection: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    transformer_layers_per_block: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    reverse_transformer_layers_per_block: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    resnet_time_scale_shift: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    only_cross_attention: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    upcast_attention: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    center_input_sample: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    dual_cross_attention: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    conv_in_kernel: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    conv_out_kernel: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    time_embedding_dim: Option<Value>,
    #[serde(default, deserialize_with = "keep_null")]
    text_unet: Option<Value>,
    /// Every other key: checked against [`FIXED_KEYS`], or ignored (keys that configure other
    /// block kinds, training or metadata; see docs/versatile-diffusion.md).
    #[serde(flatten)]
    other: Map<String, Value>,
}

/// Deserializes a present key as `Some(value)`, `null` included (serde's `Option` would make an
/// explicit `null` look like an absent key, and diffusers treats the two differently).
fn keep_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

/// Keys that change the model and that this crate implements only at diffusers' default (null,
/// false or the named string): extra embeddings or inputs that Versatile Diffusion does not have.
const FIXED_KEYS: [(&str, &str); 13] = [
    ("attention_type", "default"),
    ("time_embedding_type", "positional"),
    ("encoder_hid_dim", ""),
    ("encoder_hid_dim_type", ""),
    ("class_embed_type", ""),
    ("num_class_embeds", ""),
    ("class_embeddings_concat", "false"),
    ("addition_embed_type", ""),
    ("addition_time_embed_dim", ""),
    ("projection_class_embeddings_input_dim", ""),
    ("time_embedding_act_fn", ""),
    ("timestep_post_act", ""),
    ("time_cond_proj_dim", ""),
];

/// Reads JSON config values with errors that name the key, the value and what is accepted.
struct Reader<'a> {
    /// `image U-Net` or `text U-Net`, for messages.
    model: &'a str,
}

impl Reader<'_> {
    fn bad(&self, key: &str, value: &Value, expected: &str) -> String {
        format!("{} config `{key}` is {value}: expected {expected}", self.model)
    }

    fn int(&self, key: &str, v: &Value) -> Result<i64, String> {
        v.as_i64().ok_or_else(|| self.bad(key, v, "an integer"))
    }

    fn int_or(&self, key: &str, v: &Option<Value>, default: i64) -> Result<i64, String> {
        match v {
            None | Some(Value::Null) => Ok(default),
            Some(v) => self.int(key, v),
        }
    }

    fn float_or(&self, key: &str, v: &Option<Value>, default: f64) -> Result<f64, String> {
        match v {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().ok_or_else(|| self.bad(key, v, "a number")),
        }
    }

    fn bool_or(&self, key: &str, v: &Option<Value>, default: bool) -> Result<bool, String> {
        match v {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| self.bad(key, v, "true or false")),
        }
    }

    fn string_or(&self, key: &str, v: &Option<Value>, default: &str) -> Result<String, String> {
        match v {
            None | Some(Value::Null) => Ok(default.to_owned()),
            Some(Value::String(s)) => Ok(s.clone()),
            Some(v) => Err(self.bad(key, v, "a string")),
        }
    }

    fn ints_or(&self, key: &str, v: &Option<Value>, default: &[i64]) -> Result<Vec<i64>, String> {
        match v {
            None | Some(Value::Null) => Ok(default.to_vec()),
            Some(Value::Array(items)) => items.iter().map(|x| self.int(key, x)).collect(),
            Some(v) => Err(self.bad(key, v, "a list of integers")),
        }
    }

    fn strings_or(&self, key: &str, v: &Option<Value>, default: &[&str]) -> Result<Vec<String>, String> {
        let list = |items: &Vec<Value>| -> Option<Vec<String>> {
            items.iter().map(|x| x.as_str().map(str::to_owned)).collect()
        };
        match v {
            None | Some(Value::Null) => Ok(default.iter().map(|s| (*s).to_owned()).collect()),
            Some(Value::Array(items)) => {
                list(items).ok_or_else(|| self.bad(key, &Value::Array(items.clone()), "a list of block type names"))
            }
            Some(v) => Err(self.bad(key, v, "a list of block type names")),
        }
    }

    /// An integer or a list of integers (entries may be null where `nulls`).
    fn per_block_int(&self, key: &str, v: &Value, nulls: bool) -> Result<PerBlock<Option<i64>>, String> {
        let what = if nulls {
            "an integer or a list of integers (or nulls), one per down block"
        } else {
            "an integer or a list of integers, one per down block"
        };
        match v {
            Value::Number(_) => Ok(PerBlock::One(Some(self.int(key, v).map_err(|_| self.bad(key, v, what))?))),
            Value::Array(items) => items
                .iter()
                .map(|x| match x {
                    Value::Null if nulls => Ok(None),
                    x => x.as_i64().map(Some).ok_or_else(|| self.bad(key, v, what)),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(PerBlock::Each),
            _ => Err(self.bad(key, v, what)),
        }
    }

    /// `transformer_layers_per_block` entries: an integer, or a list of integers (one per layer).
    fn layers_entry(&self, key: &str, whole: &Value, v: &Value) -> Result<PerBlock<i64>, String> {
        let what = "an integer, a list of integers (one per down block) or a list of such lists (one per layer)";
        match v {
            Value::Array(items) => items
                .iter()
                .map(|x| x.as_i64().ok_or_else(|| self.bad(key, whole, what)))
                .collect::<Result<Vec<_>, _>>()
                .map(PerBlock::Each),
            v => v.as_i64().map(PerBlock::One).ok_or_else(|| self.bad(key, whole, what)),
        }
    }

    fn transformer_layers(&self, v: &Option<Value>) -> Result<PerBlock<PerBlock<i64>>, String> {
        let key = "transformer_layers_per_block";
        match v {
            None | Some(Value::Null) => Ok(PerBlock::One(PerBlock::One(1))),
            Some(whole @ Value::Array(items)) => items
                .iter()
                .map(|x| self.layers_entry(key, whole, x))
                .collect::<Result<Vec<_>, _>>()
                .map(PerBlock::Each),
            Some(whole) => self.layers_entry(key, whole, whole).map(PerBlock::One),
        }
    }

    fn reverse_layers(&self, v: &Option<Value>) -> Result<Option<Vec<PerBlock<i64>>>, String> {
        let key = "reverse_transformer_layers_per_block";
        match v {
            None | Some(Value::Null) => Ok(None),
            Some(whole @ Value::Array(items)) => {
                items.iter().map(|x| self.layers_entry(key, whole, x)).collect::<Result<Vec<_>, _>>().map(Some)
            }
            Some(v) => Err(self.bad(key, v, "null or a list with one entry (integer or list) per up block")),
        }
    }

    fn only_cross_attention(&self, v: &Option<Value>) -> Result<PerBlock<bool>, String> {
        let key = "only_cross_attention";
        let what = "true, false or a list of booleans, one per down block";
        match v {
            None | Some(Value::Null) => Ok(PerBlock::One(false)),
            Some(Value::Bool(b)) => Ok(PerBlock::One(*b)),
            Some(whole @ Value::Array(items)) => items
                .iter()
                .map(|x| x.as_bool().ok_or_else(|| self.bad(key, whole, what)))
                .collect::<Result<Vec<_>, _>>()
                .map(PerBlock::Each),
            Some(v) => Err(self.bad(key, v, what)),
        }
    }

    /// `cross_attention_dim`: an integer or a per-block list. One context tensor feeds every
    /// attention, so a list must hold one value.
    fn cross_attention_dim(&self, v: &Option<Value>) -> Result<i64, String> {
        let key = "cross_attention_dim";
        match self.per_block_int(key, v.as_ref().unwrap_or(&Value::from(1280)), false)? {
            PerBlock::One(d) => Ok(d.unwrap_or(1280)),
            PerBlock::Each(list) => {
                let list: Vec<i64> = list.into_iter().flatten().collect();
                match list.first() {
                    Some(&first) if list.iter().all(|&d| d == first) => Ok(first),
                    _ => Err(self.bad(
                        key,
                        v.as_ref().unwrap_or(&Value::Null),
                        "one context width (an integer, or a list whose entries are all equal: every attention \
                         reads the same context tensor)",
                    )),
                }
            }
        }
    }
}

const IMAGE_DOWN: [&str; 4] = ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"];
const IMAGE_UP: [&str; 4] = ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"];
const TEXT_DOWN: [&str; 4] =
    ["CrossAttnDownBlockFlat", "CrossAttnDownBlockFlat", "CrossAttnDownBlockFlat", "DownBlockFlat"];
const TEXT_UP: [&str; 4] = ["UpBlockFlat", "CrossAttnUpBlockFlat", "CrossAttnUpBlockFlat", "CrossAttnUpBlockFlat"];

/// The parts of a diffusers U-Net config that decide the attention layout (shared by the image
/// and the text U-Net).
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionConfig {
    /// Channels per resolution level (320, 640, 1280, 1280).
    pub block_out_channels: Vec<i64>,
    /// Resnets per down block (up blocks have one more): one value or one per block.
    pub layers_per_block: PerBlock<i64>,
    /// diffusers reads `attention_head_dim` as the *number of heads* (VD: 8): one value or one
    /// per down block (up blocks read the list reversed, the mid block its last entry). A null
    /// entry is accepted at a block that has no attention.
    pub attention_head_dim: PerBlock<Option<i64>>,
    /// `num_attention_heads`, which diffusers' U-Nets refuse unless null (kept to refuse it too).
    pub num_attention_heads: Option<Value>,
    /// Context channels of the cross-attention (768); a per-block list must hold one value.
    pub cross_attention_dim: i64,
    /// GroupNorm groups of the resnets, the transformers' input norms and the output norm (32).
    pub norm_num_groups: i64,
    /// Down block kinds (with diffusers' optional `UNetRes` prefix removed).
    pub down_block_types: Vec<String>,
    /// Up block kinds (with diffusers' optional `UNetRes` prefix removed).
    pub up_block_types: Vec<String>,
    /// Mid block kind (`UNetMidBlock2DCrossAttn`; `UNetMidBlockFlatCrossAttn` in the text U-Net).
    pub mid_block_type: Option<String>,
    /// Linear instead of 1x1-convolution `proj_in`/`proj_out` in the transformers.
    pub use_linear_projection: bool,
    /// Transformer blocks per attention: one value, one per down block, or per block one per
    /// layer.
    pub transformer_layers_per_block: PerBlock<PerBlock<i64>>,
    /// Transformer blocks per attention of the up blocks, when given (asymmetric U-Nets).
    pub reverse_transformer_layers_per_block: Option<Vec<PerBlock<i64>>>,
    /// Cross-attention instead of self-attention in the first attention: one value or one per
    /// down block (the mid block never uses it).
    pub only_cross_attention: PerBlock<bool>,
    /// Softmax upcast flag: only diffusers' classic `AttnProcessor` reads it; its default
    /// `AttnProcessor2_0` (SDPA) and this crate's kernels keep the softmax in f32 regardless.
    pub upcast_attention: bool,
    /// Every attention position is already a `DualTransformer2DModel` (a saved dual pipeline).
    pub dual_cross_attention: bool,
}

impl AttentionConfig {
    fn read(raw: &RawUNet, r: &Reader, down: &[&str], up: &[&str]) -> Result<Self, String> {
        let strip = |v: Vec<String>| -> Vec<String> {
            v.into_iter().map(|k| k.strip_prefix("UNetRes").map(str::to_owned).unwrap_or(k)).collect()
        };
        let mid_default =
            if down[0].ends_with("Flat") { "UNetMidBlockFlatCrossAttn" } else { "UNetMidBlock2DCrossAttn" };
        Ok(Self {
            block_out_channels: r.ints_or("block_out_channels", &raw.block_out_channels, &[320, 640, 1280, 1280])?,
            layers_per_block: match &raw.layers_per_block {
                None | Some(Value::Null) => PerBlock::One(2),
                Some(v) => match r.per_block_int("layers_per_block", v, false)? {
                    PerBlock::One(l) => PerBlock::One(l.unwrap_or(2)),
                    PerBlock::Each(l) => PerBlock::Each(l.into_iter().flatten().collect()),
                },
            },
            attention_head_dim: match &raw.attention_head_dim {
                None => PerBlock::One(Some(8)),
                Some(v) => r.per_block_int("attention_head_dim", v, true)?,
            },
            num_attention_heads: raw.num_attention_heads.clone().filter(|v| !v.is_null()),
            cross_attention_dim: r.cross_attention_dim(&raw.cross_attention_dim)?,
            norm_num_groups: match &raw.norm_num_groups {
                Some(Value::Null) => {
                    return Err(r.bad(
                        "norm_num_groups",
                        &Value::Null,
                        "a group count (without normalisation diffusers cannot build these blocks)",
                    ));
                }
                v => r.int_or("norm_num_groups", v, 32)?,
            },
            down_block_types: strip(r.strings_or("down_block_types", &raw.down_block_types, down)?),
            up_block_types: strip(r.strings_or("up_block_types", &raw.up_block_types, up)?),
            mid_block_type: match &raw.mid_block_type {
                None => Some(mid_default.to_owned()),
                Some(Value::Null) => None,
                Some(v) => Some(r.string_or("mid_block_type", &Some(v.clone()), mid_default)?),
            },
            use_linear_projection: r.bool_or("use_linear_projection", &raw.use_linear_projection, false)?,
            transformer_layers_per_block: r.transformer_layers(&raw.transformer_layers_per_block)?,
            reverse_transformer_layers_per_block: r.reverse_layers(&raw.reverse_transformer_layers_per_block)?,
            only_cross_attention: r.only_cross_attention(&raw.only_cross_attention)?,
            upcast_attention: r.bool_or("upcast_attention", &raw.upcast_attention, false)?,
            dual_cross_attention: r.bool_or("dual_cross_attention", &raw.dual_cross_attention, false)?,
        })
    }

    fn blocks(&self) -> usize {
        self.block_out_channels.len()
    }

    /// Resnets of down block `i` (diffusers' `layers_per_block[i]`).
    pub fn down_resnets(&self, i: usize) -> i64 {
        self.layers_per_block.at(i).unwrap_or(0)
    }

    /// Resnets of up block `i` (the reversed list, plus one).
    pub fn up_resnets(&self, i: usize) -> i64 {
        let n = self.blocks();
        n.checked_sub(1 + i).map_or(0, |b| self.down_resnets(b) + 1)
    }

    /// The structural checks diffusers makes (list lengths, the `num_attention_heads` refusal),
    /// plus what this crate's blocks need; `model` names the U-Net in messages.
    fn check(
        &self,
        model: &str,
        down_kinds: [&str; 2],
        up_kinds: [&str; 2],
        mid_kind: &str,
    ) -> Result<(), DiffusionError> {
        let n = self.blocks();
        let bad = |key: &str, message: String| Err(DiffusionError::invalid(format!("{model} config `{key}`"), message));
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
            return bad(
                "block_out_channels",
                format!(
                    "{n} levels but {} down and {} up block types (diffusers needs one of each per level)",
                    self.down_block_types.len(),
                    self.up_block_types.len()
                ),
            );
        }
        if let Some(v) = &self.num_attention_heads {
            return bad(
                "num_attention_heads",
                format!(
                    "{v}: diffusers' U-Nets refuse any value but null (the head count is read from \
                     `attention_head_dim`, diffusers issue 2011)"
                ),
            );
        }
        let lists: [(&str, Option<usize>, String); 4] = [
            ("attention_head_dim", self.attention_head_dim.list_len(), self.attention_head_dim.to_string()),
            ("layers_per_block", self.layers_per_block.list_len(), self.layers_per_block.to_string()),
            ("only_cross_attention", self.only_cross_attention.list_len(), self.only_cross_attention.to_string()),
            (
                "transformer_layers_per_block",
                self.transformer_layers_per_block.list_len(),
                self.transformer_layers_per_block.to_string(),
            ),
        ];
        for (key, len, value) in lists {
            // diffusers checks the first three; a shorter `transformer_layers_per_block` list fails
            // in its constructor, a longer one is read up to the number of blocks.
            let wrong = match key {
                "transformer_layers_per_block" => len.is_some_and(|l| l < n),
                _ => len.is_some_and(|l| l != n),
            };
            if wrong {
                return bad(
                    key,
                    format!("{value} has {} entries, expected one per down block ({n})", len.unwrap_or(1)),
                );
            }
        }
        if let PerBlock::Each(entries) = &self.transformer_layers_per_block
            && self.reverse_transformer_layers_per_block.is_none()
            && entries.iter().any(|e| matches!(e, PerBlock::Each(_)))
        {
            return bad(
                "transformer_layers_per_block",
                format!(
                    "{}: per-layer lists need `reverse_transformer_layers_per_block` (diffusers refuses them without)",
                    self.transformer_layers_per_block
                ),
            );
        }
        if let Some(rev) = &self.reverse_transformer_layers_per_block
            && rev.len() < n
        {
            return bad(
                "reverse_transformer_layers_per_block",
                format!("{rev:?} has {} entries, expected one per up block ({n})", rev.len()),
            );
        }
        for (i, kind) in self.down_block_types.iter().enumerate() {
            if !down_kinds.contains(&kind.as_str()) {
                return bad(
                    "down_block_types",
                    format!("block {i} is `{kind}`; implemented: {} and {}", down_kinds[0], down_kinds[1]),
                );
            }
        }
        for (i, kind) in self.up_block_types.iter().enumerate() {
            if !up_kinds.contains(&kind.as_str()) {
                return bad(
                    "up_block_types",
                    format!("block {i} is `{kind}`; implemented: {} and {}", up_kinds[0], up_kinds[1]),
                );
            }
        }
        if self.mid_block_type.as_deref() != Some(mid_kind) {
            return bad(
                "mid_block_type",
                format!("{:?}; implemented: {mid_kind} (resnet, transformer, resnet)", self.mid_block_type),
            );
        }
        if let Some(l) = (0..n).map(|i| self.down_resnets(i)).find(|&l| l < 1) {
            return bad("layers_per_block", format!("{} includes {l}, expected at least 1", self.layers_per_block));
        }
        if self.norm_num_groups <= 0 {
            return bad("norm_num_groups", format!("{}, expected a positive group count", self.norm_num_groups));
        }
        for (i, &c) in self.block_out_channels.iter().enumerate() {
            if c <= 0 || c % self.norm_num_groups != 0 {
                return bad(
                    "block_out_channels",
                    format!("level {i}: {c} channels do not divide into {} groups", self.norm_num_groups),
                );
            }
        }
        if self.cross_attention_dim <= 0 {
            return bad("cross_attention_dim", format!("{}, expected a positive width", self.cross_attention_dim));
        }
        Ok(())
    }

    /// The transformer at an attention position of a block with `channels` channels.
    fn spec(
        &self,
        model: &str,
        channels: i64,
        heads_at: usize,
        layers: i64,
        only_cross: bool,
        place: &str,
    ) -> Result<TransformerSpec, DiffusionError> {
        let bad = |key: &str, message: String| Err(DiffusionError::invalid(format!("{model} config `{key}`"), message));
        let heads = match self.attention_head_dim.at(heads_at) {
            Some(Some(h)) => h,
            _ => {
                return bad(
                    "attention_head_dim",
                    format!("{} gives no head count for {place} (entry {heads_at})", self.attention_head_dim),
                );
            }
        };
        if heads < 1 || heads > channels {
            return bad(
                "attention_head_dim",
                format!(
                    "{}: {heads} heads at {place}, expected 1 to {channels} (its channel count; diffusers reads \
                     `attention_head_dim` as the number of heads)",
                    self.attention_head_dim
                ),
            );
        }
        if layers < 0 {
            return bad("transformer_layers_per_block", format!("{layers} transformer blocks at {place}"));
        }
        Ok(TransformerSpec {
            channels,
            heads,
            head_dim: channels / heads,
            layers,
            groups: self.norm_num_groups,
            context_dim: self.cross_attention_dim,
            only_cross_attention: only_cross,
            linear_projection: self.use_linear_projection,
        })
    }

    /// The attention layout as diffusers builds it. `flat` selects `UNetFlatConditionModel`'s
    /// rules, whose down and up blocks ignore `transformer_layers_per_block` (one block each)
    /// while its mid block reads it. A U-Net with `dual_cross_attention` has
    /// `DualTransformer2DModel`s whose transformers take only the heads (one block, 1x1
    /// convolutions, self-attention first). `model` names the U-Net in messages.
    fn layout(&self, model: &str, flat: bool) -> Result<AttentionLayout, DiffusionError> {
        let n = self.blocks();
        let ch = &self.block_out_channels;
        let dual = self.dual_cross_attention;
        let entry_layers = |entry: Option<PerBlock<i64>>, j: usize| -> Option<i64> { entry.and_then(|e| e.at(j)) };
        let layers_err = |place: &str, value: String| {
            DiffusionError::invalid(
                format!("{model} config `transformer_layers_per_block`"),
                format!("{value} gives no transformer block count for {place}"),
            )
        };
        let spec = |channels: i64, heads_at: usize, layers: i64, only: bool, place: &str| {
            let mut s = self.spec(model, channels, heads_at, if dual { 1 } else { layers }, only && !dual, place)?;
            if dual {
                s.linear_projection = false;
            }
            Ok::<_, DiffusionError>(s)
        };
        let mut down = Vec::with_capacity(n);
        for (i, kind) in self.down_block_types.iter().enumerate() {
            let mut specs = Vec::new();
            if kind.starts_with("CrossAttn") {
                for j in 0..self.down_resnets(i) as usize {
                    let place = format!("down_blocks.{i}.attentions.{j}");
                    let layers = if flat {
                        1
                    } else {
                        entry_layers(self.transformer_layers_per_block.at(i), j)
                            .ok_or_else(|| layers_err(&place, self.transformer_layers_per_block.to_string()))?
                    };
                    let only = self.only_cross_attention.at(i).unwrap_or(false);
                    specs.push(spec(ch[i], i, layers, only, &place)?);
                }
            }
            down.push(specs);
        }
        let mid_layers = entry_layers(self.transformer_layers_per_block.last(), 0)
            .ok_or_else(|| layers_err("mid_block.attentions.0", self.transformer_layers_per_block.to_string()))?;
        let mid = spec(ch[n - 1], n - 1, mid_layers, false, "mid_block.attentions.0")?;
        let mut up = Vec::with_capacity(n);
        for (i, kind) in self.up_block_types.iter().enumerate() {
            let block = n - 1 - i;
            let mut specs = Vec::new();
            if kind.starts_with("CrossAttn") {
                let entry = match &self.reverse_transformer_layers_per_block {
                    Some(rev) => rev.get(i).cloned(),
                    None => self.transformer_layers_per_block.at(block),
                };
                for j in 0..self.up_resnets(i) as usize {
                    let place = format!("up_blocks.{i}.attentions.{j}");
                    let layers = if flat {
                        1
                    } else {
                        entry_layers(entry.clone(), j).ok_or_else(|| {
                            let value = match &self.reverse_transformer_layers_per_block {
                                Some(rev) => format!("reverse {rev:?}"),
                                None => self.transformer_layers_per_block.to_string(),
                            };
                            layers_err(&place, value)
                        })?
                    };
                    let only = self.only_cross_attention.at(block).unwrap_or(false);
                    specs.push(spec(ch[block], block, layers, only, &place)?);
                }
            }
            up.push(specs);
        }
        Ok(AttentionLayout { down, mid, up })
    }
}

/// `UNet2DConditionModel` configuration (diffusers `image_unet/config.json`), read with diffusers'
/// defaults for absent keys and every form diffusers accepts (see [`PerBlock`]). The dual U-Net
/// is built with this layout; the text U-Net's transformers follow [`UNetConfig::text_unet`].
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawUNet")]
pub struct UNetConfig {
    /// Latent channels in (4).
    pub in_channels: i64,
    /// Latent channels out (4).
    pub out_channels: i64,
    /// Channels per resolution level (320, 640, 1280, 1280).
    pub block_out_channels: Vec<i64>,
    /// Context channels of the cross-attention (768).
    pub cross_attention_dim: i64,
    /// GroupNorm groups (32).
    pub norm_num_groups: i64,
    /// GroupNorm epsilon of the resnets and the output norm (1e-5).
    pub norm_eps: f64,
    /// Cosine half first in the timestep embedding (true for VD).
    pub flip_sin_to_cos: bool,
    /// Frequency shift of the timestep embedding (0 for VD).
    pub freq_shift: f64,
    /// Padding of the strided downsampling convolutions (1).
    pub downsample_padding: i64,
    /// Output scale of the mid block resnets (1).
    pub mid_block_scale_factor: f64,
    /// Activation (`silu`, or its alias `swish`).
    pub act_fn: String,
    /// Time-embedding injection mode (only `default` is implemented).
    pub resnet_time_scale_shift: String,
    /// Maps the input sample to `2 x - 1` first.
    pub center_input_sample: bool,
    /// Kernel size of `conv_in` (3; padding `(k - 1) / 2`).
    pub conv_in_kernel: i64,
    /// Kernel size of `conv_out` (3; padding `(k - 1) / 2`).
    pub conv_out_kernel: i64,
    /// Width of the time embedding (default 4 x the first block's channels).
    pub time_embedding_dim: Option<i64>,
    /// Everything that decides the attention positions and their transformers.
    pub attention: AttentionConfig,
    /// The text U-Net's configuration when the dual U-Net was assembled from a diffusers folder
    /// (kept under the key `text_unet` of the merged file's `unet_config`); without it, the text
    /// transformers are built like the image ones.
    pub text_unet: Option<Box<TextUNetConfig>>,
    /// Keys outside the model this crate builds, with their values (checked by `validate`).
    pub other: Map<String, Value>,
}

impl TryFrom<RawUNet> for UNetConfig {
    type Error = String;

    fn try_from(raw: RawUNet) -> Result<Self, String> {
        let r = Reader { model: "image U-Net" };
        let text_unet = match &raw.text_unet {
            None | Some(Value::Null) => None,
            Some(v) => Some(Box::new(
                serde_json::from_value::<TextUNetConfig>(v.clone()).map_err(|e| format!("`text_unet`: {e}"))?,
            )),
        };
        Ok(Self {
            in_channels: r.int_or("in_channels", &raw.in_channels, 4)?,
            out_channels: r.int_or("out_channels", &raw.out_channels, 4)?,
            block_out_channels: r.ints_or("block_out_channels", &raw.block_out_channels, &[320, 640, 1280, 1280])?,
            cross_attention_dim: r.cross_attention_dim(&raw.cross_attention_dim)?,
            norm_num_groups: r.int_or("norm_num_groups", &raw.norm_num_groups, 32)?,
            norm_eps: r.float_or("norm_eps", &raw.norm_eps, 1e-5)?,
            flip_sin_to_cos: r.bool_or("flip_sin_to_cos", &raw.flip_sin_to_cos, true)?,
            freq_shift: r.float_or("freq_shift", &raw.freq_shift, 0.0)?,
            downsample_padding: r.int_or("downsample_padding", &raw.downsample_padding, 1)?,
            mid_block_scale_factor: r.float_or("mid_block_scale_factor", &raw.mid_block_scale_factor, 1.0)?,
            act_fn: r.string_or("act_fn", &raw.act_fn, "silu")?,
            resnet_time_scale_shift: r.string_or("resnet_time_scale_shift", &raw.resnet_time_scale_shift, "default")?,
            center_input_sample: r.bool_or("center_input_sample", &raw.center_input_sample, false)?,
            conv_in_kernel: r.int_or("conv_in_kernel", &raw.conv_in_kernel, 3)?,
            conv_out_kernel: r.int_or("conv_out_kernel", &raw.conv_out_kernel, 3)?,
            time_embedding_dim: match &raw.time_embedding_dim {
                None | Some(Value::Null) => None,
                Some(v) => Some(r.int("time_embedding_dim", v)?),
            },
            attention: AttentionConfig::read(&raw, &r, &IMAGE_DOWN, &IMAGE_UP)?,
            text_unet,
            other: raw.other,
        })
    }
}

/// Versatile Diffusion's `image_unet/config.json` in shi-labs/versatile-diffusion on the Hugging
/// Face hub (<https://huggingface.co/shi-labs/versatile-diffusion/tree/main/image_unet>): the
/// values diffusers' conversion script (`create_image_unet_diffusers_config`) writes, without
/// `sample_size`, which the model does not read. The dual U-Net has this layout.
const VD_UNET_CONFIG: &str = r#"{
  "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
  "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768,
  "norm_num_groups": 32, "norm_eps": 1e-05, "flip_sin_to_cos": true, "freq_shift": 0,
  "act_fn": "silu", "downsample_padding": 1, "mid_block_scale_factor": 1,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;

impl UNetConfig {
    /// Versatile Diffusion's full-size dual U-Net (the hub's `image_unet/config.json`; the text
    /// transformers are built like the image ones), as [`SchedulerConfig::versatile_diffusion`] is
    /// its DDIM configuration. `tests/manifest.rs` checks its parameter names and shapes against
    /// diffusers'.
    pub fn versatile_diffusion() -> Self {
        serde_json::from_str(VD_UNET_CONFIG).expect("the embedded Versatile Diffusion U-Net config parses")
    }

    /// Reads a diffusers `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| with_path(e, path))?;
        Ok(config)
    }

    /// Reads a diffusers folder's `image_unet/config.json` and, when given, `text_unet/config.json`,
    /// and returns the dual U-Net's configuration with its JSON text: the image U-Net's config
    /// with the text U-Net's under the key `text_unet` (so a merged file keeps the text
    /// transformers' layout). As in diffusers, an image U-Net with `dual_cross_attention` ignores
    /// the text U-Net. Errors name the file, the key and the value.
    pub fn read_dual(image_config: &Path, text_config: Option<&Path>) -> Result<(Self, String), DiffusionError> {
        let image_text = std::fs::read_to_string(image_config)
            .map_err(|error| DiffusionError::Io { path: image_config.to_path_buf(), error })?;
        let image: Self = parse_json(&image_text, image_config)?;
        image.validate().map_err(|e| with_path(e, image_config))?;
        let Some(text_path) = text_config.filter(|_| !image.attention.dual_cross_attention) else {
            return Ok((image, image_text));
        };
        TextUNetConfig::from_file(text_path)?;
        let text_value: Value = read_json(text_path)?;
        let mut combined: Map<String, Value> = parse_json(&image_text, image_config)?;
        combined.insert("text_unet".into(), text_value);
        let combined = Value::Object(combined);
        let config: Self = serde_json::from_value(combined.clone())
            .map_err(|e| DiffusionError::Format { path: text_path.to_path_buf(), message: e.to_string() })?;
        config.validate().map_err(|e| with_path(e, text_path))?;
        let text = serde_json::to_string_pretty(&combined)
            .map_err(|e| DiffusionError::Format { path: image_config.to_path_buf(), message: e.to_string() })?;
        Ok((config, text))
    }

    /// Resnets of down block `block` (diffusers' `layers_per_block[block]`).
    pub fn down_resnets(&self, block: usize) -> i64 {
        self.attention.down_resnets(block)
    }

    /// Resnets of up block `block` (the reversed `layers_per_block`, plus one).
    pub fn up_resnets(&self, block: usize) -> i64 {
        self.attention.up_resnets(block)
    }

    /// Time-embedding width (`time_embedding_dim`, by default 4 x the first block's channels).
    pub fn time_embed_dim(&self) -> i64 {
        self.time_embedding_dim.unwrap_or_else(|| self.block_out_channels.first().copied().unwrap_or(0) * 4)
    }

    /// The image U-Net's transformers at every attention position.
    pub fn image_layout(&self) -> Result<AttentionLayout, DiffusionError> {
        self.attention.layout("image U-Net", false)
    }

    /// Both transformers at every attention position of the dual U-Net: the image U-Net's, and
    /// the text U-Net's as diffusers' `_convert_to_dual_attention` takes them (the text U-Net's
    /// transformer at the same path, with its own heads, blocks, norm groups and projections).
    /// A `dual_cross_attention` image U-Net holds both already; without a text U-Net config the
    /// text transformers mirror the image ones.
    pub fn dual_layout(&self) -> Result<DualLayout, DiffusionError> {
        let image = self.image_layout()?;
        let text = match &self.text_unet {
            Some(text) if !self.attention.dual_cross_attention => text.layout()?,
            _ => image.clone(),
        };
        let pair = |place: String,
                    v: &TransformerSpec,
                    t: Option<&TransformerSpec>|
         -> Result<[TransformerSpec; 2], DiffusionError> {
            let bad = |message: String| DiffusionError::invalid(format!("text U-Net transformer at {place}"), message);
            let t = t.ok_or_else(|| {
                bad("missing: the image U-Net has an attention there (diffusers' dual conversion takes the text \
                     U-Net's transformer at each image U-Net attention)"
                    .into())
            })?;
            if t.channels != v.channels {
                return Err(bad(format!("{} channels, the image U-Net's has {}", t.channels, v.channels)));
            }
            if t.context_dim != v.context_dim {
                return Err(bad(format!(
                    "context width {} (`cross_attention_dim`), the image U-Net's is {}: both read the same context",
                    t.context_dim, v.context_dim
                )));
            }
            Ok([*v, *t])
        };
        let blocks = |kind: &str, img: &[Vec<TransformerSpec>], txt: &[Vec<TransformerSpec>]| {
            img.iter()
                .enumerate()
                .map(|(i, specs)| {
                    specs
                        .iter()
                        .enumerate()
                        .map(|(j, v)| pair(format!("{kind}.{i}.attentions.{j}"), v, txt.get(i).and_then(|b| b.get(j))))
                        .collect::<Result<Vec<_>, _>>()
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(DualPositions {
            down: blocks("down_blocks", &image.down, &text.down)?,
            mid: pair("mid_block.attentions.0".into(), &image.mid, Some(&text.mid))?,
            up: blocks("up_blocks", &image.up, &text.up)?,
        })
    }

    /// Checks that the configuration uses only what this crate implements, and that the text
    /// U-Net (when known) fits it. Errors name the key, its value and what is supported.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        let bad =
            |what: &str, message: String| Err(DiffusionError::invalid(format!("image U-Net config `{what}`"), message));
        self.attention.check(
            "image U-Net",
            ["CrossAttnDownBlock2D", "DownBlock2D"],
            ["CrossAttnUpBlock2D", "UpBlock2D"],
            "UNetMidBlock2DCrossAttn",
        )?;
        check_fixed_keys("image U-Net", &self.other)?;
        if self.act_fn != "silu" && self.act_fn != "swish" {
            return bad("act_fn", format!("`{}`; implemented: silu (alias swish)", self.act_fn));
        }
        if self.resnet_time_scale_shift != "default" {
            return bad("resnet_time_scale_shift", format!("`{}`; implemented: default", self.resnet_time_scale_shift));
        }
        for (key, k) in [("conv_in_kernel", self.conv_in_kernel), ("conv_out_kernel", self.conv_out_kernel)] {
            if k < 1 || k % 2 == 0 {
                return bad(key, format!("{k}; implemented: odd kernel sizes (padding (k - 1) / 2 keeps the size)"));
            }
        }
        if self.time_embed_dim() <= 0 || self.in_channels <= 0 || self.out_channels <= 0 {
            return bad(
                "in_channels/out_channels/time_embedding_dim",
                format!("{}/{}/{:?} must be positive", self.in_channels, self.out_channels, self.time_embedding_dim),
            );
        }
        if self.downsample_padding < 0 {
            return bad("downsample_padding", format!("{}, expected 0 or more", self.downsample_padding));
        }
        // diffusers does not convert an image U-Net that is already dual: its text U-Net is unused.
        if let Some(text) = &self.text_unet
            && !self.attention.dual_cross_attention
        {
            text.validate()?;
        }
        self.dual_layout()?;
        Ok(())
    }
}

/// The text U-Net's (`UNetFlatConditionModel`, `text_unet/config.json`) keys that decide the
/// transformers the dual U-Net takes from it. Its other keys (in/out channels, resnets,
/// embeddings) only concern parts of the text U-Net that the dual U-Net drops.
#[derive(Clone, Debug, Deserialize)]
#[serde(try_from = "RawUNet")]
pub struct TextUNetConfig {
    /// Attention positions and transformers, read with `UNetFlatConditionModel`'s rules.
    pub attention: AttentionConfig,
    /// `attention_type`, which the text U-Net's mid block reads (only `default` is implemented).
    pub attention_type: Option<Value>,
}

impl TryFrom<RawUNet> for TextUNetConfig {
    type Error = String;

    fn try_from(raw: RawUNet) -> Result<Self, String> {
        let r = Reader { model: "text U-Net" };
        let attention = AttentionConfig::read(&raw, &r, &TEXT_DOWN, &TEXT_UP)?;
        Ok(Self { attention, attention_type: raw.other.get("attention_type").cloned() })
    }
}

impl TextUNetConfig {
    /// Reads a diffusers `text_unet/config.json`.
    pub fn from_file(path: &Path) -> Result<Self, DiffusionError> {
        let config: Self = read_json(path)?;
        config.validate().map_err(|e| with_path(e, path))?;
        Ok(config)
    }

    /// The text U-Net's transformers as diffusers builds them: its down and up blocks ignore
    /// `transformer_layers_per_block` (one block each), its mid block reads the last entry.
    pub fn layout(&self) -> Result<AttentionLayout, DiffusionError> {
        self.attention.layout("text U-Net", true)
    }

    /// Checks the structure diffusers checks and what the dual U-Net can take from it.
    pub fn validate(&self) -> Result<(), DiffusionError> {
        self.attention.check(
            "text U-Net",
            ["CrossAttnDownBlockFlat", "DownBlockFlat"],
            ["CrossAttnUpBlockFlat", "UpBlockFlat"],
            "UNetMidBlockFlatCrossAttn",
        )?;
        if let Some(kind) = self.attention_type.as_ref().filter(|v| !v.is_null() && v.as_str() != Some("default")) {
            return Err(DiffusionError::invalid(
                "text U-Net config `attention_type`",
                format!("{kind}: its mid block would use GLIGEN's gated attention; supported: \"default\""),
            ));
        }
        if self.attention.dual_cross_attention {
            return Err(DiffusionError::invalid(
                "text U-Net config `dual_cross_attention`",
                "true: its transformers would themselves be dual, which diffusers' dual conversion cannot use; \
                 implemented: false",
            ));
        }
        self.layout().map(drop)
    }
}

/// Refuses a key of [`FIXED_KEYS`] whose value is not diffusers' default.
fn check_fixed_keys(model: &str, other: &Map<String, Value>) -> Result<(), DiffusionError> {
    for (key, default) in FIXED_KEYS {
        let Some(value) = other.get(key) else { continue };
        let is_default = match (default, value) {
            (_, Value::Null) => true,
            ("false", Value::Bool(false)) => true,
            (d, Value::String(s)) => !d.is_empty() && d != "false" && s == d,
            _ => false,
        };
        if !is_default {
            let supported = match default {
                "" => "null".to_owned(),
                "false" => "false".to_owned(),
                d => format!("\"{d}\""),
            };
            return Err(DiffusionError::invalid(
                format!("{model} config `{key}`"),
                format!("{value}: this extra input or embedding is not implemented; supported: {supported}"),
            ));
        }
    }
    Ok(())
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

/// Versatile Diffusion's `vae/config.json` (kl-f8) in shi-labs/versatile-diffusion on the Hugging
/// Face hub (<https://huggingface.co/shi-labs/versatile-diffusion/blob/main/vae/config.json>),
/// without `sample_size`, which the model does not read. It has no `scaling_factor`, so diffusers'
/// default 0.18215 applies.
const VD_VAE_CONFIG: &str = r#"{
  "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
  "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu",
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
}"#;

impl VaeConfig {
    /// Versatile Diffusion's full-size autoencoder (the hub's `vae/config.json`). `tests/manifest.rs`
    /// checks its parameter names and shapes against diffusers'.
    pub fn versatile_diffusion() -> Self {
        serde_json::from_str(VD_VAE_CONFIG).expect("the embedded Versatile Diffusion VAE config parses")
    }

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
    /// Versatile Diffusion's `scheduler_config.json` values
    /// (<https://huggingface.co/shi-labs/versatile-diffusion/blob/main/scheduler/scheduler_config.json>).
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
    let text = std::fs::read_to_string(path).map_err(|error| DiffusionError::Io { path: path.to_path_buf(), error })?;
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
