//! The vision tower (`vision_model.*`) and its projection (`visual_projection`), as in
//! transformers' `CLIPVisionModelWithProjection`.

use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::ClipError;
use crate::config::VisionConfig;
use crate::layers::{Activation, Encoder, EncoderDims, LayerNorm, Linear, encoder_shapes};
use crate::weights::{Checkpoint, find_checkpoint, is_legacy_buffer};

/// What the vision tower computes for a batch of images.
#[derive(Debug)]
pub struct VisionOutput {
    /// `[batch, 257, 1024]`: the encoder output. As in transformers, *not* post-layer-normed.
    pub last_hidden_state: Tensor,
    /// `[batch, 1024]`: `post_layernorm` of the class token (transformers' `pooler_output`).
    pub pooled: Tensor,
    /// `[batch, 768]`: `visual_projection(pooled)`, the CLIP image embedding (OpenAI's
    /// `encode_image`, the feature of the CLIP evaluation metric); not L2-normalised.
    pub image_embeds: Tensor,
}

/// The modules of the vision tower, built on an `nn::Path` with transformers' names.
#[derive(Debug)]
pub(crate) struct VisionTower {
    class_embedding: Tensor,
    patch_embedding: Tensor,
    position_embedding: Tensor,
    pre_layrnorm: LayerNorm,
    encoder: Encoder,
    post_layernorm: LayerNorm,
    visual_projection: Linear,
    config: VisionConfig,
}

fn dims(c: &VisionConfig) -> EncoderDims {
    EncoderDims {
        width: c.hidden_size,
        intermediate: c.intermediate_size,
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        eps: c.layer_norm_eps,
        act: Activation::from_name(&c.hidden_act),
    }
}

impl VisionTower {
    /// Builds `vision_model.*` under `root` and `visual_projection` beside it.
    pub fn new(root: &nn::Path, c: &VisionConfig, projection_dim: i64) -> Self {
        let vm = root / "vision_model";
        let emb = &vm / "embeddings";
        let h = c.hidden_size;
        let normal = nn::Init::Randn { mean: 0., stdev: 0.02 };
        Self {
            class_embedding: emb.var("class_embedding", &[h], normal),
            patch_embedding: (&emb / "patch_embedding").var(
                "weight",
                &[h, c.num_channels, c.patch_size, c.patch_size],
                normal,
            ),
            position_embedding: (&emb / "position_embedding").var("weight", &[c.num_positions(), h], normal),
            pre_layrnorm: LayerNorm::new(&vm / "pre_layrnorm", h, c.layer_norm_eps),
            encoder: Encoder::new(&vm / "encoder", &dims(c)),
            post_layernorm: LayerNorm::new(&vm / "post_layernorm", h, c.layer_norm_eps),
            visual_projection: Linear::new(root / "visual_projection", h, projection_dim, false),
            config: c.clone(),
        }
    }

    fn check_input(&self, pixel_values: &Tensor) -> Result<(), ClipError> {
        let c = &self.config;
        let size = pixel_values.size();
        if size.len() != 4 || size[1] != c.num_channels || size[2] != c.image_size || size[3] != c.image_size {
            return Err(ClipError::invalid(
                "pixel_values",
                format!("shape {size:?}, expected [batch, {}, {}, {}]", c.num_channels, c.image_size, c.image_size),
            ));
        }
        if !pixel_values.is_floating_point() {
            return Err(ClipError::invalid(
                "pixel_values",
                format!("kind {:?}, expected a floating-point tensor", pixel_values.kind()),
            ));
        }
        Ok(())
    }

    /// The encoder output before `post_layernorm`, `[batch, tokens, hidden]`.
    fn hidden_states(&self, pixel_values: &Tensor) -> Result<Tensor, ClipError> {
        self.check_input(pixel_values)?;
        let p = self.config.patch_size;
        let x = pixel_values.f_to_device(self.patch_embedding.device())?.f_to_kind(self.patch_embedding.kind())?;
        let patches = x
            .f_conv2d(&self.patch_embedding, None::<Tensor>, [p, p], [0, 0], [1, 1], 1)?
            .flatten(2, -1)
            .transpose(1, 2);
        let b = patches.size()[0];
        let h = self.config.hidden_size;
        let cls = self.class_embedding.view([1, 1, h]).expand([b, 1, h], false);
        let x = Tensor::f_cat(&[cls, patches], 1)? + &self.position_embedding;
        Ok(self.encoder.forward(&self.pre_layrnorm.forward(&x), false))
    }

    pub fn forward(&self, pixel_values: &Tensor) -> Result<VisionOutput, ClipError> {
        let last_hidden_state = self.hidden_states(pixel_values)?;
        let pooled = self.post_layernorm.forward(&last_hidden_state.select(1, 0));
        let image_embeds = self.visual_projection.forward(&pooled);
        Ok(VisionOutput { last_hidden_state, pooled, image_embeds })
    }

    pub fn vd_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor, ClipError> {
        let z = self.visual_projection.forward(&self.post_layernorm.forward(&self.hidden_states(pixel_values)?));
        let norm = z.narrow(1, 0, 1).norm_scalaropt_dim(2, [-1], true);
        Ok(z / norm)
    }
}

/// Names and shapes of `vision_model.*` and `visual_projection.weight`, from the config alone.
pub fn vision_parameter_shapes(c: &VisionConfig, projection_dim: i64) -> Vec<(String, Vec<i64>)> {
    let h = c.hidden_size;
    let mut out = vec![
        ("vision_model.embeddings.class_embedding".to_string(), vec![h]),
        (
            "vision_model.embeddings.patch_embedding.weight".to_string(),
            vec![h, c.num_channels, c.patch_size, c.patch_size],
        ),
        ("vision_model.embeddings.position_embedding.weight".to_string(), vec![c.num_positions(), h]),
    ];
    for ln in ["pre_layrnorm", "post_layernorm"] {
        out.push((format!("vision_model.{ln}.weight"), vec![h]));
        out.push((format!("vision_model.{ln}.bias"), vec![h]));
    }
    encoder_shapes("vision_model.encoder", &dims(c), &mut out);
    out.push(("visual_projection.weight".to_string(), vec![projection_dim, h]));
    out
}

/// CLIP's image encoder with its projection, owning its weights (`CLIPVisionModelWithProjection`).
///
/// Precision and device are the caller's: weights are stored in the `kind` given at construction
/// and inputs are moved and cast to them.
pub struct ClipVisionModel {
    vs: nn::VarStore,
    tower: VisionTower,
    config: VisionConfig,
}

impl std::fmt::Debug for ClipVisionModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipVisionModel").field("config", &self.config).field("device", &self.vs.device()).finish()
    }
}

impl ClipVisionModel {
    /// A model with random weights (normal, std 0.02; layer norms at identity), for tests and benchmarks.
    pub fn new(config: &VisionConfig, device: Device, kind: Kind) -> Result<Self, ClipError> {
        let projection_dim = config.projection()?;
        let mut vs = nn::VarStore::new(device);
        let tower = VisionTower::new(&vs.root(), config, projection_dim);
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        Ok(Self { vs, tower, config: config.clone() })
    }

    /// Loads a Hugging Face folder holding `config.json` and `model.safetensors` or
    /// `pytorch_model.bin`: either a whole `CLIPModel` (openai/clip-vit-large-patch14; the text
    /// tower's keys are skipped) or a `CLIPVisionModelWithProjection` (the `image_encoder/` folder of
    /// shi-labs/versatile-diffusion).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self, ClipError> {
        let dir = dir.as_ref();
        let config = VisionConfig::from_file(dir.join("config.json"))?;
        let checkpoint = Checkpoint::open(find_checkpoint(dir)?)?;
        Self::from_checkpoint(&config, &checkpoint, device, kind)
    }

    /// Builds the model from `config` and copies the vision weights of an opened checkpoint into it.
    pub fn from_checkpoint(
        config: &VisionConfig,
        checkpoint: &Checkpoint,
        device: Device,
        kind: Kind,
    ) -> Result<Self, ClipError> {
        let mut model = Self::new(config, device, Kind::Float)?;
        checkpoint.load_into(&model.vs, |k| {
            is_legacy_buffer(k)
                || k.starts_with("text_model.")
                || k.starts_with("text_projection.")
                || k == "logit_scale"
        })?;
        if kind != Kind::Float {
            model.vs.set_kind(kind);
        }
        Ok(model)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &VisionConfig {
        &self.config
    }

    /// The variable store holding the weights (names as in transformers).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Runs the tower on normalised pixels `[batch, 3, 224, 224]` (see [`crate::preprocess`]).
    pub fn forward(&self, pixel_values: &Tensor) -> Result<VisionOutput, ClipError> {
        tch::no_grad(|| self.tower.forward(pixel_values))
    }

    /// Versatile Diffusion's image conditioning `[batch, 257, 768]`:
    /// `visual_projection(post_layernorm(all tokens))`, divided by the L2 norm of the projected
    /// class token (one scalar per image).
    pub fn vd_embeddings(&self, pixel_values: &Tensor) -> Result<Tensor, ClipError> {
        tch::no_grad(|| self.tower.vd_embeddings(pixel_values))
    }
}
