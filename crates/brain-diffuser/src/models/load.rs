//! [`ModelsDir`]: where each model's files lie in the models folder, and how each model is loaded
//! through its crate.

use std::path::{Path, PathBuf};

use clip::weights::find_checkpoint;
use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel};
use metrics::{Protocol, TorchvisionExtractor};
use tch::{Device, Kind};
use tracing::info;
use vdvae::{Vdvae, VdvaeConfig};
use versatile_diffusion::{VdWeights, VersatileDiffusion};

use super::{
    METRICS_FOLDER, MetricNetworkFile, ModelError, TINY_MARKER, TOKENIZER_FILES, VD_FOLDER, VD_HUB, VD_MERGED,
    VDVAE_CHECKPOINT, VDVAE_HPS, VDVAE_SAFETENSORS, VDVAE_URL, diffusers_weights, io_error, metric_networks_for,
};

/// The models folder of the `brain-diffuser` command line (layout in the [module docs](super)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsDir {
    pub(super) root: PathBuf,
}

impl ModelsDir {
    /// The models folder at `root` (nothing is read yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The folder's path.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file of a metric network: the download under its own name in `metrics/` (any
    /// `torch.save` format, as downloaded), else a converted `metrics/<file>` (safetensors); the
    /// download's path when neither is there.
    pub fn metric_network_path(&self, file: &MetricNetworkFile) -> PathBuf {
        let folder = self.root.join(METRICS_FOLDER);
        let download = folder.join(file.download_name());
        let converted = folder.join(file.file);
        if !download.is_file() && converted.is_file() { converted } else { download }
    }

    /// Whether the folder holds tiny random models written by [`write_tiny_models`](super::write_tiny_models).
    pub fn is_tiny(&self) -> bool {
        self.root.join(TINY_MARKER).is_file()
    }

    /// The VDVAE weight file the loader uses: the official `.th`, else `model.safetensors`.
    pub(super) fn vdvae_weights(&self) -> Option<PathBuf> {
        [VDVAE_CHECKPOINT, VDVAE_SAFETENSORS].iter().map(|p| self.root.join(p)).find(|p| p.is_file())
    }

    /// The VDVAE weight file [`load_vdvae`](Self::load_vdvae) reads, or where it belongs when absent
    /// (for messages about the loaded model).
    pub fn vdvae_checkpoint(&self) -> PathBuf {
        self.vdvae_weights().unwrap_or_else(|| self.root.join(VDVAE_CHECKPOINT))
    }

    /// Where the VDVAE configuration comes from: `vdvae/hps.json`, or `None` for the ImageNet-64 preset.
    pub fn vdvae_hps(&self) -> Option<PathBuf> {
        Some(self.root.join(VDVAE_HPS)).filter(|p| p.is_file())
    }

    /// The checkpoint file of a CLIP tower of the snapshot (`image_encoder` or `text_encoder`), or
    /// the folder when it holds none (for messages about the loaded model).
    pub fn clip_checkpoint(&self, tower: &str) -> PathBuf {
        let dir = self.vd_subfolder(tower);
        find_checkpoint(&dir).unwrap_or(dir)
    }

    /// The tokenizer folder of the snapshot.
    pub fn tokenizer_dir(&self) -> PathBuf {
        self.vd_subfolder("tokenizer")
    }

    /// The file the Versatile Diffusion U-Net weights are read from: the merged file when present,
    /// else `image_unet/`'s weight file (or the folder when it holds none).
    pub fn vd_unet_file(&self) -> PathBuf {
        let merged = self.root.join(VD_MERGED);
        if merged.is_file() {
            return merged;
        }
        let dir = self.vd_subfolder("image_unet");
        diffusers_weights(&dir).unwrap_or(dir)
    }

    /// The file the autoencoder's configuration is read from: the merged file when present, else
    /// `vae/config.json`.
    pub fn vd_vae_config_file(&self) -> PathBuf {
        let merged = self.root.join(VD_MERGED);
        if merged.is_file() { merged } else { self.vd_subfolder("vae").join("config.json") }
    }

    /// The VDVAE configuration: `vdvae/hps.json` when present, else ImageNet-64.
    pub(super) fn vdvae_config(&self) -> Result<VdvaeConfig, ModelError> {
        let path = self.root.join(VDVAE_HPS);
        if !path.is_file() {
            return Ok(VdvaeConfig::imagenet64());
        }
        let text = std::fs::read_to_string(&path).map_err(io_error(&path))?;
        VdvaeConfig::from_hps_json(&text).map_err(|error| ModelError::Vdvae { path, error: Box::new(error) })
    }

    /// Loads the VDVAE on `device` (f32): `vdvae/imagenet64-iter-1600000-model-ema.th`, or
    /// `vdvae/model.safetensors`, with the configuration of `vdvae/hps.json` (ImageNet-64 when absent).
    pub fn load_vdvae(&self, device: Device) -> Result<Vdvae, ModelError> {
        let path = self.vdvae_weights().ok_or_else(|| ModelError::Missing {
            what: "VDVAE",
            path: self.root.join(VDVAE_CHECKPOINT),
            expected: format!("the ImageNet-64 EMA checkpoint from {VDVAE_URL}, or {VDVAE_SAFETENSORS}"),
        })?;
        let config = self.vdvae_config()?;
        let model = Vdvae::load(&path, &config, device)
            .map_err(|error| ModelError::Vdvae { path: path.clone(), error: Box::new(error) })?;
        info!(path = %path.display(), "loaded VDVAE");
        Ok(model)
    }

    pub(super) fn vd_subfolder(&self, name: &str) -> PathBuf {
        self.root.join(VD_FOLDER).join(name)
    }

    fn hf_folder(&self, name: &str, what: &'static str) -> Result<PathBuf, ModelError> {
        let dir = self.vd_subfolder(name);
        if dir.join("config.json").is_file() {
            Ok(dir)
        } else {
            Err(ModelError::Missing {
                what,
                path: dir,
                expected: format!(
                    "config.json + pytorch_model.bin (or model.safetensors) from {VD_HUB}/{name}/ (shi-labs/versatile-diffusion)"
                ),
            })
        }
    }

    /// Loads Versatile Diffusion's CLIP ViT-L/14 image tower (`versatile-diffusion/image_encoder/`)
    /// on `device` in `kind`.
    pub fn load_clip_vision(&self, device: Device, kind: Kind) -> Result<ClipVisionModel, ModelError> {
        let dir = self.hf_folder("image_encoder", "CLIP vision tower")?;
        let model = ClipVisionModel::from_pretrained(&dir, device, kind)
            .map_err(|error| ModelError::Clip { path: dir.clone(), error: Box::new(error) })?;
        info!(path = %dir.display(), "loaded CLIP vision tower");
        Ok(model)
    }

    /// Loads Versatile Diffusion's CLIP ViT-L/14 text tower (`versatile-diffusion/text_encoder/`) on
    /// `device` in `kind`, and its tokenizer (`versatile-diffusion/tokenizer/`). The tokenizer's ids
    /// must fit the tower's vocabulary and its context length the tower's positions.
    pub fn load_clip_text(&self, device: Device, kind: Kind) -> Result<(ClipTextModel, ClipTokenizer), ModelError> {
        let dir = self.hf_folder("text_encoder", "CLIP text tower")?;
        let model = ClipTextModel::from_pretrained(&dir, device, kind)
            .map_err(|error| ModelError::Clip { path: dir.clone(), error: Box::new(error) })?;
        let tokenizer_dir = self.vd_subfolder("tokenizer");
        if !TOKENIZER_FILES.iter().any(|f| tokenizer_dir.join(f).is_file()) {
            return Err(ModelError::Missing {
                what: "CLIP tokenizer",
                path: tokenizer_dir,
                expected: format!("vocab.json + merges.txt from {VD_HUB}/tokenizer/"),
            });
        }
        let tokenizer = ClipTokenizer::from_dir(&tokenizer_dir)
            .map_err(|error| ModelError::Clip { path: tokenizer_dir.clone(), error: Box::new(error) })?;
        let c = model.config();
        if tokenizer.vocab_size() as i64 > c.vocab_size || tokenizer.context_length() as i64 > c.max_position_embeddings
        {
            return Err(ModelError::Invalid {
                path: tokenizer_dir,
                message: format!(
                    "the tokenizer ({} tokens, context {}) does not fit the text tower in {} (vocab_size {}, {} positions)",
                    tokenizer.vocab_size(),
                    tokenizer.context_length(),
                    dir.display(),
                    c.vocab_size,
                    c.max_position_embeddings
                ),
            });
        }
        info!(path = %dir.display(), "loaded CLIP text tower and tokenizer");
        Ok((model, tokenizer))
    }

    /// Loads Versatile Diffusion on `device`, the U-Net in `unet_kind` and the autoencoder in
    /// `vae_kind`: from `versatile-diffusion.safetensors` when present, else from the diffusers
    /// folders `versatile-diffusion/{image_unet,text_unet,vae,scheduler}`.
    pub fn load_versatile_diffusion(
        &self,
        device: Device,
        unet_kind: Kind,
        vae_kind: Kind,
    ) -> Result<VersatileDiffusion, ModelError> {
        let merged = self.root.join(VD_MERGED);
        let (path, weights) = if merged.is_file() {
            let weights = VdWeights::from_merged_file(&merged);
            (merged, weights)
        } else {
            let folder = self.root.join(VD_FOLDER);
            if !folder.join("image_unet").is_dir() {
                return Err(ModelError::Missing {
                    what: "Versatile Diffusion",
                    path: folder.join("image_unet"),
                    expected: format!(
                        "the diffusers folders image_unet/, text_unet/, vae/, scheduler/ of shi-labs/versatile-diffusion, \
                         or {VD_MERGED} written by vd-convert"
                    ),
                });
            }
            let weights = VdWeights::from_diffusers_folder(&folder);
            (folder, weights)
        };
        let weights = weights.map_err(|error| ModelError::Diffusion { path: path.clone(), error: Box::new(error) })?;
        let model = VersatileDiffusion::from_weights(weights, device, unet_kind, vae_kind)
            .map_err(|error| ModelError::Diffusion { path: path.clone(), error: Box::new(error) })?;
        info!(path = %path.display(), "loaded Versatile Diffusion");
        Ok(model)
    }

    /// Loads the torchvision metric networks that `protocol` scores with and whose files are in
    /// `metrics/` (see [`metric_networks_for`]), keyed by their `metrics::protocol::slots` name.
    /// Absent files are skipped (evaluation leaves their columns out); a present file that does not
    /// load is an error.
    pub fn load_metric_networks(
        &self,
        device: Device,
        protocol: &Protocol,
    ) -> Result<Vec<(&'static str, TorchvisionExtractor)>, ModelError> {
        let mut out = Vec::new();
        for file in metric_networks_for(protocol) {
            let path = self.metric_network_path(&file);
            if !path.is_file() {
                info!(path = %path.display(), network = file.slot, "metric network absent; its columns are skipped");
                continue;
            }
            let extractor = TorchvisionExtractor::load(file.network, &path, device).map_err(|error| {
                ModelError::Metrics { network: file.slot, path: path.clone(), error: Box::new(error) }
            })?;
            out.push((file.slot, extractor));
        }
        Ok(out)
    }

    /// Loads the network of the CLIP metric (the image tower of `versatile-diffusion/image_encoder/`,
    /// f32 as Brain-Diffuser's protocol runs it), or `None` when that folder is absent.
    pub fn load_clip_metric(&self, device: Device) -> Result<Option<ClipVisionModel>, ModelError> {
        if !self.vd_subfolder("image_encoder").join("config.json").is_file() {
            return Ok(None);
        }
        self.load_clip_vision(device, Kind::Float).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tiny_models::{write_text, write_tiny_models};
    use crate::models::ModelStatus;
    use metrics::TorchvisionNetwork;
    use metrics::protocol::slots;

    #[test]
    fn a_valid_metric_network_file_is_valid_and_loads_for_its_protocol_only() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(METRICS_FOLDER).join("efficientnet_b1_v2.safetensors");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        TorchvisionExtractor::with_synthetic_weights(TorchvisionNetwork::EfficientNetB1, Device::Cpu)
            .unwrap()
            .save_weights(&path)
            .unwrap();
        let dir = ModelsDir::new(tmp.path());
        assert_eq!(dir.check().get("EfficientNet-B1 V2").unwrap().status, ModelStatus::Valid);
        assert!(dir.load_metric_networks(Device::Cpu, &Protocol::brain_diffuser()).unwrap().is_empty());
        let loaded = dir.load_metric_networks(Device::Cpu, &Protocol::mindeye()).unwrap();
        assert_eq!(loaded.iter().map(|(slot, _)| *slot).collect::<Vec<_>>(), [slots::EFFICIENTNET_B1]);
    }

    /// `{:#}` of `error` as the command line prints it (anyhow, through the workflow's error type).
    fn printed(error: ModelError) -> String {
        let error = anyhow::Error::from(crate::workflow::WorkflowError::from(error)).context("reconstruct");
        format!("{error:#}")
    }

    #[test]
    fn load_errors_say_their_root_cause_and_path_once() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 8).unwrap();
        let dir = ModelsDir::new(tmp.path());
        let once = |text: &str, part: &str| assert_eq!(text.matches(part).count(), 1, "{part:?} in {text}");

        let vdvae = tmp.path().join(VDVAE_SAFETENSORS);
        std::fs::write(&vdvae, b"hello, not a checkpoint").unwrap();
        let text = printed(dir.load_vdvae(Device::Cpu).unwrap_err());
        once(&text, "unknown format");
        once(&text, &vdvae.display().to_string());

        // An OS error read through the versatile-diffusion crate (the doubled message).
        let config = tmp.path().join("versatile-diffusion/vae/config.json");
        std::fs::remove_file(&config).unwrap();
        let Err(err) = dir.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float) else { panic!("loaded") };
        let text = printed(err);
        once(&text, "No such file or directory");
        once(&text, &config.display().to_string());

        let clip = tmp.path().join("versatile-diffusion/image_encoder/model.safetensors");
        std::fs::write(&clip, [255u8; 16]).unwrap();
        let text = printed(dir.load_clip_vision(Device::Cpu, Kind::Float).unwrap_err());
        once(&text, "does not fit the file");
        once(&text, &clip.display().to_string());

        let metric = tmp.path().join(METRICS_FOLDER).join("alexnet.safetensors");
        write_text(&metric, "garbage").unwrap();
        let text = printed(dir.load_metric_networks(Device::Cpu, &Protocol::mindeye()).unwrap_err());
        once(&text, "not a readable safetensors file");
        once(&text, &metric.display().to_string());

        // A crate error that names its file: the wrapper does not repeat the path.
        let text = printed(ModelError::Vdvae {
            path: vdvae.clone(),
            error: Box::new(vdvae::VdvaeError::Io {
                path: vdvae.clone(),
                error: std::io::Error::other("disk on fire"),
            }),
        });
        once(&text, "disk on fire");
        once(&text, &vdvae.display().to_string());
    }
}
