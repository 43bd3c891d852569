//! Reading the diffusers-format `shi-labs/versatile-diffusion` folders, assembling the dual U-Net
//! state dict as diffusers' `_convert_to_dual_attention` does, and reading and writing one merged
//! safetensors file that holds the dual U-Net, the autoencoder and the three configs.

use std::borrow::Cow;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, View};
use tch::{Kind, Tensor};
use tracing::info;

use crate::config::{SchedulerConfig, UNetConfig, VaeConfig, parse_json};
use crate::error::{DiffusionError, FLOAT_DTYPES, KeyProblem, dtype_name};

/// A state dict: parameter name -> tensor.
pub type StateDict = HashMap<String, Tensor>;

/// Value of the `format` metadata entry of a merged file.
pub const MERGED_FORMAT: &str = "brain-diffuser/versatile-diffusion-dual/1";

/// Everything needed to build the models, as read from a diffusers folder or a merged file.
pub struct VdWeights {
    /// Image U-Net configuration (the dual U-Net uses its layout).
    pub unet_config: UNetConfig,
    /// Autoencoder configuration.
    pub vae_config: VaeConfig,
    /// Scheduler configuration.
    pub scheduler_config: SchedulerConfig,
    /// Dual U-Net parameters (`...attentions.<i>.transformers.{0,1}.*`).
    pub unet: StateDict,
    /// Autoencoder parameters with current diffusers names.
    pub vae: StateDict,
    /// The config files' text, kept to be written into a merged file.
    config_texts: [String; 3],
    /// Where the weights came from (for messages).
    pub origin: String,
}

/// Reads a PyTorch state dict: `torch.save` files (`.bin`, `.pt`, `.pth`; zip or legacy pickle,
/// read by the `weight-files` leaf crate) or `.safetensors`.
pub fn load_state_dict(path: &Path) -> Result<StateDict, DiffusionError> {
    if !path.is_file() {
        return Err(DiffusionError::Io {
            path: path.to_path_buf(),
            error: std::io::Error::new(std::io::ErrorKind::NotFound, "no such weight file"),
        });
    }
    let tensors = match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(path)?.0,
        _ => weight_files_tch::read_state_dict(path)?,
    };
    Ok(tensors.into_iter().collect())
}

/// The attention position (`down_blocks.0.attentions.1`) a key belongs to, and the rest of the key.
fn attention_position(key: &str) -> Option<(&str, &str)> {
    let at = key.find(".attentions.")?;
    let after = &key[at + ".attentions.".len()..];
    let digits = after.find('.')?;
    after[..digits].parse::<u32>().ok()?;
    let split = at + ".attentions.".len() + digits;
    let parent = &key[..at];
    let is_unet_block = parent == "mid_block"
        || ["down_blocks.", "up_blocks."]
            .iter()
            .any(|p| parent.strip_prefix(p).is_some_and(|i| i.parse::<u32>().is_ok()));
    is_unet_block.then(|| (&key[..split], &key[split + 1..]))
}

/// Assembles the dual U-Net state dict: every image U-Net key, with `transformers.0.` inserted
/// after each attention position, plus the text U-Net's keys at the same positions under
/// `transformers.1.`. The rest of the text U-Net (its resnets, `LinearMultiDim` layers) is
/// unused and dropped. An image U-Net that is already dual is returned unchanged.
pub fn assemble_dual_unet(image: StateDict, text: Option<StateDict>) -> Result<StateDict, DiffusionError> {
    if image.keys().any(|k| attention_position(k).is_some_and(|(_, rest)| rest.starts_with("transformers."))) {
        return Ok(image);
    }
    let text = text.ok_or_else(|| {
        DiffusionError::invalid("checkpoint", "the image U-Net is not dual and no text U-Net was given")
    })?;
    let positions = |sd: &StateDict| -> BTreeSet<String> {
        sd.keys().filter_map(|k| attention_position(k).map(|(p, _)| p.to_owned())).collect()
    };
    let (image_pos, text_pos) = (positions(&image), positions(&text));
    // diffusers' `_convert_to_dual_attention` takes the text U-Net's transformer at each image
    // U-Net attention; text U-Net attentions elsewhere are unused, missing ones are an error.
    if !image_pos.is_subset(&text_pos) {
        let only_image: Vec<_> = image_pos.difference(&text_pos).collect();
        return Err(DiffusionError::invalid(
            "text U-Net",
            format!("lacks the attention positions {only_image:?} that the image U-Net has"),
        ));
    }
    let mut out = StateDict::with_capacity(image.len() + image.len() / 2);
    for (key, t) in image {
        let key = match attention_position(&key) {
            Some((pos, rest)) => format!("{pos}.transformers.0.{rest}"),
            None => key,
        };
        out.insert(key, t);
    }
    let mut dropped = 0usize;
    for (key, t) in text {
        match attention_position(&key) {
            Some((pos, rest)) if image_pos.contains(pos) => {
                out.insert(format!("{pos}.transformers.1.{rest}"), t);
            }
            _ => dropped += 1,
        }
    }
    info!(positions = image_pos.len(), dropped_text_unet_tensors = dropped, "assembled dual U-Net");
    Ok(out)
}

/// Renames the legacy mid-block attention names of old autoencoder files
/// (`query`/`key`/`value`/`proj_attn`) to the current ones (`to_q`/`to_k`/`to_v`/`to_out.0`), as
/// diffusers does at load time; current names pass through.
pub fn rename_legacy_vae_keys(vae: StateDict) -> StateDict {
    const LEGACY: [(&str, &str); 4] =
        [(".query.", ".to_q."), (".key.", ".to_k."), (".value.", ".to_v."), (".proj_attn.", ".to_out.0.")];
    vae.into_iter()
        .map(|(key, t)| {
            if key.contains(".mid_block.attentions.") {
                for (old, new) in LEGACY {
                    if key.contains(old) {
                        return (key.replacen(old, new, 1), t);
                    }
                }
            }
            (key, t)
        })
        .collect()
}

fn weight_file(folder: &Path) -> Result<PathBuf, DiffusionError> {
    const NAMES: [&str; 4] = [
        "diffusion_pytorch_model.safetensors",
        "diffusion_pytorch_model.bin",
        "diffusion_pytorch_model.fp16.safetensors",
        "diffusion_pytorch_model.fp16.bin",
    ];
    NAMES.iter().map(|n| folder.join(n)).find(|p| p.is_file()).ok_or_else(|| DiffusionError::Io {
        path: folder.to_path_buf(),
        error: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("no weight file; expected one of {}", NAMES.join(", ")),
        ),
    })
}

fn read_text(path: &Path) -> Result<String, DiffusionError> {
    std::fs::read_to_string(path).map_err(|error| DiffusionError::Io { path: path.to_path_buf(), error })
}

impl VdWeights {
    /// Reads a diffusers-format Versatile Diffusion folder (`image_unet/`, `text_unet/`, `vae/`,
    /// `scheduler/`) and assembles the dual U-Net. The text U-Net is read first and cut down to
    /// its attention weights before the image U-Net is read, to bound peak memory.
    pub fn from_diffusers_folder(root: &Path) -> Result<Self, DiffusionError> {
        let unet_config_path = root.join("image_unet").join("config.json");
        let vae_config_path = root.join("vae").join("config.json");
        let scheduler_path = root.join("scheduler").join("scheduler_config.json");
        let text_dir = root.join("text_unet");
        let text_config_path = text_dir.join("config.json");
        // The text U-Net's config is embedded in the U-Net config text (key `text_unet`): the
        // dual U-Net builds its text transformers from it, here and from a merged file.
        let (unet_config, unet_text) =
            UNetConfig::read_dual(&unet_config_path, text_dir.is_dir().then_some(text_config_path.as_path()))?;
        let texts = [unet_text, read_text(&vae_config_path)?, read_text(&scheduler_path)?];
        let vae_config = VaeConfig::from_file(&vae_config_path)?;
        let scheduler_config = SchedulerConfig::from_file(&scheduler_path)?;

        // diffusers does not convert an image U-Net that is already dual; its text U-Net is unused.
        let text = if text_dir.is_dir() && !unet_config.attention.dual_cross_attention {
            let path = weight_file(&text_dir)?;
            info!(path = %path.display(), "reading text U-Net");
            let sd = load_state_dict(&path)?;
            Some(sd.into_iter().filter(|(k, _)| attention_position(k).is_some()).collect())
        } else {
            None
        };
        let image_path = weight_file(&root.join("image_unet"))?;
        info!(path = %image_path.display(), "reading image U-Net");
        let unet = assemble_dual_unet(load_state_dict(&image_path)?, text)?;
        let vae_path = weight_file(&root.join("vae"))?;
        let vae = rename_legacy_vae_keys(load_state_dict(&vae_path)?);
        Ok(Self {
            unet_config,
            vae_config,
            scheduler_config,
            unet,
            vae,
            config_texts: texts,
            origin: root.display().to_string(),
        })
    }

    /// Reads a merged file written by [`VdWeights::write_merged`].
    pub fn from_merged_file(path: &Path) -> Result<Self, DiffusionError> {
        let (tensors, metadata) = read_safetensors(path)?;
        let bad = |message: String| DiffusionError::Format { path: path.to_path_buf(), message };
        if metadata.get("format").map(String::as_str) != Some(MERGED_FORMAT) {
            return Err(bad(format!("metadata `format` is {:?}, expected {MERGED_FORMAT:?}", metadata.get("format"))));
        }
        let text = |key: &str| metadata.get(key).cloned().ok_or_else(|| bad(format!("metadata lacks `{key}`")));
        let texts = [text("unet_config")?, text("vae_config")?, text("scheduler_config")?];
        let unet_config: UNetConfig = parse_json(&texts[0], path)?;
        unet_config.validate()?;
        let vae_config: VaeConfig = parse_json(&texts[1], path)?;
        vae_config.validate()?;
        let scheduler_config: SchedulerConfig = parse_json(&texts[2], path)?;
        scheduler_config.validate()?;
        let (mut unet, mut vae) = (StateDict::new(), StateDict::new());
        for (name, t) in tensors {
            if let Some(k) = name.strip_prefix("unet.") {
                unet.insert(k.to_owned(), t);
            } else if let Some(k) = name.strip_prefix("vae.") {
                vae.insert(k.to_owned(), t);
            } else {
                return Err(bad(format!("tensor `{name}` is neither under `unet.` nor `vae.`")));
            }
        }
        Ok(Self {
            unet_config,
            vae_config,
            scheduler_config,
            unet,
            vae,
            config_texts: texts,
            origin: path.display().to_string(),
        })
    }

    /// Reads either a diffusers folder or a merged `.safetensors` file.
    pub fn open(path: &Path) -> Result<Self, DiffusionError> {
        if path.is_dir() { Self::from_diffusers_folder(path) } else { Self::from_merged_file(path) }
    }

    /// Writes the dual U-Net and the autoencoder, converted to `kind` (f16, bf16 or f32), with the
    /// three configs in the metadata, to one safetensors file (written to a temporary file, then
    /// renamed). A tensor stored in an integer or bool dtype is refused by name, never converted.
    pub fn write_merged(&self, path: &Path, kind: Kind) -> Result<(), DiffusionError> {
        let dtype = match kind {
            Kind::Float => Dtype::F32,
            Kind::Half => Dtype::F16,
            Kind::BFloat16 => Dtype::BF16,
            other => {
                return Err(DiffusionError::invalid(
                    "merged file kind",
                    format!("{other:?}, expected f32, f16 or bf16"),
                ));
            }
        };
        let mut wrong: Vec<KeyProblem> = [("unet", &self.unet), ("vae", &self.vae)]
            .iter()
            .flat_map(|(prefix, sd)| sd.iter().map(move |(k, t)| (format!("{prefix}.{k}"), dtype_name(t.kind()))))
            .filter(|(_, dtype)| !FLOAT_DTYPES.contains(&dtype.as_str()))
            .map(|(name, found)| KeyProblem::Dtype { name, found })
            .collect();
        if !wrong.is_empty() {
            wrong.sort_by_key(|p| p.to_string());
            return Err(DiffusionError::Keys {
                source_name: self.origin.clone(),
                model: "merged file".into(),
                problems: wrong,
            });
        }
        let mut entries: Vec<(String, TensorView)> = Vec::new();
        for (prefix, sd) in [("unet", &self.unet), ("vae", &self.vae)] {
            for (k, t) in sd {
                let shape = t.size().iter().map(|&d| d as usize).collect();
                entries.push((format!("{prefix}.{k}"), TensorView { tensor: t.shallow_clone(), kind, dtype, shape }));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        let metadata = HashMap::from([
            ("format".to_owned(), MERGED_FORMAT.to_owned()),
            ("unet_config".to_owned(), self.config_texts[0].clone()),
            ("vae_config".to_owned(), self.config_texts[1].clone()),
            ("scheduler_config".to_owned(), self.config_texts[2].clone()),
        ]);
        let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
        safetensors::tensor::serialize_to_file(entries, Some(metadata), &tmp)
            .map_err(|e| DiffusionError::Format { path: tmp.clone(), message: e.to_string() })?;
        std::fs::rename(&tmp, path).map_err(|error| DiffusionError::Io { path: path.to_path_buf(), error })?;
        info!(path = %path.display(), ?kind, "wrote merged Versatile Diffusion weights");
        Ok(())
    }
}

/// A tensor written lazily (converted per tensor while the file is written, to bound memory).
struct TensorView {
    tensor: Tensor,
    kind: Kind,
    dtype: Dtype,
    shape: Vec<usize>,
}

impl View for TensorView {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        &self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        let t = self.tensor.to_device(tch::Device::Cpu).to_kind(self.kind).contiguous();
        let mut bytes = vec![0u8; self.data_len()];
        t.copy_data_u8(&mut bytes, t.numel());
        Cow::Owned(bytes)
    }
    fn data_len(&self) -> usize {
        self.shape.iter().product::<usize>() * self.kind.elt_size_in_bytes()
    }
}

/// Named tensors in file order.
type NamedTensors = Vec<(String, Tensor)>;

/// Reads every tensor and the metadata of a safetensors file.
fn read_safetensors(path: &Path) -> Result<(NamedTensors, HashMap<String, String>), DiffusionError> {
    let bytes = std::fs::read(path).map_err(|error| DiffusionError::Io { path: path.to_path_buf(), error })?;
    let bad = |message: String| DiffusionError::Format { path: path.to_path_buf(), message };
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let metadata = header.metadata().clone().unwrap_or_default();
    let st = SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut out = Vec::new();
    for (name, view) in st.tensors() {
        // Integer and bool tensors are read as such: the model builders refuse them by name where
        // a parameter is expected (`WeightSource`), with every other problem of the file.
        let Some(dtype) = weight_files::Dtype::from_safetensors(view.dtype()) else {
            return Err(bad(format!(
                "tensor `{name}` has dtype {:?}, which this reader does not support; expected one of {}",
                view.dtype(),
                FLOAT_DTYPES.join(", ")
            )));
        };
        let kind = weight_files_tch::kind(dtype);
        let shape: Vec<i64> = view.shape().iter().map(|&d| d as i64).collect();
        out.push((name, Tensor::f_from_data_size(view.data(), &shape, kind)?));
    }
    Ok((out, metadata))
}

#[cfg(test)]
mod tests {
    use super::attention_position;

    #[test]
    fn attention_positions_are_found_only_in_unet_blocks() {
        assert_eq!(
            attention_position("down_blocks.2.attentions.1.transformer_blocks.0.attn2.to_k.weight"),
            Some(("down_blocks.2.attentions.1", "transformer_blocks.0.attn2.to_k.weight"))
        );
        assert_eq!(
            attention_position("mid_block.attentions.0.norm.bias"),
            Some(("mid_block.attentions.0", "norm.bias"))
        );
        assert_eq!(attention_position("up_blocks.3.resnets.0.conv1.weight"), None);
        assert_eq!(attention_position("encoder.mid_block.attentions.0.query.weight"), None);
        assert_eq!(attention_position("down_blocks.x.attentions.0.norm.bias"), None);
    }
}
