//! Model configuration read from a Hugging Face `config.json`, with the ViT-L/14 preset.
//!
//! Three file layouts are accepted: a `CLIPModel` config (`vision_config` and `text_config`
//! objects inside), and the stand-alone `CLIPVisionModelWithProjection` /
//! `CLIPTextModelWithProjection` configs of the `image_encoder/` and `text_encoder/` folders of
//! `shi-labs/versatile-diffusion` (the fields at the top level).

use std::path::Path;

use serde::Deserialize;

use crate::ClipError;

/// Hyper-parameters of the vision tower (`vision_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct VisionConfig {
    /// Width of the transformer (1024 for ViT-L/14).
    pub hidden_size: i64,
    /// Width of the MLP inside each layer (4096).
    pub intermediate_size: i64,
    /// Number of encoder layers (24).
    pub num_hidden_layers: i64,
    /// Number of attention heads (16); must divide `hidden_size`.
    pub num_attention_heads: i64,
    /// Input side in pixels (224).
    pub image_size: i64,
    /// Patch side in pixels (14), the stride of the patch convolution.
    pub patch_size: i64,
    /// Input channels (3).
    #[serde(default = "default_channels")]
    pub num_channels: i64,
    /// Width of the joint embedding space; `None` when the file does not say (then the
    /// top-level `projection_dim` of a CLIPModel config applies).
    #[serde(default)]
    pub projection_dim: Option<i64>,
    /// Epsilon of every layer norm (1e-5).
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the MLPs: `quick_gelu` for OpenAI CLIP; `gelu` is also accepted.
    #[serde(default = "default_act")]
    pub hidden_act: String,
}

/// Hyper-parameters of the text tower (`text_config`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct TextConfig {
    /// Number of token embeddings (49408).
    pub vocab_size: i64,
    /// Width of the transformer (768 for ViT-L/14).
    pub hidden_size: i64,
    /// Width of the MLP inside each layer (3072).
    pub intermediate_size: i64,
    /// Number of encoder layers (12).
    pub num_hidden_layers: i64,
    /// Number of attention heads (12).
    pub num_attention_heads: i64,
    /// Context length (77).
    pub max_position_embeddings: i64,
    /// Width of the joint embedding space, as for [`VisionConfig::projection_dim`].
    #[serde(default)]
    pub projection_dim: Option<i64>,
    /// Epsilon of every layer norm.
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Activation of the MLPs.
    #[serde(default = "default_act")]
    pub hidden_act: String,
    /// End-of-text id as written in the config. The value 2 (openai/clip-vit-large-patch14) selects
    /// transformers' legacy pooling, the position of the largest id; any other value pools at the
    /// first position holding that id. Both find the first `<|endoftext|>` of CLIP tokenizer output.
    #[serde(default = "default_eos")]
    pub eos_token_id: i64,
}

/// Both towers and the shared projection width: the content of a `CLIPModel` `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// The vision tower.
    pub vision: VisionConfig,
    /// The text tower.
    pub text: TextConfig,
    /// Width of the joint embedding space (768 for ViT-L/14).
    pub projection_dim: i64,
}

fn default_channels() -> i64 {
    3
}
fn default_eps() -> f64 {
    1e-5
}
fn default_act() -> String {
    "quick_gelu".to_string()
}
fn default_eos() -> i64 {
    2
}

#[derive(Deserialize)]
struct ClipModelFile {
    vision_config: VisionConfig,
    text_config: TextConfig,
    #[serde(default)]
    projection_dim: Option<i64>,
}

fn read_json(path: &Path) -> Result<serde_json::Value, ClipError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ClipError::Io { path: path.to_path_buf(), error: source })?;
    serde_json::from_str(&text)
        .map_err(|e| ClipError::Invalid { what: path.display().to_string(), message: format!("not valid JSON: {e}") })
}

fn parse<T: for<'de> Deserialize<'de>>(value: serde_json::Value, path: &Path, layout: &str) -> Result<T, ClipError> {
    serde_json::from_value(value).map_err(|e| ClipError::Invalid {
        what: path.display().to_string(),
        message: format!("not a {layout} config: {e}"),
    })
}

impl VisionConfig {
    /// The vision tower of openai/clip-vit-large-patch14.
    pub fn vit_l14() -> Self {
        Self {
            hidden_size: 1024,
            intermediate_size: 4096,
            num_hidden_layers: 24,
            num_attention_heads: 16,
            image_size: 224,
            patch_size: 14,
            num_channels: 3,
            projection_dim: Some(768),
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".to_string(),
        }
    }

    /// Reads the vision part of a `config.json`: a CLIPModel config or a stand-alone vision config.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let mut value = read_json(path)?;
        if let Some(vision) = value.get_mut("vision_config").map(serde_json::Value::take) {
            let top = value.get("projection_dim").and_then(serde_json::Value::as_i64);
            let mut config: Self = parse(vision, path, "CLIP vision_config")?;
            if let Some(p) = top {
                config.projection_dim = Some(p);
            }
            return config.validated(path);
        }
        parse::<Self>(value, path, "CLIPVisionModelWithProjection")?.validated(path)
    }

    /// Number of tokens the tower outputs: one per patch plus the class token (257 for ViT-L/14).
    pub fn num_positions(&self) -> i64 {
        let side = self.image_size / self.patch_size;
        side * side + 1
    }

    /// The projection width, or an error naming the file layout that lacks it.
    pub fn projection(&self) -> Result<i64, ClipError> {
        self.projection_dim.ok_or_else(|| ClipError::Invalid {
            what: "vision config".into(),
            message: "projection_dim is missing".into(),
        })
    }

    fn validated(self, path: &Path) -> Result<Self, ClipError> {
        let bad = |message: String| ClipError::Invalid { what: path.display().to_string(), message };
        check_common(self.hidden_size, self.num_attention_heads, self.num_hidden_layers, &self.hidden_act)
            .map_err(bad)?;
        if self.patch_size <= 0 || self.image_size % self.patch_size != 0 {
            return Err(bad(format!(
                "image_size {} is not a positive multiple of patch_size {}",
                self.image_size, self.patch_size
            )));
        }
        Ok(self)
    }
}

impl TextConfig {
    /// The text tower of openai/clip-vit-large-patch14.
    pub fn vit_l14() -> Self {
        Self {
            vocab_size: 49408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            projection_dim: Some(768),
            layer_norm_eps: 1e-5,
            hidden_act: "quick_gelu".to_string(),
            eos_token_id: 2,
        }
    }

    /// Reads the text part of a `config.json`: a CLIPModel config or a stand-alone text config.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let mut value = read_json(path)?;
        if let Some(text) = value.get_mut("text_config").map(serde_json::Value::take) {
            let top = value.get("projection_dim").and_then(serde_json::Value::as_i64);
            let mut config: Self = parse(text, path, "CLIP text_config")?;
            if let Some(p) = top {
                config.projection_dim = Some(p);
            }
            return config.validated(path);
        }
        parse::<Self>(value, path, "CLIPTextModelWithProjection")?.validated(path)
    }

    /// The projection width, or an error naming the file layout that lacks it.
    pub fn projection(&self) -> Result<i64, ClipError> {
        self.projection_dim.ok_or_else(|| ClipError::Invalid {
            what: "text config".into(),
            message: "projection_dim is missing".into(),
        })
    }

    fn validated(self, path: &Path) -> Result<Self, ClipError> {
        check_common(self.hidden_size, self.num_attention_heads, self.num_hidden_layers, &self.hidden_act)
            .map_err(|message| ClipError::Invalid { what: path.display().to_string(), message })?;
        Ok(self)
    }
}

fn check_common(hidden: i64, heads: i64, layers: i64, act: &str) -> Result<(), String> {
    if hidden <= 0 || heads <= 0 || hidden % heads != 0 {
        return Err(format!("hidden_size {hidden} is not a positive multiple of num_attention_heads {heads}"));
    }
    if layers < 0 {
        return Err(format!("num_hidden_layers {layers} is negative"));
    }
    if act != "quick_gelu" && act != "gelu" {
        return Err(format!("hidden_act {act:?} is not supported (expected quick_gelu or gelu)"));
    }
    Ok(())
}

impl ClipConfig {
    /// openai/clip-vit-large-patch14: the model Brain-Diffuser and Versatile Diffusion use.
    pub fn vit_l14() -> Self {
        Self { vision: VisionConfig::vit_l14(), text: TextConfig::vit_l14(), projection_dim: 768 }
    }

    /// Reads a `CLIPModel` `config.json` (both towers).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, ClipError> {
        let path = path.as_ref();
        let value = read_json(path)?;
        let file: ClipModelFile = parse(value, path, "CLIPModel")?;
        let projection_dim = file.projection_dim.unwrap_or(512);
        let mut vision = file.vision_config.validated(path)?;
        let mut text = file.text_config.validated(path)?;
        vision.projection_dim = Some(projection_dim);
        text.projection_dim = Some(projection_dim);
        Ok(Self { vision, text, projection_dim })
    }
}
