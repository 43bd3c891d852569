//! The text tower (`text_model.*`) and its projection (`text_projection`), as in transformers'
//! `CLIPTextModelWithProjection`.

use std::path::Path;

use tch::{Device, Kind, Tensor, nn};

use crate::ClipError;
use crate::config::TextConfig;
use crate::layers::{Activation, Encoder, EncoderDims, LayerNorm, Linear, encoder_shapes};
use crate::weights::{Checkpoint, find_checkpoint, is_legacy_buffer};

/// What the text tower computes for a batch of token id rows.
#[derive(Debug)]
pub struct TextOutput {
    /// `[batch, tokens, 768]`: after `final_layer_norm` (all positions, padding included).
    pub last_hidden_state: Tensor,
    /// `[batch, 768]`: the hidden state at the first end-of-text token.
    pub pooled: Tensor,
    /// `[batch, 768]`: `text_projection(pooled)`, the CLIP text embedding (not L2-normalised).
    pub text_embeds: Tensor,
}

#[derive(Debug)]
pub(crate) struct TextTower {
    token_embedding: Tensor,
    position_embedding: Tensor,
    encoder: Encoder,
    final_layer_norm: LayerNorm,
    text_projection: Linear,
    config: TextConfig,
}

fn dims(c: &TextConfig) -> EncoderDims {
    EncoderDims {
        width: c.hidden_size,
        intermediate: c.intermediate_size,
        layers: c.num_hidden_layers,
        heads: c.num_attention_heads,
        eps: c.layer_norm_eps,
        act: Activation::from_name(&c.hidden_act),
    }
}

impl TextTower {
    pub fn new(root: &nn::Path, c: &TextConfig, projection_dim: i64) -> Self {
        let tm = root / "text_model";
        let emb = &tm / "embeddings";
        let h = c.hidden_size;
        let normal = nn::Init::Randn { mean: 0., stdev: 0.02 };
        Self {
            token_embedding: (&emb / "token_embedding").var("weight", &[c.vocab_size, h], normal),
            position_embedding: (&emb / "position_embedding").var("weight", &[c.max_position_embeddings, h], normal),
            encoder: Encoder::new(&tm / "encoder", &dims(c)),
            final_layer_norm: LayerNorm::new(&tm / "final_layer_norm", h, c.layer_norm_eps),
            text_projection: Linear::new(root / "text_projection", h, projection_dim, false),
            config: c.clone(),
        }
    }

    /// Checks `[batch, tokens]` integer ids in range and returns them on the model's device as i64.
    fn checked_ids(&self, input_ids: &Tensor) -> Result<Tensor, ClipError> {
        let size = input_ids.size();
        let c = &self.config;
        if size.len() != 2 || size[1] < 1 || size[1] > c.max_position_embeddings {
            return Err(ClipError::invalid(
                "input_ids",
                format!("shape {size:?}, expected [batch, tokens] with 1 <= tokens <= {}", c.max_position_embeddings),
            ));
        }
        if input_ids.is_floating_point() {
            return Err(ClipError::invalid("input_ids", format!("kind {:?}, expected integers", input_ids.kind())));
        }
        let ids = input_ids.f_to_device(self.token_embedding.device())?.f_to_kind(Kind::Int64)?;
        if size[0] > 0 {
            let (lo, hi) = (ids.min().int64_value(&[]), ids.max().int64_value(&[]));
            if lo < 0 || hi >= c.vocab_size {
                return Err(ClipError::invalid(
                    "input_ids",
                    format!("ids span {lo}..={hi}, expected 0..{}", c.vocab_size),
                ));
            }
        }
        Ok(ids)
    }

    /// `final_layer_norm(encoder(token + position embeddings))` with a causal mask.
    fn hidden_states(&self, ids: &Tensor) -> Tensor {
        let n = ids.size()[1];
        let x =
            Tensor::embedding(&self.token_embedding, ids, -1, false, false) + self.position_embedding.narrow(0, 0, n);
        self.final_layer_norm.forward(&self.encoder.forward(&x, true))
    }

    /// Index of the pooled token per row, as transformers chooses it: the largest id when the
    /// config's `eos_token_id` is the legacy 2, else the first position holding `eos_token_id`.
    fn eos_positions(&self, ids: &Tensor) -> Tensor {
        if self.config.eos_token_id == 2 {
            ids.argmax(-1, false)
        } else {
            ids.eq(self.config.eos_token_id).to_kind(Kind::Int).argmax(-1, false)
        }
    }

    fn pool(&self, hidden: &Tensor, ids: &Tensor) -> Tensor {
        let s = hidden.size();
        let index = self.eos_positions(ids).view([s[0], 1, 1]).expand([s[0], 1, s[2]], false);
        hidden.gather(1, &index, false).squeeze_dim(1)
    }

    pub fn forward(&self, input_ids: &Tensor) -> Result<TextOutput, ClipError> {
        let ids = self.checked_ids(input_ids)?;
        let last_hidden_state = self.hidden_states(&ids);
        let pooled = self.pool(&last_hidden_state, &ids);
        let text_embeds = self.text_projection.forward(&pooled);
        Ok(TextOutput { last_hidden_state, pooled, text_embeds })
    }

    pub fn vd_embeddings(&self, input_ids: &Tensor) -> Result<Tensor, ClipError> {
        let ids = self.checked_ids(input_ids)?;
        let z = self.text_projection.forward(&self.hidden_states(&ids));
        let norm = self.pool(&z, &ids).norm_scalaropt_dim(2, [-1], true).unsqueeze(1);
        Ok(z / norm)
    }
}

/// Names and shapes of `text_model.*` and `text_projection.weight`, from the config alone.
pub fn text_parameter_shapes(c: &TextConfig, projection_dim: i64) -> Vec<(String, Vec<i64>)> {
    let h = c.hidden_size;
    let mut out = vec![
        ("text_model.embeddings.token_embedding.weight".to_string(), vec![c.vocab_size, h]),
        ("text_model.embeddings.position_embedding.weight".to_string(), vec![c.max_position_embeddings, h]),
    ];
    encoder_shapes("text_model.encoder", &dims(c), &mut out);
    out.push(("text_model.final_layer_norm.weight".to_string(), vec![h]));
    out.push(("text_model.final_layer_norm.bias".to_string(), vec![h]));
    out.push(("text_projection.weight".to_string(), vec![projection_dim, h]));
    out
}

/// CLIP's text encoder with its projection, owning its weights (`CLIPTextModelWithProjection`).
pub struct ClipTextModel {
    vs: nn::VarStore,
    tower: TextTower,
    config: TextConfig,
}

impl std::fmt::Debug for ClipTextModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTextModel").field("config", &self.config).field("device", &self.vs.device()).finish()
    }
}

impl ClipTextModel {
    /// A model with random weights (normal, std 0.02; layer norms at identity).
    pub fn new(config: &TextConfig, device: Device, kind: Kind) -> Result<Self, ClipError> {
        let projection_dim = config.projection()?;
        let mut vs = nn::VarStore::new(device);
        let tower = TextTower::new(&vs.root(), config, projection_dim);
        if kind != Kind::Float {
            vs.set_kind(kind);
        }
        Ok(Self { vs, tower, config: config.clone() })
    }

    /// Loads a Hugging Face folder (`config.json` + `model.safetensors` or `pytorch_model.bin`):
    /// a whole `CLIPModel` (vision keys skipped) or a `CLIPTextModelWithProjection` (the
    /// `text_encoder/` folder of shi-labs/versatile-diffusion).
    pub fn from_pretrained(dir: impl AsRef<Path>, device: Device, kind: Kind) -> Result<Self, ClipError> {
        let dir = dir.as_ref();
        let config = TextConfig::from_file(dir.join("config.json"))?;
        let checkpoint = Checkpoint::open(find_checkpoint(dir)?)?;
        Self::from_checkpoint(&config, &checkpoint, device, kind)
    }

    /// Builds the model from `config` and copies the text weights of an opened checkpoint into it.
    pub fn from_checkpoint(
        config: &TextConfig,
        checkpoint: &Checkpoint,
        device: Device,
        kind: Kind,
    ) -> Result<Self, ClipError> {
        let mut model = Self::new(config, device, Kind::Float)?;
        checkpoint.load_into(&model.vs, |k| {
            is_legacy_buffer(k)
                || k.starts_with("vision_model.")
                || k.starts_with("visual_projection.")
                || k == "logit_scale"
        })?;
        if kind != Kind::Float {
            model.vs.set_kind(kind);
        }
        Ok(model)
    }

    /// The configuration the model was built from.
    pub fn config(&self) -> &TextConfig {
        &self.config
    }

    /// The variable store holding the weights (names as in transformers).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// Runs the tower on token ids `[batch, tokens]` (see [`crate::ClipTokenizer`]).
    pub fn forward(&self, input_ids: &Tensor) -> Result<TextOutput, ClipError> {
        tch::no_grad(|| self.tower.forward(input_ids))
    }

    /// Versatile Diffusion's text conditioning `[batch, 77, 768]`: `text_projection` of every
    /// token, divided by the L2 norm of the projected end-of-text token (one scalar per caption).
    pub fn vd_embeddings(&self, input_ids: &Tensor) -> Result<Tensor, ClipError> {
        tch::no_grad(|| self.tower.vd_embeddings(input_ids))
    }

    /// Brain-Diffuser's caption target: [`Self::vd_embeddings`] of all captions, averaged within
    /// consecutive groups (`groups[i]` captions belong to image `i`), `[groups.len(), 77, 768]`.
    pub fn vd_embeddings_mean(&self, input_ids: &Tensor, groups: &[usize]) -> Result<Tensor, ClipError> {
        let total: usize = groups.iter().sum();
        let rows = input_ids.size().first().copied().unwrap_or(0);
        if groups.contains(&0) || total as i64 != rows {
            return Err(ClipError::invalid(
                "caption groups",
                format!("{groups:?} (sum {total}) must be positive counts summing to the {rows} caption rows"),
            ));
        }
        let all = self.vd_embeddings(input_ids)?;
        let sizes: Vec<i64> = groups.iter().map(|&g| g as i64).collect();
        let means: Vec<Tensor> =
            all.split_with_sizes(&sizes, 0).iter().map(|g| g.mean_dim(0, false, g.kind())).collect();
        Ok(Tensor::stack(&means, 0))
    }
}
