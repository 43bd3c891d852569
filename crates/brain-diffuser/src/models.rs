//! The models folder: where the `brain-diffuser` command line finds every checkpoint, how each one is
//! loaded through its crate, a check that reports what is present, missing or broken (with the URL to
//! fetch and the path to put it at), and a writer of tiny random-weight models in the same layout.
//!
//! ```text
//! models/
//!   vdvae/imagenet64-iter-1600000-model-ema.th   openai/vdvae ImageNet-64 EMA weights
//!                                                 (or vdvae/model.safetensors)
//!   vdvae/hps.json                                optional reference hps JSON (absent: ImageNet-64)
//!   versatile-diffusion/                          diffusers snapshot of shi-labs/versatile-diffusion:
//!     image_unet/ text_unet/ vae/ scheduler/      dual U-Net, AutoencoderKL, DDIM config
//!     image_encoder/ text_encoder/ tokenizer/     VD's CLIP ViT-L/14 towers and tokenizer
//!   versatile-diffusion.safetensors               optional merged file from `vd-convert`; preferred
//!                                                 over the U-Net and VAE folders when present
//!   metrics/                                      torchvision networks as .safetensors (see METRIC_NETWORKS)
//!   TINY-RANDOM-MODELS.txt                        only in folders written by write_tiny_models
//! ```
//!
//! The CLIP metric uses VD's `image_encoder/`: diffusers' conversion script for Versatile Diffusion
//! (`scripts/convert_versatile_diffusion_to_diffusers.py`) takes the tokenizer and both CLIP towers
//! from `openai/clip-vit-large-patch14`, the OpenAI ViT-L/14 weights the metric protocols use (the
//! files were not compared by hash). See `docs/models.md`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use clip::weights::{find_checkpoint, is_legacy_buffer};
use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel, TextConfig, VisionConfig};
use metrics::protocol::slots;
use metrics::{Protocol, TorchvisionExtractor, TorchvisionNetwork};
use tch::{Device, Kind, Tensor};
use tracing::info;
use vdvae::{Vdvae, VdvaeConfig, WeightInit};
use versatile_diffusion::checkpoint::{MERGED_FORMAT, StateDict, assemble_dual_unet, rename_legacy_vae_keys};
use versatile_diffusion::{
    AutoencoderKl, DualUNet, Manifest, SchedulerConfig, UNetConfig, VaeConfig, VdWeights, VersatileDiffusion,
};

/// Marker file of a folder written by [`write_tiny_models`]; [`ModelsDir::check`] reports its
/// models as tiny random stand-ins, never as valid.
pub const TINY_MARKER: &str = "TINY-RANDOM-MODELS.txt";
/// The official VDVAE checkpoint, relative to the models folder.
pub const VDVAE_CHECKPOINT: &str = "vdvae/imagenet64-iter-1600000-model-ema.th";
/// The VDVAE weights as safetensors (used when the official checkpoint is absent).
pub const VDVAE_SAFETENSORS: &str = "vdvae/model.safetensors";
/// The optional VDVAE hyper-parameters (reference `hps` JSON); absent means ImageNet-64.
pub const VDVAE_HPS: &str = "vdvae/hps.json";
/// The diffusers snapshot of `shi-labs/versatile-diffusion`.
pub const VD_FOLDER: &str = "versatile-diffusion";
/// The merged dual-U-Net + VAE file written by `vd-convert`; preferred over the folders when present.
pub const VD_MERGED: &str = "versatile-diffusion.safetensors";
/// The folder of the torchvision metric networks.
pub const METRICS_FOLDER: &str = "metrics";

const VDVAE_URL: &str = "https://openaipublic.blob.core.windows.net/very-deep-vaes-assets/vdvae-assets-2/imagenet64-iter-1600000-model-ema.th";
const VD_HUB: &str = "https://huggingface.co/shi-labs/versatile-diffusion/resolve/main";
/// Weight file names of a diffusers model folder, in the order `versatile-diffusion` looks for them.
const DIFFUSERS_WEIGHTS: [&str; 4] = [
    "diffusion_pytorch_model.safetensors",
    "diffusion_pytorch_model.bin",
    "diffusion_pytorch_model.fp16.safetensors",
    "diffusion_pytorch_model.fp16.bin",
];
/// Tokenizer files `ClipTokenizer::from_dir` reads (any one set of them).
const TOKENIZER_FILES: [&str; 4] = ["tokenizer.json", "vocab.json", "merges.txt", "bpe_simple_vocab_16e6.txt.gz"];
/// CLIP ViT-L/14's vocabulary size and special ids.
const CLIP_VOCAB: (usize, u32, u32) = (49408, 49406, 49407);

/// Versatile Diffusion's `image_unet/config.json` (diffusers' conversion settings; the dual U-Net has
/// this layout).
const VD_UNET_CONFIG: &str = r#"{
  "in_channels": 4, "out_channels": 4, "block_out_channels": [320, 640, 1280, 1280],
  "layers_per_block": 2, "attention_head_dim": 8, "cross_attention_dim": 768,
  "norm_num_groups": 32, "norm_eps": 1e-05, "flip_sin_to_cos": true, "freq_shift": 0,
  "act_fn": "silu", "downsample_padding": 1, "mid_block_scale_factor": 1,
  "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
  "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"]
}"#;
/// Versatile Diffusion's `vae/config.json` (kl-f8).
const VD_VAE_CONFIG: &str = r#"{
  "in_channels": 3, "out_channels": 3, "latent_channels": 4, "block_out_channels": [128, 256, 512, 512],
  "layers_per_block": 2, "norm_num_groups": 32, "act_fn": "silu",
  "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
  "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"]
}"#;

/// Everything that can go wrong while finding, loading, checking or writing models.
///
/// Each message is complete and says each thing once: a variant that wraps another crate's error
/// prints that error's text (prefixed with the path only where the text does not name it already)
/// and does not also return it from [`std::error::Error::source`], so anyhow's `{:#}` repeats nothing.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A model's file or folder is not in the models folder.
    #[error("{what} not found: expected {path} ({expected})")]
    Missing {
        /// The model, e.g. "VDVAE".
        what: &'static str,
        /// Where it was looked for.
        path: PathBuf,
        /// What belongs there.
        expected: String,
    },
    /// A file or folder is present but holds something the loaders cannot use.
    #[error("{path}: {message}")]
    Invalid {
        /// The offending file or folder.
        path: PathBuf,
        /// What is wrong and what was expected.
        message: String,
    },
    /// A configuration value that a loaded checkpoint contradicts.
    #[error("configuration `{key}` = {value} does not fit {}: {evidence}; {fix}", file.display())]
    ConfigMismatch {
        /// The configuration key, e.g. `clip.embedding_dim`.
        key: &'static str,
        /// Its value in the configuration.
        value: String,
        /// The checkpoint (or model configuration) file that says otherwise.
        file: PathBuf,
        /// What the file holds, naming the tensor and its shape.
        evidence: String,
        /// The value that fits, or what to change.
        fix: String,
    },
    /// The `vdvae` crate failed on a file of the folder.
    #[error("{}", located("VDVAE", path, error))]
    Vdvae {
        /// The checkpoint or configuration.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<vdvae::VdvaeError>,
    },
    /// The `clip` crate failed on a folder.
    #[error("{}", located("CLIP", path, error))]
    Clip {
        /// The model or tokenizer folder.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<clip::ClipError>,
    },
    /// The `versatile-diffusion` crate failed on the snapshot or the merged file.
    #[error("{}", located("Versatile Diffusion", path, error))]
    Diffusion {
        /// The folder or merged file.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<versatile_diffusion::DiffusionError>,
    },
    /// The `metrics` crate failed on a network's weights.
    #[error("{}", located(&format!("metric network {network}"), path, error))]
    Metrics {
        /// The network's slot name.
        network: &'static str,
        /// Its weight file.
        path: PathBuf,
        /// The crate's error (boxed: key reports are large).
        error: Box<metrics::MetricsError>,
    },
    /// A file could not be read or written.
    #[error("cannot access {}: {error}", path.display())]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The system's error.
        error: std::io::Error,
    },
    /// libtorch failed while writing tensors.
    #[error("cannot write {}: {error}", path.display())]
    Torch {
        /// The file being written.
        path: PathBuf,
        /// libtorch's error.
        error: tch::TchError,
    },
}

/// `what path: error`, or `what: error` when the error's text already names `path` (the crates'
/// errors name the file they failed on), so that no path is printed twice.
fn located(what: &str, path: &Path, error: &dyn std::error::Error) -> String {
    let text = crate::error::chain_text(error);
    let shown = path.display().to_string();
    if text.contains(&shown) { format!("{what}: {text}") } else { format!("{what} {shown}: {text}") }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> ModelError + '_ {
    move |error| ModelError::Io { path: path.to_path_buf(), error }
}

/// One torchvision metric network file of the `metrics/` folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricNetworkFile {
    /// Name in reports, e.g. "EfficientNet-B1 V2".
    pub name: &'static str,
    /// The protocols that use this file.
    pub used_by: &'static str,
    /// The `metrics::protocol::slots` name the network fills.
    pub slot: &'static str,
    /// The network.
    pub network: TorchvisionNetwork,
    /// File name inside `metrics/` (safetensors, converted from the download).
    pub file: &'static str,
    /// The weights it must hold, as the protocols name them (e.g. `IMAGENET1K_V1`).
    pub weights: &'static str,
    /// Where the original checkpoint is downloaded from.
    pub url: &'static str,
    /// Size of the download as torchvision lists it, when known.
    pub size: Option<&'static str>,
}

/// The metric networks the models folder can hold. Both EfficientNet-B1 weight sets are listed:
/// Brain-Diffuser's protocol means `IMAGENET1K_V1`, MindEye's `IMAGENET1K_V2` (same slot).
pub const METRIC_NETWORKS: [MetricNetworkFile; 5] = [
    MetricNetworkFile {
        name: "AlexNet",
        used_by: "metric (both protocols)",
        slot: slots::ALEXNET,
        network: TorchvisionNetwork::AlexNet,
        file: "alexnet.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth",
        size: Some("233 MB"),
    },
    MetricNetworkFile {
        name: "Inception v3",
        used_by: "metric (both protocols)",
        slot: slots::INCEPTION_V3,
        network: TorchvisionNetwork::InceptionV3,
        file: "inception_v3.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/inception_v3_google-0cc3c7bd.pth",
        size: Some("104 MB"),
    },
    MetricNetworkFile {
        name: "EfficientNet-B1 V1",
        used_by: "metric (brain-diffuser protocol)",
        slot: slots::EFFICIENTNET_B1,
        network: TorchvisionNetwork::EfficientNetB1,
        file: "efficientnet_b1_v1.safetensors",
        weights: "IMAGENET1K_V1",
        url: "https://download.pytorch.org/models/efficientnet_b1_rwightman-bac287d4.pth",
        size: Some("30 MB"),
    },
    MetricNetworkFile {
        name: "EfficientNet-B1 V2",
        used_by: "metric (mindeye protocol)",
        slot: slots::EFFICIENTNET_B1,
        network: TorchvisionNetwork::EfficientNetB1,
        file: "efficientnet_b1_v2.safetensors",
        weights: "IMAGENET1K_V2",
        url: "https://download.pytorch.org/models/efficientnet_b1-c27df63c.pth",
        size: Some("30 MB"),
    },
    MetricNetworkFile {
        name: "SwAV ResNet-50",
        used_by: "metric (both protocols)",
        slot: slots::SWAV_RESNET50,
        network: TorchvisionNetwork::SwavResNet50,
        file: "swav.safetensors",
        weights: "swav_800ep_pretrain",
        url: "https://dl.fbaipublicfiles.com/deepcluster/swav_800ep_pretrain.pth.tar",
        size: None,
    },
];

/// The metric network files `protocol` uses, one per torchvision slot it scores with: for a slot
/// with several files (EfficientNet-B1), the one whose weights the protocol names.
pub fn metric_networks_for(protocol: &Protocol) -> Vec<MetricNetworkFile> {
    let mut out: Vec<MetricNetworkFile> = Vec::new();
    for file in METRIC_NETWORKS {
        if out.iter().any(|f| f.slot == file.slot) || !protocol.feature_metrics.iter().any(|m| m.extractor == file.slot)
        {
            continue;
        }
        let meant = protocol.weights.iter().find(|(slot, _)| slot == file.slot).map(|(_, w)| w.as_str());
        let candidates: Vec<MetricNetworkFile> =
            METRIC_NETWORKS.iter().copied().filter(|f| f.slot == file.slot).collect();
        let chosen = candidates.iter().find(|f| meant.is_some_and(|w| w.contains(f.weights))).unwrap_or(&file);
        out.push(*chosen);
    }
    out
}

/// The models folder of the `brain-diffuser` command line (layout in the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsDir {
    root: PathBuf,
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

    /// Whether the folder holds tiny random models written by [`write_tiny_models`].
    pub fn is_tiny(&self) -> bool {
        self.root.join(TINY_MARKER).is_file()
    }

    /// The VDVAE weight file the loader uses: the official `.th`, else `model.safetensors`.
    fn vdvae_weights(&self) -> Option<PathBuf> {
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
    fn vdvae_config(&self) -> Result<VdvaeConfig, ModelError> {
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

    fn vd_subfolder(&self, name: &str) -> PathBuf {
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
            let path = self.root.join(METRICS_FOLDER).join(file.file);
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

    /// Checks every expected model (see [`ModelsReport`]). A model is valid when its files are
    /// present and every tensor the loader needs is there with the full-size model's shape (names
    /// and shapes come from the crates' configuration-only listings; torchvision networks are built
    /// one at a time). safetensors files are checked from their header; zip `torch.save` files
    /// (`.th`, `.bin`) are read whole, one at a time (VD's `text_unet` `.bin` needs about 7 GB of
    /// host memory). In a folder written by [`write_tiny_models`], models are compared with their
    /// own (tiny) configurations and reported as tiny random stand-ins.
    pub fn check(&self) -> ModelsReport {
        let tiny = self.is_tiny();
        let mut entries = Vec::new();
        let mut push = |name, role, outcome: Outcome, real: bool, downloads, note| {
            let (path, status) = match outcome {
                Outcome::Missing(path) => (path, ModelStatus::Missing),
                Outcome::Invalid(path, reason) => (path, ModelStatus::Invalid(reason)),
                Outcome::Present(path) if tiny && !real => (path, ModelStatus::TinyRandom),
                Outcome::Present(path) => (path, ModelStatus::Valid),
            };
            entries.push(ModelEntry { name, role, path, status, downloads, note });
        };
        let hub = |files: &[&str], size: &[Option<&'static str>]| -> Vec<Download> {
            files
                .iter()
                .zip(size)
                .map(|(f, s)| Download { url: format!("{VD_HUB}/{f}"), to: PathBuf::from(VD_FOLDER).join(f), size: *s })
                .collect()
        };
        let merged_note =
            || Some(format!("or {VD_MERGED} from `vd-convert` (made from the folders once; then preferred)"));

        push(
            "VDVAE",
            "stage 1: latents and initial guesses",
            self.check_vdvae(tiny),
            false,
            vec![Download { url: VDVAE_URL.into(), to: VDVAE_CHECKPOINT.into(), size: Some("about 500 MB") }],
            None,
        );
        push(
            "VD U-Nets",
            "stage 2: dual-guided U-Net",
            self.check_vd_unet(tiny),
            false,
            hub(
                &[
                    "image_unet/config.json",
                    "image_unet/diffusion_pytorch_model.bin",
                    "text_unet/config.json",
                    "text_unet/diffusion_pytorch_model.bin",
                ],
                &[None, Some("3.44 GB"), None, Some("6.84 GB")],
            ),
            merged_note(),
        );
        push(
            "VD VAE",
            "stage 2: AutoencoderKL",
            self.check_vd_vae(tiny),
            false,
            hub(&["vae/config.json", "vae/diffusion_pytorch_model.bin"], &[None, Some("335 MB")]),
            merged_note(),
        );
        push(
            "VD scheduler",
            "stage 2: DDIM configuration",
            self.check_vd_scheduler(tiny),
            false,
            hub(&["scheduler/scheduler_config.json"], &[None]),
            None,
        );
        push(
            "CLIP vision",
            "stage 2 features; CLIP metric",
            self.check_clip_vision(tiny),
            false,
            hub(&["image_encoder/config.json", "image_encoder/pytorch_model.bin"], &[None, Some("1.22 GB")]),
            None,
        );
        push(
            "CLIP text",
            "stage 2 caption features",
            self.check_clip_text(tiny),
            false,
            hub(&["text_encoder/config.json", "text_encoder/pytorch_model.bin"], &[None, None]),
            None,
        );
        push(
            "CLIP tokenizer",
            "stage 2 caption features",
            self.check_tokenizer(tiny),
            false,
            hub(&["tokenizer/vocab.json", "tokenizer/merges.txt"], &[None, None]),
            None,
        );
        for file in METRIC_NETWORKS {
            push(
                file.name,
                file.used_by,
                self.check_metric_network(&file),
                true,
                vec![Download {
                    url: file.url.into(),
                    to: PathBuf::from(METRICS_FOLDER).join(file.file),
                    size: file.size,
                }],
                Some(format!(
                    "convert the download once: python tools/metrics/convert_checkpoint.py {} {METRICS_FOLDER}/{}",
                    file.url.rsplit('/').next().unwrap_or(file.url),
                    file.file
                )),
            );
        }
        ModelsReport { root: self.root.clone(), tiny, entries }
    }

    fn check_vdvae(&self, tiny: bool) -> Outcome {
        let Some(path) = self.vdvae_weights() else {
            return Outcome::Missing(self.root.join(VDVAE_CHECKPOINT));
        };
        let result = (|| -> Result<(), String> {
            let hps = self.root.join(VDVAE_HPS);
            let full = shapes(VdvaeConfig::imagenet64().parameter_shapes().map_err(|e| e.to_string())?);
            let expected = if hps.is_file() {
                let own = self.vdvae_config().map_err(|e| e.to_string())?;
                let own = shapes(own.parameter_shapes().map_err(|e| e.to_string())?);
                if !tiny && own != full {
                    return Err(format!("{} describes another architecture than ImageNet-64", hps.display()));
                }
                own
            } else if tiny {
                return Err(format!("{} is missing (tiny models carry their configuration)", hps.display()));
            } else {
                full
            };
            let found = strip_module(tensor_listing(&path)?);
            compare(&expected, &found, |_| false)
        })();
        outcome(path, result)
    }

    fn check_vd_unet(&self, tiny: bool) -> Outcome {
        let merged = self.root.join(VD_MERGED);
        if merged.is_file() {
            let result = (|| -> Result<(), String> {
                let (header, unet_config, _, _) = merged_header(&merged)?;
                let found: Listing = header
                    .tensors
                    .iter()
                    .filter_map(|(k, s)| k.strip_prefix("unet.").map(|k| (k.to_owned(), s.clone())))
                    .collect();
                compare(&unet_expected(&unet_config, tiny, &merged)?, &found, |_| false)
            })();
            return outcome(merged, result);
        }
        let image_dir = self.vd_subfolder("image_unet");
        let text_dir = self.vd_subfolder("text_unet");
        let mut files = Vec::new();
        for dir in [&image_dir, &text_dir] {
            if !dir.join("config.json").is_file() {
                return Outcome::Missing(dir.join("config.json"));
            }
            match diffusers_weights(dir) {
                Some(file) => files.push(file),
                None => return Outcome::Missing(dir.join("diffusion_pytorch_model.bin")),
            }
        }
        let result = (|| -> Result<(), String> {
            let config_path = image_dir.join("config.json");
            let config = UNetConfig::from_file(&config_path).map_err(|e| e.to_string())?;
            read_json_value(&text_dir.join("config.json"))?;
            let expected = unet_expected(&config, tiny, &config_path)?;
            let image = placeholders(&tensor_listing(&files[0])?, &files[0])?;
            let text = placeholders(&tensor_listing(&files[1])?, &files[1])?;
            let dual = assemble_dual_unet(image, Some(text)).map_err(|e| e.to_string())?;
            compare(&expected, &state_dict_listing(&dual), |_| false)
        })();
        outcome(image_dir, result)
    }

    fn check_vd_vae(&self, tiny: bool) -> Outcome {
        let merged = self.root.join(VD_MERGED);
        if merged.is_file() {
            let result = (|| -> Result<(), String> {
                let (header, _, vae_config, _) = merged_header(&merged)?;
                let found: Listing = header
                    .tensors
                    .iter()
                    .filter_map(|(k, s)| k.strip_prefix("vae.").map(|k| (k.to_owned(), s.clone())))
                    .collect();
                compare(&vae_expected(&vae_config, tiny, &merged)?, &found, |_| false)
            })();
            return outcome(merged, result);
        }
        let dir = self.vd_subfolder("vae");
        if !dir.join("config.json").is_file() {
            return Outcome::Missing(dir.join("config.json"));
        }
        let Some(file) = diffusers_weights(&dir) else {
            return Outcome::Missing(dir.join("diffusion_pytorch_model.bin"));
        };
        let result = (|| -> Result<(), String> {
            let config_path = dir.join("config.json");
            let config = VaeConfig::from_file(&config_path).map_err(|e| e.to_string())?;
            let expected = vae_expected(&config, tiny, &config_path)?;
            let renamed = rename_legacy_vae_keys(placeholders(&tensor_listing(&file)?, &file)?);
            compare(&expected, &state_dict_listing(&renamed), |_| false)
        })();
        outcome(file, result)
    }

    fn check_vd_scheduler(&self, tiny: bool) -> Outcome {
        let merged = self.root.join(VD_MERGED);
        let (path, config) = if merged.is_file() {
            (merged.clone(), merged_header(&merged).map(|(_, _, _, scheduler)| scheduler))
        } else {
            let path = self.vd_subfolder("scheduler").join("scheduler_config.json");
            if !path.is_file() {
                return Outcome::Missing(path);
            }
            let config = SchedulerConfig::from_file(&path).map_err(|e| e.to_string());
            (path, config)
        };
        let result = config.and_then(|config| {
            let vd = SchedulerConfig::versatile_diffusion();
            if tiny || config == vd {
                Ok(())
            } else {
                Err(format!(
                    "{} is not Versatile Diffusion's DDIM configuration: {config:?}, expected {vd:?}",
                    path.display()
                ))
            }
        });
        outcome(path, result)
    }

    fn clip_folder(&self, name: &str) -> Result<(PathBuf, PathBuf), Outcome> {
        let dir = self.vd_subfolder(name);
        if !dir.join("config.json").is_file() {
            return Err(Outcome::Missing(dir.join("config.json")));
        }
        match find_checkpoint(&dir) {
            Ok(file) => Ok((dir, file)),
            Err(_) => Err(Outcome::Missing(dir.join("pytorch_model.bin"))),
        }
    }

    fn check_clip_vision(&self, tiny: bool) -> Outcome {
        let (dir, file) = match self.clip_folder("image_encoder") {
            Ok(found) => found,
            Err(missing) => return missing,
        };
        let result = (|| -> Result<(), String> {
            let config = VisionConfig::from_file(dir.join("config.json")).map_err(|e| e.to_string())?;
            let own = shapes(clip::vision_parameter_shapes(&config, config.projection().map_err(|e| e.to_string())?));
            let full = shapes(clip::vision_parameter_shapes(&VisionConfig::vit_l14(), 768));
            if !tiny && own != full {
                return Err(format!("{}/config.json describes another tower than CLIP ViT-L/14's", dir.display()));
            }
            let ignorable = |k: &str| {
                is_legacy_buffer(k)
                    || k.starts_with("text_model.")
                    || k.starts_with("text_projection.")
                    || k == "logit_scale"
            };
            compare(&own, &tensor_listing(&file)?, ignorable)
        })();
        outcome(file, result)
    }

    fn check_clip_text(&self, tiny: bool) -> Outcome {
        let (dir, file) = match self.clip_folder("text_encoder") {
            Ok(found) => found,
            Err(missing) => return missing,
        };
        let result = (|| -> Result<(), String> {
            let config = TextConfig::from_file(dir.join("config.json")).map_err(|e| e.to_string())?;
            let own = shapes(clip::text_parameter_shapes(&config, config.projection().map_err(|e| e.to_string())?));
            let full = shapes(clip::text_parameter_shapes(&TextConfig::vit_l14(), 768));
            if !tiny && own != full {
                return Err(format!("{}/config.json describes another tower than CLIP ViT-L/14's", dir.display()));
            }
            let ignorable = |k: &str| {
                is_legacy_buffer(k)
                    || k.starts_with("vision_model.")
                    || k.starts_with("visual_projection.")
                    || k == "logit_scale"
            };
            compare(&own, &tensor_listing(&file)?, ignorable)
        })();
        outcome(file, result)
    }

    fn check_tokenizer(&self, tiny: bool) -> Outcome {
        let dir = self.vd_subfolder("tokenizer");
        if !TOKENIZER_FILES.iter().any(|f| dir.join(f).is_file()) {
            return Outcome::Missing(dir.join("vocab.json"));
        }
        let result = ClipTokenizer::from_dir(&dir).map_err(|e| e.to_string()).and_then(|t| {
            let found = (t.vocab_size(), t.bos_id(), t.eos_id());
            if tiny || found == CLIP_VOCAB {
                Ok(())
            } else {
                Err(format!(
                    "{}: (vocabulary size, start id, end id) = {found:?}, CLIP's are {CLIP_VOCAB:?}",
                    dir.display()
                ))
            }
        });
        outcome(dir, result)
    }

    fn check_metric_network(&self, file: &MetricNetworkFile) -> Outcome {
        let path = self.root.join(METRICS_FOLDER).join(file.file);
        if !path.is_file() {
            return Outcome::Missing(path);
        }
        let result = tensor_listing(&path).and_then(|found| {
            // Built one at a time and dropped at once: the crate has no configuration-only listing.
            let expected = shapes(TorchvisionExtractor::new(file.network, Device::Cpu).parameter_shapes());
            // The loader ignores entries the network does not use (classifier, projection head, ...).
            compare(&expected, &strip_module(found), |_| true)
        });
        outcome(path, result)
    }
}

/// What a check found before it is turned into a [`ModelStatus`].
enum Outcome {
    Missing(PathBuf),
    Present(PathBuf),
    Invalid(PathBuf, String),
}

fn outcome(path: PathBuf, result: Result<(), String>) -> Outcome {
    match result {
        Ok(()) => Outcome::Present(path),
        Err(reason) => Outcome::Invalid(path, reason),
    }
}

/// The state of one expected model in a [`ModelsReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelStatus {
    /// Present, and every tensor the loader needs has the full-size model's name and shape.
    Valid,
    /// Present and consistent with its own configuration, but a tiny random-weight stand-in written
    /// by [`write_tiny_models`] (synthetic: never counted as valid).
    TinyRandom,
    /// Not in the folder.
    Missing,
    /// Present but unusable; the reason names the file and what was expected.
    Invalid(String),
}

impl fmt::Display for ModelStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ModelStatus::Valid => "present, valid",
            ModelStatus::TinyRandom => "tiny random (synthetic)",
            ModelStatus::Missing => "MISSING",
            ModelStatus::Invalid(_) => "INVALID",
        })
    }
}

/// One file to download for a model and where it goes in the models folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Download {
    /// Where to download it from.
    pub url: String,
    /// Where to put it, relative to the models folder.
    pub to: PathBuf,
    /// Its size, when known.
    pub size: Option<&'static str>,
}

/// One expected model of the folder and what [`ModelsDir::check`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelEntry {
    /// Short name, e.g. "VDVAE" or "VD U-Nets".
    pub name: &'static str,
    /// What the pipeline uses it for.
    pub role: &'static str,
    /// The file or folder checked; for a missing model, the first thing absent.
    pub path: PathBuf,
    /// What was found.
    pub status: ModelStatus,
    /// The files that make up the model, with their sources.
    pub downloads: Vec<Download>,
    /// An extra step or alternative (conversion, merged file).
    pub note: Option<String>,
}

/// The result of [`ModelsDir::check`]: one entry per expected model, printable as a table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelsReport {
    /// The models folder.
    pub root: PathBuf,
    /// Whether the folder holds tiny random models ([`TINY_MARKER`]).
    pub tiny: bool,
    /// The models, in pipeline order, metric networks last.
    pub entries: Vec<ModelEntry>,
}

impl ModelsReport {
    /// True when every expected model is present and valid at full size (never for tiny models).
    pub fn all_present_and_valid(&self) -> bool {
        self.entries.iter().all(|e| e.status == ModelStatus::Valid)
    }

    /// True when every model the reconstruction needs (all but the metric networks, whose absence
    /// only drops their evaluation columns) is present and valid at full size.
    pub fn reconstruction_ready(&self) -> bool {
        self.entries
            .iter()
            .filter(|e| !METRIC_NETWORKS.iter().any(|m| m.name == e.name))
            .all(|e| e.status == ModelStatus::Valid)
    }

    /// The entry named `name`, if any.
    pub fn get(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    fn relative<'a>(&self, path: &'a Path) -> &'a Path {
        path.strip_prefix(&self.root).unwrap_or(path)
    }
}

impl fmt::Display for ModelsReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "models folder: {}", self.root.display())?;
        if self.tiny {
            writeln!(
                f,
                "  TINY RANDOM MODELS ({TINY_MARKER}): synthetic stand-ins for end-to-end runs, not the published weights"
            )?;
        }
        let name_w = self.entries.iter().map(|e| e.name.len()).max().unwrap_or(5).max(5);
        let status_w = self.entries.iter().map(|e| e.status.to_string().len()).max().unwrap_or(6).max(6);
        let path_w = self.entries.iter().map(|e| self.relative(&e.path).display().to_string().len()).max().unwrap_or(4);
        writeln!(f)?;
        writeln!(f, "{:<name_w$}  {:<status_w$}  {:<path_w$}  used for", "model", "status", "path")?;
        for e in &self.entries {
            let path = self.relative(&e.path).display().to_string();
            writeln!(f, "{:<name_w$}  {:<status_w$}  {:<path_w$}  {}", e.name, e.status.to_string(), path, e.role)?;
        }
        let invalid: Vec<&ModelEntry> =
            self.entries.iter().filter(|e| matches!(e.status, ModelStatus::Invalid(_))).collect();
        if !invalid.is_empty() {
            writeln!(f, "\nproblems:")?;
            for e in invalid {
                if let ModelStatus::Invalid(reason) = &e.status {
                    writeln!(f, "  {}: {reason}", e.name)?;
                }
            }
        }
        let missing: Vec<&ModelEntry> = self.entries.iter().filter(|e| e.status == ModelStatus::Missing).collect();
        if !missing.is_empty() {
            writeln!(f, "\nto fetch (put each file at the path shown, under {}):", self.root.display())?;
            for e in missing {
                writeln!(f, "  {}:", e.name)?;
                for d in &e.downloads {
                    let size = d.size.map(|s| format!(" ({s})")).unwrap_or_default();
                    writeln!(f, "    {}{size}\n      -> {}", d.url, d.to.display())?;
                }
                if let Some(note) = &e.note {
                    writeln!(f, "    {note}")?;
                }
            }
        }
        let count = |s: fn(&ModelStatus) -> bool| self.entries.iter().filter(|e| s(&e.status)).count();
        writeln!(
            f,
            "\n{} of {} present and valid, {} tiny random, {} missing, {} invalid",
            count(|s| *s == ModelStatus::Valid),
            self.entries.len(),
            count(|s| *s == ModelStatus::TinyRandom),
            count(|s| *s == ModelStatus::Missing),
            count(|s| matches!(s, ModelStatus::Invalid(_)))
        )
    }
}

// ---------------------------------------------------------------------------------------------
// Names and shapes of weight files, without loading safetensors data.

fn shapes(list: impl IntoIterator<Item = (String, Vec<i64>)>) -> BTreeMap<String, Vec<i64>> {
    list.into_iter().collect()
}

/// Names, shapes and dtypes (safetensors names: `F32`, `I64`, ...) of a weight file's tensors.
type Listing = BTreeMap<String, (Vec<i64>, String)>;

fn strip_module(found: Listing) -> Listing {
    found.into_iter().map(|(k, s)| (k.strip_prefix("module.").map(str::to_owned).unwrap_or(k), s)).collect()
}

/// Every missing, mis-shaped and unexpected key (unexpected ones that are `ignorable` aside), and
/// every expected tensor stored in a dtype the loaders refuse (not floating point), or `Ok`.
fn compare(
    expected: &BTreeMap<String, Vec<i64>>,
    found: &Listing,
    ignorable: impl Fn(&str) -> bool,
) -> Result<(), String> {
    let kept = found.iter().filter(|(k, _)| expected.contains_key(k.as_str()) || !ignorable(k));
    let shapes: Vec<(String, Vec<i64>)> = kept.map(|(k, (s, _))| (k.clone(), s.clone())).collect();
    let expected_list: Vec<(String, Vec<i64>)> = expected.iter().map(|(k, s)| (k.clone(), s.clone())).collect();
    let mut mismatch = vdvae::checkpoint::compare_keys(&expected_list, &shapes);
    mismatch.wrong_dtype = vdvae::checkpoint::non_float_tensors(
        found.iter().filter(|(k, _)| expected.contains_key(k.as_str())).map(|(k, (_, d))| (k.as_str(), d.as_str())),
    );
    if mismatch.is_empty() { Ok(()) } else { Err(mismatch.to_string().trim_end_matches("; ").to_owned()) }
}

/// The header of a safetensors file: tensor shapes and dtypes, and the metadata strings.
struct SafetensorsHeader {
    tensors: Listing,
    metadata: HashMap<String, String>,
}

/// Bytes per element of a safetensors dtype, for the ones the loaders can read.
fn dtype_size(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "BOOL" | "U8" | "I8" => 1,
        "F16" | "BF16" | "I16" => 2,
        "F32" | "I32" => 4,
        "F64" | "I64" => 8,
        _ => return None,
    })
}

/// Reads a safetensors header and checks that every tensor's data lies inside the file and holds
/// exactly its shape's elements in a dtype the loaders can read.
fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, String> {
    let bad = |m: String| format!("{}: {m}", path.display());
    let mut file = std::fs::File::open(path).map_err(|e| bad(format!("cannot open: {e}")))?;
    let len = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut n = [0u8; 8];
    file.read_exact(&mut n).map_err(|_| bad("shorter than a safetensors header".into()))?;
    let n = u64::from_le_bytes(n);
    if n > 100_000_000 || 8 + n > len {
        return Err(bad(format!("safetensors header length {n} does not fit the file ({len} bytes)")));
    }
    let mut header = vec![0u8; n as usize];
    file.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let mut out = SafetensorsHeader { tensors: BTreeMap::new(), metadata: HashMap::new() };
    for (name, value) in map {
        if name == "__metadata__" {
            if let Some(m) = value.as_object() {
                out.metadata = m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect();
            }
            continue;
        }
        let dims = |key: &str| -> Option<Vec<u64>> {
            value.get(key)?.as_array()?.iter().map(serde_json::Value::as_u64).collect()
        };
        let dtype = value.get("dtype").and_then(serde_json::Value::as_str);
        let (Some(shape), Some(offsets), Some(dtype)) = (dims("shape"), dims("data_offsets"), dtype) else {
            return Err(bad(format!("tensor {name} has no valid dtype/shape/data_offsets in the header")));
        };
        if offsets.len() != 2 || offsets[0] > offsets[1] || 8 + n + offsets[1] > len {
            return Err(bad(format!(
                "tensor {name}: data range {offsets:?} lies outside the file ({len} bytes; truncated?)"
            )));
        }
        let Some(size) = dtype_size(dtype) else {
            return Err(bad(format!(
                "tensor {name} has dtype {dtype}, which the loaders cannot read (expected one of {})",
                vdvae::checkpoint::FLOAT_DTYPES.join(", ")
            )));
        };
        let bytes = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        if bytes != Some(offsets[1] - offsets[0]) {
            return Err(bad(format!(
                "tensor {name}: {} data bytes do not hold shape {shape:?} of {dtype} ({size} bytes each)",
                offsets[1] - offsets[0]
            )));
        }
        out.tensors.insert(name, (shape.into_iter().map(|d| d as i64).collect(), dtype.to_owned()));
    }
    Ok(out)
}

/// Names, shapes and dtypes of a weight file, recognised by its first bytes: safetensors (header
/// only) or a zip `torch.save` file (read whole, on the CPU).
fn tensor_listing(path: &Path) -> Result<Listing, String> {
    let bad = |m: String| format!("{}: {m}", path.display());
    let mut head = [0u8; 9];
    let n =
        std::fs::File::open(path).and_then(|mut f| f.read(&mut head)).map_err(|e| bad(format!("cannot read: {e}")))?;
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        let tensors = Tensor::loadz_multi_with_device(path, Device::Cpu)
            .map_err(|e| bad(format!("cannot read this torch.save file: {e}")))?;
        return Ok(tensors
            .into_iter()
            .map(|(k, t)| (k, (t.size(), vdvae::checkpoint::dtype_name(t.kind()))))
            .collect());
    }
    if n == 9 && head[8] == b'{' {
        return read_safetensors_header(path).map(|h| h.tensors);
    }
    if n >= 2 && head[0] == 0x80 && head[1] == 0x02 {
        return Err(bad("a legacy (pre-1.6) torch.save pickle, which libtorch cannot read; re-save it or \
                        convert it to .safetensors"
            .into()));
    }
    Err(bad(format!("neither a safetensors file nor a zip torch.save file (first bytes {:02x?})", &head[..n])))
}

/// Zero-memory tensors of the listed shapes and dtypes, so that the `versatile-diffusion` key
/// functions can run on a file's listing and the dtypes follow the renamed keys.
fn placeholders(listing: &Listing, path: &Path) -> Result<StateDict, String> {
    listing
        .iter()
        .map(|(k, (shape, dtype))| {
            let kind = match dtype.as_str() {
                "F32" => Kind::Float,
                "F16" => Kind::Half,
                "BF16" => Kind::BFloat16,
                "F64" => Kind::Double,
                "I64" => Kind::Int64,
                "I32" => Kind::Int,
                "I16" => Kind::Int16,
                "I8" => Kind::Int8,
                "U8" => Kind::Uint8,
                "BOOL" => Kind::Bool,
                other => {
                    return Err(format!(
                        "{}: tensor {k} has dtype {other}, which the loaders cannot read",
                        path.display()
                    ));
                }
            };
            Ok((k.clone(), Tensor::from(0f32).to_kind(kind).expand(shape.as_slice(), false)))
        })
        .collect()
}

fn state_dict_listing(sd: &StateDict) -> Listing {
    sd.iter().map(|(k, t)| (k.clone(), (t.size(), vdvae::checkpoint::dtype_name(t.kind())))).collect()
}

fn manifest_shapes(m: Manifest) -> BTreeMap<String, Vec<i64>> {
    m.into_iter().collect()
}

fn diffusers_weights(dir: &Path) -> Option<PathBuf> {
    DIFFUSERS_WEIGHTS.iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

fn read_json_value(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

/// The full-size Versatile Diffusion U-Net and VAE configurations.
fn vd_full_configs() -> Result<(UNetConfig, VaeConfig), String> {
    let unet = serde_json::from_str(VD_UNET_CONFIG).map_err(|e| format!("VD_UNET_CONFIG: {e}"))?;
    let vae = serde_json::from_str(VD_VAE_CONFIG).map_err(|e| format!("VD_VAE_CONFIG: {e}"))?;
    Ok((unet, vae))
}

/// The dual U-Net names and shapes a file must hold: its own configuration's for tiny models,
/// otherwise Versatile Diffusion's (and the file's configuration must describe that same model).
fn unet_expected(config: &UNetConfig, tiny: bool, origin: &Path) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let own = manifest_shapes(DualUNet::manifest(config).map_err(|e| e.to_string())?);
    if tiny {
        return Ok(own);
    }
    let full = manifest_shapes(DualUNet::manifest(&vd_full_configs()?.0).map_err(|e| e.to_string())?);
    if own != full {
        return Err(format!("{}: the U-Net configuration is not Versatile Diffusion's", origin.display()));
    }
    Ok(full)
}

/// As [`unet_expected`], for the autoencoder.
fn vae_expected(config: &VaeConfig, tiny: bool, origin: &Path) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let own = manifest_shapes(AutoencoderKl::manifest(config).map_err(|e| e.to_string())?);
    if tiny {
        return Ok(own);
    }
    let full = manifest_shapes(AutoencoderKl::manifest(&vd_full_configs()?.1).map_err(|e| e.to_string())?);
    if own != full {
        return Err(format!("{}: the autoencoder configuration is not Versatile Diffusion's", origin.display()));
    }
    Ok(full)
}

/// The header and the three configurations of a merged file written by `vd-convert`.
fn merged_header(path: &Path) -> Result<(SafetensorsHeader, UNetConfig, VaeConfig, SchedulerConfig), String> {
    let header = read_safetensors_header(path)?;
    let bad = |m: String| format!("{}: {m}", path.display());
    let format = header.metadata.get("format").map(String::as_str);
    if format != Some(MERGED_FORMAT) {
        return Err(bad(format!("metadata `format` is {format:?}, expected {MERGED_FORMAT:?} (a vd-convert file)")));
    }
    if let Some(other) = header.tensors.keys().find(|k| !k.starts_with("unet.") && !k.starts_with("vae.")) {
        return Err(bad(format!("tensor `{other}` is neither under `unet.` nor `vae.`")));
    }
    let text = |key: &str| header.metadata.get(key).ok_or_else(|| bad(format!("metadata lacks `{key}`")));
    let unet: UNetConfig = serde_json::from_str(text("unet_config")?).map_err(|e| bad(format!("unet_config: {e}")))?;
    unet.validate().map_err(|e| bad(e.to_string()))?;
    let vae: VaeConfig = serde_json::from_str(text("vae_config")?).map_err(|e| bad(format!("vae_config: {e}")))?;
    vae.validate().map_err(|e| bad(e.to_string()))?;
    let scheduler: SchedulerConfig =
        serde_json::from_str(text("scheduler_config")?).map_err(|e| bad(format!("scheduler_config: {e}")))?;
    scheduler.validate().map_err(|e| bad(e.to_string()))?;
    Ok((header, unet, vae, scheduler))
}

// ---------------------------------------------------------------------------------------------
// Tiny random models.

/// What callers need to run the pipeline on the models of [`write_tiny_models`].
#[derive(Debug, Clone, PartialEq)]
pub struct TinyModels {
    /// The folder they were written to.
    pub root: PathBuf,
    /// The seed of every weight.
    pub seed: u64,
    /// The tiny VDVAE's configuration (16x16 images, 10 decoder blocks).
    pub vdvae: VdvaeConfig,
    /// Decoder blocks whose latents the quickstart regresses with this VDVAE (4).
    pub vdvae_latent_blocks: usize,
    /// The tiny CLIP vision tower's configuration.
    pub vision: VisionConfig,
    /// The tiny CLIP text tower's configuration.
    pub text: TextConfig,
    /// Side of the tiny Versatile Diffusion's images (64; any multiple of its autoencoder's factor 4 works).
    pub image_side: u32,
    /// Tokens of a CLIP-Vision embedding (5: CLS + 2x2 patches).
    pub vision_tokens: usize,
    /// Tokens of a CLIP-Text embedding (77).
    pub text_tokens: usize,
    /// Width of every embedded token: the CLIP projection and the U-Net's context width (16).
    pub context_width: usize,
}

/// The tiny VDVAE of the demo models and the unit tests: the shared parity fixture's structure
/// (every kind of block), 16x16 images.
pub(crate) fn tiny_vdvae_config() -> VdvaeConfig {
    VdvaeConfig {
        width: 16,
        zdim: 4,
        image_size: 16,
        num_mixtures: 3,
        enc_blocks: "16x2,16d2,8x2,8d2,4x2,4d4,1x2".into(),
        dec_blocks: "1x2,4m1,4x1,8m4,8x2,16m8,16x2".into(),
        ..VdvaeConfig::imagenet64()
    }
}

/// The tiny CLIP towers of the demo models: 2 layers, width 32, 16-wide projections.
fn tiny_clip_configs(tokenizer: &ClipTokenizer) -> (VisionConfig, TextConfig) {
    let vision = VisionConfig {
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        image_size: 28,
        patch_size: 14,
        num_channels: 3,
        projection_dim: Some(16),
        layer_norm_eps: 1e-5,
        hidden_act: "quick_gelu".into(),
    };
    let text = TextConfig {
        vocab_size: tokenizer.vocab_size() as i64,
        hidden_size: 32,
        intermediate_size: 64,
        num_hidden_layers: 2,
        num_attention_heads: 4,
        max_position_embeddings: tokenizer.context_length() as i64,
        projection_dim: Some(16),
        layer_norm_eps: 1e-5,
        hidden_act: "quick_gelu".into(),
        eos_token_id: i64::from(tokenizer.eos_id()),
    };
    (vision, text)
}

/// The tiny Versatile Diffusion of the `versatile-diffusion` test fixtures: 3 levels (8, 16, 16
/// channels), 2 heads, context width 16; kl autoencoder with factor 4.
fn tiny_vd_configs() -> (serde_json::Value, serde_json::Value, serde_json::Value, serde_json::Value) {
    use serde_json::json;
    let common = |class: &str, down: [&str; 3], up: [&str; 3]| {
        json!({
            "_class_name": class,
            "block_out_channels": [8, 16, 16],
            "layers_per_block": 2,
            "attention_head_dim": 2,
            "cross_attention_dim": 16,
            "norm_num_groups": 4,
            "norm_eps": 1e-5,
            "flip_sin_to_cos": true,
            "freq_shift": 0,
            "act_fn": "silu",
            "downsample_padding": 1,
            "mid_block_scale_factor": 1,
            "down_block_types": down,
            "up_block_types": up,
        })
    };
    let mut image = common(
        "UNet2DConditionModel",
        ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    );
    image["in_channels"] = json!(4);
    image["out_channels"] = json!(4);
    image["sample_size"] = json!(16);
    let mut text = common(
        "UNetFlatConditionModel",
        ["CrossAttnDownBlockFlat", "CrossAttnDownBlockFlat", "DownBlockFlat"],
        ["UpBlockFlat", "CrossAttnUpBlockFlat", "CrossAttnUpBlockFlat"],
    );
    text["in_channels"] = json!([8, 1, 1]);
    text["out_channels"] = json!([8, 1, 1]);
    let vae = json!({
        "_class_name": "AutoencoderKL",
        "in_channels": 3,
        "out_channels": 3,
        "latent_channels": 4,
        "block_out_channels": [8, 16, 16],
        "layers_per_block": 2,
        "norm_num_groups": 4,
        "act_fn": "silu",
        "sample_size": 64,
        "scaling_factor": 0.18215,
        "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D", "DownEncoderBlock2D"],
        "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"],
    });
    let scheduler = json!({
        "_class_name": "DDIMScheduler",
        "beta_start": 0.00085,
        "beta_end": 0.012,
        "beta_schedule": "scaled_linear",
        "num_train_timesteps": 1000,
        "set_alpha_to_one": false,
        "steps_offset": 1,
        "clip_sample": false,
        "prediction_type": "epsilon",
        "timestep_spacing": "leading",
        "thresholding": false,
        "trained_betas": null,
    });
    (image, text, vae, scheduler)
}

fn splitmix64(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `count` values uniform in [-1, 1), a pure function of `seed` and `name` (the same on any machine,
/// whatever else draws random numbers).
fn seeded_uniform(seed: u64, name: &str, count: usize) -> Vec<f64> {
    let stream =
        name.bytes().fold(seed ^ 0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    (0..count as u64).map(|i| (splitmix64(stream, i) >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0).collect()
}

/// A seeded random Versatile Diffusion parameter: norm weights near 1, other 1-D tensors near 0,
/// matrices and kernels uniform with variance 1/fan-in.
fn tiny_parameter(seed: u64, name: &str, shape: &[i64]) -> Tensor {
    let count: i64 = shape.iter().product();
    let (offset, scale) = if shape.len() == 1 && name.contains("norm") && name.ends_with(".weight") {
        (1.0, 0.1)
    } else if shape.len() == 1 {
        (0.0, 0.1)
    } else {
        let fan_in: i64 = shape[1..].iter().product();
        (0.0, (3.0 / fan_in.max(1) as f64).sqrt())
    };
    let values: Vec<f32> =
        seeded_uniform(seed, name, count as usize).into_iter().map(|u| (offset + scale * u) as f32).collect();
    Tensor::from_slice(&values).reshape(shape)
}

/// Overwrites each variable for which `bound` gives a value with seeded uniform values in
/// `[-bound, bound)`; the others keep their values.
fn fill_seeded(vs: &tch::nn::VarStore, seed: u64, bound: impl Fn(&str, &[i64]) -> Option<f64>) {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let shape = var.size();
            if let Some(b) = bound(&name, &shape) {
                let values: Vec<f32> =
                    seeded_uniform(seed, &name, var.numel()).into_iter().map(|u| (b * u) as f32).collect();
                var.copy_(&Tensor::from_slice(&values).reshape(shape.as_slice()).to_kind(var.kind()));
            }
        }
    });
}

/// The bounds of the VDVAE reference initialisation (`WeightInit::Reference`): conv weights uniform
/// in ±scale/sqrt(fan-in), scale sqrt(1/blocks) for the last conv of residual paths, the prior's
/// output conv zero; biases, `bias_xs` and the output bias zero, the gain one (left as built).
fn vdvae_reference_bound(config: &VdvaeConfig) -> Result<impl Fn(&str, &[i64]) -> Option<f64>, vdvae::VdvaeError> {
    let encoder_scale = (1.0 / config.encoder_blocks()?.len() as f64).sqrt();
    let decoder_scale = (1.0 / config.decoder_blocks()?.len() as f64).sqrt();
    Ok(move |name: &str, shape: &[i64]| {
        if shape.len() != 4 || !name.ends_with(".weight") || name.ends_with(".prior.c4.weight") {
            return None;
        }
        let scale = if name.starts_with("encoder.enc_blocks.") && name.ends_with(".c4.weight") {
            encoder_scale
        } else if name.starts_with("decoder.dec_blocks.")
            && (name.ends_with(".z_proj.weight") || name.ends_with(".resnet.c4.weight"))
        {
            decoder_scale
        } else {
            1.0
        };
        Some(scale / ((shape[1] * shape[2] * shape[3]) as f64).sqrt())
    })
}

fn write_text(path: &Path, text: &str) -> Result<(), ModelError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    std::fs::write(path, text).map_err(io_error(path))
}

fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ModelError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    write_text(path, &(text + "\n"))
}

fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), ModelError> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_error(parent))?;
    }
    Tensor::write_safetensors(tensors, path).map_err(|error| ModelError::Torch { path: path.to_path_buf(), error })
}

fn write_var_store(path: &Path, vs: &tch::nn::VarStore) -> Result<(), ModelError> {
    let mut tensors: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    tensors.sort_by(|a, b| a.0.cmp(&b.0));
    write_tensors(path, &tensors)
}

/// Writes tiny random-weight models into `dir` in the layout and file formats of the real models
/// folder, so that [`ModelsDir`] loads them through the real code paths and the command line can run
/// end to end on a synthetic NSD; metric networks are not written (they exist only at full size).
///
/// - `vdvae/hps.json` + `vdvae/model.safetensors`: the VDVAE of `examples/quickstart.rs`, with the
///   scales of the reference initialisation;
/// - `versatile-diffusion/image_encoder/`, `text_encoder/` (HF `config.json` + `model.safetensors`,
///   2-layer towers with 16-wide projections)
///   and `tokenizer/` (`vocab.json` + `merges.txt` of the bytes-only CLIP tokenizer: 514 tokens);
/// - `versatile-diffusion/{image_unet,text_unet,vae,scheduler}/`: diffusers configs and
///   `diffusion_pytorch_model.safetensors` of a 3-level dual U-Net with context width 16 and its
///   autoencoder; `text_unet` holds only the attention weights the dual assembly takes from it;
/// - [`TINY_MARKER`], which makes [`ModelsDir::check`] report the models as tiny random stand-ins.
///
/// Every weight is a function of `seed` and the parameter's name (libtorch's generator is not used),
/// so the same seed writes the same files. `dir` must be absent, empty or an earlier tiny folder
/// (whose merged VD file, if any, is removed since it would shadow the new weights); any other
/// non-empty folder is refused, so real checkpoints are never overwritten.
pub fn write_tiny_models(dir: &Path, seed: u64) -> Result<TinyModels, ModelError> {
    let non_empty = dir.is_dir() && std::fs::read_dir(dir).map_err(io_error(dir))?.next().is_some();
    if non_empty && !dir.join(TINY_MARKER).is_file() {
        return Err(ModelError::Invalid {
            path: dir.to_path_buf(),
            message: format!(
                "not empty and without {TINY_MARKER}: refusing to write tiny models where real checkpoints may be"
            ),
        });
    }
    let stale = dir.join(VD_MERGED);
    if stale.is_file() {
        std::fs::remove_file(&stale).map_err(io_error(&stale))?;
    }

    // VDVAE.
    let vdvae = tiny_vdvae_config();
    let vdvae_error = |error| ModelError::Vdvae { path: dir.join(VDVAE_SAFETENSORS), error: Box::new(error) };
    let model = Vdvae::new(&vdvae, Device::Cpu, WeightInit::Zeros).map_err(vdvae_error)?;
    fill_seeded(model.var_store(), seed, vdvae_reference_bound(&vdvae).map_err(vdvae_error)?);
    write_var_store(&dir.join(VDVAE_SAFETENSORS), model.var_store())?;
    drop(model);
    let hps = serde_json::to_value(&vdvae)
        .map_err(|e| ModelError::Invalid { path: dir.join(VDVAE_HPS), message: e.to_string() })?;
    write_json(&dir.join(VDVAE_HPS), &hps)?;

    // CLIP towers and tokenizer.
    let vd = dir.join(VD_FOLDER);
    let tokenizer = ClipTokenizer::from_merges(Vec::new())
        .map_err(|error| ModelError::Clip { path: vd.join("tokenizer"), error: Box::new(error) })?;
    let vocab: BTreeMap<String, u32> = tokenizer.inner().get_vocab(true).into_iter().collect();
    let vocab = serde_json::to_value(vocab)
        .map_err(|e| ModelError::Invalid { path: vd.join("tokenizer/vocab.json"), message: e.to_string() })?;
    write_json(&vd.join("tokenizer/vocab.json"), &vocab)?;
    write_text(&vd.join("tokenizer/merges.txt"), "#version: 0.2\n")?;
    let (vision, text) = tiny_clip_configs(&tokenizer);
    let clip_error = |path: PathBuf| move |error| ModelError::Clip { path, error: Box::new(error) };
    // As `ClipVisionModel::new` draws (std 0.02, zero biases, layer norms at identity), but seeded.
    let clip_bound =
        |name: &str, _: &[i64]| (!name.contains("norm") && !name.ends_with(".bias")).then_some(0.02 * 3f64.sqrt());
    let tower =
        ClipVisionModel::new(&vision, Device::Cpu, Kind::Float).map_err(clip_error(vd.join("image_encoder")))?;
    fill_seeded(tower.var_store(), seed, clip_bound);
    write_var_store(&vd.join("image_encoder/model.safetensors"), tower.var_store())?;
    drop(tower);
    write_json(
        &vd.join("image_encoder/config.json"),
        &serde_json::json!({
            "architectures": ["CLIPVisionModelWithProjection"],
            "model_type": "clip_vision_model",
            "hidden_size": vision.hidden_size,
            "intermediate_size": vision.intermediate_size,
            "num_hidden_layers": vision.num_hidden_layers,
            "num_attention_heads": vision.num_attention_heads,
            "image_size": vision.image_size,
            "patch_size": vision.patch_size,
            "num_channels": vision.num_channels,
            "projection_dim": vision.projection_dim,
            "layer_norm_eps": vision.layer_norm_eps,
            "hidden_act": vision.hidden_act,
        }),
    )?;
    let tower = ClipTextModel::new(&text, Device::Cpu, Kind::Float).map_err(clip_error(vd.join("text_encoder")))?;
    fill_seeded(tower.var_store(), seed, clip_bound);
    write_var_store(&vd.join("text_encoder/model.safetensors"), tower.var_store())?;
    drop(tower);
    write_json(
        &vd.join("text_encoder/config.json"),
        &serde_json::json!({
            "architectures": ["CLIPTextModelWithProjection"],
            "model_type": "clip_text_model",
            "vocab_size": text.vocab_size,
            "hidden_size": text.hidden_size,
            "intermediate_size": text.intermediate_size,
            "num_hidden_layers": text.num_hidden_layers,
            "num_attention_heads": text.num_attention_heads,
            "max_position_embeddings": text.max_position_embeddings,
            "projection_dim": text.projection_dim,
            "layer_norm_eps": text.layer_norm_eps,
            "hidden_act": text.hidden_act,
            "bos_token_id": tokenizer.bos_id(),
            "eos_token_id": text.eos_token_id,
            "pad_token_id": tokenizer.eos_id(),
        }),
    )?;

    // Versatile Diffusion: configs, then the dual U-Net split back into its image and text U-Nets.
    let (image_json, text_json, vae_json, scheduler_json) = tiny_vd_configs();
    fn parse<T: serde::de::DeserializeOwned>(path: PathBuf, value: &serde_json::Value) -> Result<T, ModelError> {
        serde_json::from_value(value.clone()).map_err(|e| ModelError::Invalid { path, message: e.to_string() })
    }
    let unet_config: UNetConfig = parse(vd.join("image_unet/config.json"), &image_json)?;
    let vae_config: VaeConfig = parse(vd.join("vae/config.json"), &vae_json)?;
    let vd_error = |path: PathBuf| move |error| ModelError::Diffusion { path, error: Box::new(error) };
    let (mut image_unet, mut text_unet) = (Vec::new(), Vec::new());
    for (name, shape) in DualUNet::manifest(&unet_config).map_err(vd_error(vd.join("image_unet")))? {
        let value = tiny_parameter(seed, &name, &shape);
        if let Some((position, rest)) = name.split_once(".transformers.1.") {
            text_unet.push((format!("{position}.{rest}"), value));
        } else {
            image_unet.push((name.replacen(".transformers.0.", ".", 1), value));
        }
    }
    let vae: Vec<(String, Tensor)> = AutoencoderKl::manifest(&vae_config)
        .map_err(vd_error(vd.join("vae")))?
        .into_iter()
        .map(|(name, shape)| {
            let value = tiny_parameter(seed, &format!("vae.{name}"), &shape);
            (name, value)
        })
        .collect();
    for (folder, config, tensors) in
        [("image_unet", &image_json, image_unet), ("text_unet", &text_json, text_unet), ("vae", &vae_json, vae)]
    {
        write_json(&vd.join(folder).join("config.json"), config)?;
        write_tensors(&vd.join(folder).join("diffusion_pytorch_model.safetensors"), &tensors)?;
    }
    write_json(&vd.join("scheduler/scheduler_config.json"), &scheduler_json)?;

    write_text(
        &dir.join(TINY_MARKER),
        &format!(
            "TINY RANDOM MODELS (synthetic)\n\n\
             Written by brain_diffuser::models::write_tiny_models with seed {seed}. Every model here is a tiny\n\
             configuration of the real architecture with random weights, in the real layout and file formats,\n\
             so that the command line can run end to end on synthetic data. Their outputs mean nothing.\n\
             `brain-diffuser models` reports them as \"tiny random (synthetic)\", never as valid.\n"
        ),
    )?;
    info!(path = %dir.display(), seed, "wrote tiny random models");
    let vision_tokens = vision.num_positions() as usize;
    Ok(TinyModels {
        root: dir.to_path_buf(),
        seed,
        vdvae,
        vdvae_latent_blocks: 4,
        vision,
        text,
        image_side: 64,
        vision_tokens,
        text_tokens: tokenizer.context_length(),
        context_width: 16,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;
    use versatile_diffusion::{Conditioning, Img2ImgSettings, Noise, RgbImages};

    fn test_image(side: u32, phase: u32) -> RgbImage {
        RgbImage::from_fn(side, side, |x, y| image::Rgb([(x * 13 + phase) as u8, (y * 7) as u8, ((x + y) * 5) as u8]))
    }

    #[test]
    fn tiny_models_load_through_the_real_loaders_and_run() {
        let tmp = tempfile::tempdir().unwrap();
        let tiny = write_tiny_models(tmp.path(), 11).unwrap();
        let dir = ModelsDir::new(tmp.path());
        assert!(dir.is_tiny());

        let vdvae = dir.load_vdvae(Device::Cpu).unwrap();
        assert_eq!(vdvae.config(), &tiny.vdvae);
        let options = vdvae::EncodeOptions { n_blocks: tiny.vdvae_latent_blocks, ..Default::default() };
        let latents = vdvae.encode(&[test_image(20, 0)], &options).unwrap();
        assert_eq!(latents.n_images(), 1);
        let decoded = vdvae.decode(&latents, &vdvae::DecodeOptions::default()).unwrap();
        assert_eq!(decoded[0].dimensions(), (16, 16));

        let vision = dir.load_clip_vision(Device::Cpu, Kind::Float).unwrap();
        let grey = RgbImage::from_pixel(32, 32, image::Rgb([127, 127, 127]));
        let v = clip::encode_images_vd(&vision, &[test_image(32, 3), grey], 2).unwrap();
        assert_eq!(v.shape, vec![2, tiny.vision_tokens, tiny.context_width]);
        let (text, tokenizer) = dir.load_clip_text(Device::Cpu, Kind::Float).unwrap();
        let t = clip::encode_captions_vd(&text, &tokenizer, &[vec!["a red square"], vec![""]]).unwrap();
        assert_eq!(t.shape, vec![2, tiny.text_tokens, tiny.context_width]);
        assert!(v.data.iter().chain(&t.data).all(|x| x.is_finite()));

        let vd = dir.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float).unwrap();
        assert_eq!(vd.unet.config().cross_attention_dim as usize, tiny.context_width);
        let embed = |e: &clip::Embeddings, row: i64| {
            let shape: Vec<i64> = e.shape.iter().map(|&d| d as i64).collect();
            Tensor::from_slice(&e.data).reshape(shape.as_slice()).narrow(0, row, 1)
        };
        let cond = Conditioning {
            vision: embed(&v, 0),
            text: embed(&t, 0),
            negative_vision: embed(&v, 1),
            negative_text: embed(&t, 1),
        };
        let side = tiny.image_side as usize;
        let init = RgbImages::new(1, side, side, test_image(tiny.image_side, 5).into_raw()).unwrap();
        let settings = Img2ImgSettings {
            steps: 4,
            strength: 0.5,
            vision_tokens: tiny.vision_tokens as i64,
            text_tokens: tiny.text_tokens as i64,
            ..Img2ImgSettings::default()
        };
        let mut steps = 0;
        let out = vd.img2img(&init, &cond, &settings, Noise::Seed(1), &mut |_| steps += 1).unwrap();
        assert_eq!((steps, out.count, out.height, out.width), (2, 1, side, side));

        assert!(dir.load_clip_metric(Device::Cpu).unwrap().is_some());
        assert!(dir.load_metric_networks(Device::Cpu, &Protocol::brain_diffuser()).unwrap().is_empty());

        let report = dir.check();
        for name in ["VDVAE", "VD U-Nets", "VD VAE", "VD scheduler", "CLIP vision", "CLIP text", "CLIP tokenizer"] {
            assert_eq!(report.get(name).unwrap().status, ModelStatus::TinyRandom, "{name}\n{report}");
        }
        assert!(report.entries.iter().skip(7).all(|e| e.status == ModelStatus::Missing), "{report}");
        assert!(!report.all_present_and_valid());
        assert!(!report.reconstruction_ready(), "tiny models never count as ready");
        let text = report.to_string();
        assert!(text.contains("tiny random (synthetic)") && text.contains("TINY RANDOM MODELS"), "{text}");
    }

    #[test]
    fn the_same_seed_writes_the_same_files_and_real_folders_are_refused() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        write_tiny_models(a.path(), 3).unwrap();
        write_tiny_models(b.path(), 3).unwrap();
        for file in [
            VDVAE_SAFETENSORS,
            "versatile-diffusion/image_encoder/model.safetensors",
            "versatile-diffusion/text_encoder/model.safetensors",
            "versatile-diffusion/image_unet/diffusion_pytorch_model.safetensors",
            "versatile-diffusion/vae/diffusion_pytorch_model.safetensors",
        ] {
            let read = |d: &Path| std::fs::read(d.join(file)).unwrap();
            assert!(read(a.path()) == read(b.path()), "{file} differs");
        }
        // Rewriting a tiny folder is allowed; a foreign non-empty folder is not touched.
        write_tiny_models(a.path(), 4).unwrap();
        let real = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(real.path().join("vdvae")).unwrap();
        let err = write_tiny_models(real.path(), 4).unwrap_err().to_string();
        assert!(err.contains("refusing") && err.contains(TINY_MARKER), "{err}");
        assert!(!real.path().join(TINY_MARKER).exists());
    }

    #[test]
    fn tiny_vdvae_weights_have_the_scales_of_the_reference_initialisation() {
        let config = tiny_vdvae_config();
        let reference = Vdvae::new(&config, Device::Cpu, WeightInit::Reference { seed: 9 }).unwrap();
        let bound = vdvae_reference_bound(&config).unwrap();
        let ours = Vdvae::new(&config, Device::Cpu, WeightInit::Zeros).unwrap();
        fill_seeded(ours.var_store(), 9, &bound);
        let ours = ours.var_store().variables();
        for (name, r) in reference.var_store().variables() {
            let o = &ours[&name];
            let max = |t: &Tensor| t.abs().max().double_value(&[]);
            match bound(&name, &r.size()) {
                None => assert!(r.equal(o), "{name}: not initialised like the reference"),
                Some(b) => {
                    assert!(max(&r) <= b * (1.0 + 1e-6) && max(o) <= b * (1.0 + 1e-6), "{name}: above {b}");
                    if r.numel() >= 64 {
                        assert!(max(&r) > 0.8 * b && max(o) > 0.8 * b, "{name}: far below {b}");
                    }
                }
            }
        }
    }

    #[test]
    fn tokenizer_files_tokenize_like_the_bytes_only_tokenizer() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 1).unwrap();
        let dir = tmp.path().join("versatile-diffusion/tokenizer");
        let from_files = ClipTokenizer::from_dir(&dir).unwrap();
        let in_memory = ClipTokenizer::from_merges(Vec::new()).unwrap();
        assert_eq!(from_files.vocab_size(), 514);
        assert_eq!(
            (from_files.bos_id(), from_files.eos_id(), from_files.context_length()),
            (in_memory.bos_id(), in_memory.eos_id(), in_memory.context_length())
        );
        let captions = [
            "",
            "A man riding a wave on top of a surfboard.",
            "  Two   dogs\tplay in the SNOW!! ",
            "quotes \" and back\\slashes, <|endoftext|> and émigré café 東京 🙂",
            "it's 3:45pm & we're at 10,000 ft",
            &"a very long caption ".repeat(30),
        ];
        for caption in captions {
            assert_eq!(from_files.encode(caption).unwrap(), in_memory.encode(caption).unwrap(), "{caption:?}");
        }
    }

    #[test]
    fn an_empty_folder_reports_every_model_missing_with_a_url() {
        let tmp = tempfile::tempdir().unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        assert!(!report.tiny);
        assert_eq!(report.entries.len(), 12);
        for e in &report.entries {
            assert_eq!(e.status, ModelStatus::Missing, "{}", e.name);
            assert!(e.path.starts_with(tmp.path()), "{}", e.path.display());
            assert!(!e.downloads.is_empty() && e.downloads.iter().all(|d| d.url.starts_with("https://")), "{}", e.name);
        }
        assert!(!report.all_present_and_valid());
        let text = report.to_string();
        assert!(text.contains("imagenet64-iter-1600000-model-ema.th") && text.contains("0 of 12 present"), "{text}");
        assert!(
            text.contains("https://huggingface.co/shi-labs/versatile-diffusion/resolve/main/image_unet/"),
            "{text}"
        );
        let dir = ModelsDir::new(tmp.path());
        let err = dir.load_vdvae(Device::Cpu).unwrap_err();
        assert!(matches!(err, ModelError::Missing { .. }) && err.to_string().contains(VDVAE_CHECKPOINT), "{err}");
        assert!(matches!(
            dir.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float),
            Err(ModelError::Missing { .. })
        ));
        assert!(dir.load_clip_metric(Device::Cpu).unwrap().is_none());
    }

    #[test]
    fn a_corrupt_vdvae_checkpoint_is_invalid_and_named() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(VDVAE_CHECKPOINT);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, b"not a checkpoint at all").unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        let entry = report.get("VDVAE").unwrap();
        let ModelStatus::Invalid(reason) = &entry.status else { panic!("{report}") };
        assert!(reason.contains(&path.display().to_string()), "{reason}");
        assert!(report.to_string().contains("problems:"), "{report}");
        let err = ModelsDir::new(tmp.path()).load_vdvae(Device::Cpu).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
    }

    #[test]
    fn a_vdvae_tensor_with_a_wrong_shape_is_reported_by_key() {
        // Full size: a file whose only tensor has the wrong shape.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(VDVAE_SAFETENSORS);
        write_tensors(&path, &[("decoder.gain".to_owned(), Tensor::zeros([1, 8, 1, 1], (Kind::Float, Device::Cpu)))])
            .unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
        assert!(reason.contains("decoder.gain (expected [1, 512, 1, 1], found [1, 8, 1, 1])"), "{reason}");

        // Tiny: everything right but one tensor.
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 2).unwrap();
        let path = tmp.path().join(VDVAE_SAFETENSORS);
        let mut tensors = Tensor::read_safetensors(&path).unwrap();
        let key = "decoder.out_net.out_conv.bias";
        let slot = tensors.iter_mut().find(|(k, _)| k == key).unwrap();
        slot.1 = slot.1.narrow(0, 0, 5).contiguous();
        write_tensors(&path, &tensors).unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
        assert_eq!(reason, &format!("1 mis-shaped: {key} (expected [30], found [5])"));
    }

    #[test]
    fn broken_versatile_diffusion_and_metric_files_are_invalid() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 5).unwrap();
        // A truncated VAE file and a U-Net missing one tensor.
        let vae = tmp.path().join("versatile-diffusion/vae/diffusion_pytorch_model.safetensors");
        let bytes = std::fs::read(&vae).unwrap();
        std::fs::write(&vae, &bytes[..bytes.len() - 100]).unwrap();
        let unet = tmp.path().join("versatile-diffusion/text_unet/diffusion_pytorch_model.safetensors");
        let mut tensors = Tensor::read_safetensors(&unet).unwrap();
        let (dropped, _) = tensors.pop().unwrap();
        write_tensors(&unet, &tensors).unwrap();
        let metric = tmp.path().join(METRICS_FOLDER).join("alexnet.safetensors");
        write_text(&metric, "garbage").unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        let reason = |name: &str| match &report.get(name).unwrap().status {
            ModelStatus::Invalid(r) => r.clone(),
            other => panic!("{name}: {other}\n{report}"),
        };
        assert!(reason("VD VAE").contains("truncated"), "{}", reason("VD VAE"));
        let (position, rest) = dropped.split_once(".attentions.").unwrap();
        let (index, rest) = rest.split_once('.').unwrap();
        let dual = format!("{position}.attentions.{index}.transformers.1.{rest}");
        assert!(reason("VD U-Nets").contains(&format!("1 missing: {dual}")), "{}", reason("VD U-Nets"));
        assert!(reason("AlexNet").contains("alexnet.safetensors"), "{}", reason("AlexNet"));
        let err = ModelsDir::new(tmp.path()).load_metric_networks(Device::Cpu, &Protocol::mindeye()).unwrap_err();
        assert!(matches!(err, ModelError::Metrics { network: slots::ALEXNET, .. }), "{err}");
    }

    #[test]
    fn a_merged_file_is_preferred_and_checked() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 6).unwrap();
        let folder = tmp.path().join(VD_FOLDER);
        VdWeights::from_diffusers_folder(&folder)
            .unwrap()
            .write_merged(&tmp.path().join(VD_MERGED), Kind::Half)
            .unwrap();
        // The folders' weights are no longer needed.
        for sub in ["image_unet", "text_unet", "vae"] {
            std::fs::remove_file(folder.join(sub).join("diffusion_pytorch_model.safetensors")).unwrap();
        }
        let dir = ModelsDir::new(tmp.path());
        dir.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float).unwrap();
        let report = dir.check();
        for name in ["VD U-Nets", "VD VAE", "VD scheduler"] {
            let entry = report.get(name).unwrap();
            assert_eq!(
                (&entry.status, entry.path.as_path()),
                (&ModelStatus::TinyRandom, tmp.path().join(VD_MERGED).as_path())
            );
        }
    }

    #[test]
    fn the_full_size_vd_configs_give_the_diffusers_manifests() {
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../versatile-diffusion/tests/fixtures/full");
        let read = |name: &str| -> BTreeMap<String, Vec<i64>> {
            serde_json::from_str(&std::fs::read_to_string(fixtures.join(name)).unwrap()).unwrap()
        };
        let (unet, vae) = vd_full_configs().unwrap();
        assert_eq!(manifest_shapes(DualUNet::manifest(&unet).unwrap()), read("dual_unet_manifest.json"));
        assert_eq!(manifest_shapes(AutoencoderKl::manifest(&vae).unwrap()), read("vae_manifest.json"));
        let from_fixture = UNetConfig::from_file(&fixtures.join("image_unet/config.json")).unwrap();
        assert!(unet_expected(&from_fixture, false, Path::new("x")).is_ok());
    }

    /// Writes a safetensors file with the given tensors whose data is a hole (a sparse file): only
    /// the header is real, which is all `check` reads.
    fn sparse_safetensors(path: &Path, tensors: &[(String, Vec<i64>)], dtype: &str, metadata: serde_json::Value) {
        let size = if dtype == "F16" { 2 } else { 4 };
        let mut header = serde_json::Map::new();
        header.insert("__metadata__".into(), metadata);
        let mut offset = 0i64;
        for (name, shape) in tensors {
            let bytes = shape.iter().product::<i64>() * size;
            header.insert(
                name.clone(),
                serde_json::json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes]}),
            );
            offset += bytes;
        }
        let header = serde_json::to_vec(&header).unwrap();
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend(&header);
        std::fs::write(path, &bytes).unwrap();
        std::fs::File::options().write(true).open(path).unwrap().set_len(bytes.len() as u64 + offset as u64).unwrap();
    }

    #[test]
    fn full_size_files_with_the_real_names_and_shapes_check_valid() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path();
        let vdvae = VdvaeConfig::imagenet64().parameter_shapes().unwrap();
        sparse_safetensors(&root.join(VDVAE_SAFETENSORS), &vdvae, "F32", serde_json::json!({}));

        let vd = root.join(VD_FOLDER);
        let vision = VisionConfig::vit_l14();
        let mut tensors = clip::vision_parameter_shapes(&vision, 768);
        tensors.push(("vision_model.embeddings.position_ids".into(), vec![1, 257])); // legacy buffer
        sparse_safetensors(&vd.join("image_encoder/model.safetensors"), &tensors, "F32", serde_json::json!({}));
        let config = serde_json::json!({
            "hidden_size": 1024, "intermediate_size": 4096, "num_hidden_layers": 24, "num_attention_heads": 16,
            "image_size": 224, "patch_size": 14, "projection_dim": 768, "hidden_act": "quick_gelu"
        });
        write_json(&vd.join("image_encoder/config.json"), &config).unwrap();
        let text = TextConfig::vit_l14();
        let tensors = clip::text_parameter_shapes(&text, 768);
        sparse_safetensors(&vd.join("text_encoder/model.safetensors"), &tensors, "F32", serde_json::json!({}));
        let config = serde_json::json!({
            "vocab_size": 49408, "hidden_size": 768, "intermediate_size": 3072, "num_hidden_layers": 12,
            "num_attention_heads": 12, "max_position_embeddings": 77, "projection_dim": 768, "hidden_act": "quick_gelu"
        });
        write_json(&vd.join("text_encoder/config.json"), &config).unwrap();

        // A merged file as vd-convert writes it, with the diffusers configs recorded in the fixtures.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../versatile-diffusion/tests/fixtures/full");
        let read = |p: &str| std::fs::read_to_string(fixtures.join(p)).unwrap();
        let (unet, vae) = vd_full_configs().unwrap();
        let tensors: Vec<(String, Vec<i64>)> = (DualUNet::manifest(&unet).unwrap().into_iter())
            .map(|(k, s)| (format!("unet.{k}"), s))
            .chain(AutoencoderKl::manifest(&vae).unwrap().into_iter().map(|(k, s)| (format!("vae.{k}"), s)))
            .collect();
        let metadata = serde_json::json!({
            "format": MERGED_FORMAT,
            "unet_config": read("image_unet/config.json"),
            "vae_config": read("vae/config.json"),
            "scheduler_config": read("scheduler/scheduler_config.json"),
        });
        sparse_safetensors(&root.join(VD_MERGED), &tensors, "F16", metadata);

        let report = ModelsDir::new(root).check();
        for name in ["VDVAE", "VD U-Nets", "VD VAE", "VD scheduler", "CLIP vision", "CLIP text"] {
            assert_eq!(report.get(name).unwrap().status, ModelStatus::Valid, "{name}\n{report}");
        }
        assert_eq!(report.get("CLIP tokenizer").unwrap().status, ModelStatus::Missing);
        assert!(!report.all_present_and_valid());
        assert!(!report.reconstruction_ready(), "the tokenizer is missing");

        // The downloaded diffusers folders instead: the text U-Net with its unused layers, the VAE
        // with the legacy attention names of the hub files.
        std::fs::remove_file(root.join(VD_MERGED)).unwrap();
        let (mut image, mut text_unet) = (Vec::new(), vec![("time_embedding.linear_1.weight".into(), vec![1280, 320])]);
        for (k, shape) in DualUNet::manifest(&unet).unwrap() {
            match k.split_once(".transformers.1.") {
                Some((position, rest)) => text_unet.push((format!("{position}.{rest}"), shape)),
                None => image.push((k.replacen(".transformers.0.", ".", 1), shape)),
            }
        }
        let legacy = [(".to_q.", ".query."), (".to_k.", ".key."), (".to_v.", ".value."), (".to_out.0.", ".proj_attn.")];
        let vae_tensors: Vec<(String, Vec<i64>)> = AutoencoderKl::manifest(&vae)
            .unwrap()
            .into_iter()
            .map(|(k, shape)| {
                match legacy.iter().find(|(new, _)| k.contains(".mid_block.attentions.") && k.contains(new)) {
                    Some((new, old)) => (k.replacen(new, old, 1), shape),
                    None => (k, shape),
                }
            })
            .collect();
        assert!(vae_tensors.iter().any(|(k, _)| k.ends_with("mid_block.attentions.0.query.weight")));
        for (folder, tensors) in [("image_unet", &image), ("text_unet", &text_unet), ("vae", &vae_tensors)] {
            let file = vd.join(folder).join("diffusion_pytorch_model.safetensors");
            sparse_safetensors(&file, tensors, "F32", serde_json::json!({}));
            std::fs::copy(fixtures.join(folder).join("config.json"), vd.join(folder).join("config.json")).unwrap();
        }
        std::fs::create_dir_all(vd.join("scheduler")).unwrap();
        let scheduler = "scheduler/scheduler_config.json";
        std::fs::copy(fixtures.join(scheduler), vd.join(scheduler)).unwrap();
        let report = ModelsDir::new(root).check();
        for name in ["VD U-Nets", "VD VAE", "VD scheduler"] {
            assert_eq!(report.get(name).unwrap().status, ModelStatus::Valid, "{name}\n{report}");
        }

        // A configuration of another architecture is named even when the weights fit it.
        let tiny_hps = serde_json::to_value(tiny_vdvae_config()).unwrap();
        write_json(&root.join(VDVAE_HPS), &tiny_hps).unwrap();
        let ModelStatus::Invalid(reason) = ModelsDir::new(root).check().get("VDVAE").unwrap().status.clone() else {
            panic!("tiny hps.json accepted")
        };
        assert!(reason.contains("hps.json describes another architecture"), "{reason}");
    }

    #[test]
    fn missing_metric_networks_do_not_block_reconstruction() {
        let entry = |name: &'static str, status| ModelEntry {
            name,
            role: "",
            path: PathBuf::new(),
            status,
            downloads: Vec::new(),
            note: None,
        };
        let mut entries: Vec<ModelEntry> =
            ["VDVAE", "VD U-Nets", "CLIP tokenizer"].into_iter().map(|n| entry(n, ModelStatus::Valid)).collect();
        entries.extend(METRIC_NETWORKS.iter().map(|m| entry(m.name, ModelStatus::Missing)));
        let mut report = ModelsReport { root: PathBuf::new(), tiny: false, entries };
        assert!(report.reconstruction_ready() && !report.all_present_and_valid());
        report.entries[1].status = ModelStatus::Missing;
        assert!(!report.reconstruction_ready());
    }

    #[test]
    fn each_protocol_gets_its_efficientnet_weights() {
        let files = |p: &Protocol| metric_networks_for(p).iter().map(|f| f.file).collect::<Vec<_>>();
        let bd = files(&Protocol::brain_diffuser());
        let me = files(&Protocol::mindeye());
        assert_eq!(
            bd,
            ["alexnet.safetensors", "inception_v3.safetensors", "efficientnet_b1_v1.safetensors", "swav.safetensors"]
        );
        assert_eq!(
            me,
            ["alexnet.safetensors", "inception_v3.safetensors", "efficientnet_b1_v2.safetensors", "swav.safetensors"]
        );
    }

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

    /// Copies a safetensors file in place with the header's `dtype` of the tensors `relabel`
    /// names replaced (same data bytes), as a hand-edited or mis-exported header would be.
    fn relabel_safetensors(path: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
        let bytes = std::fs::read(path).unwrap();
        let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
        let mut header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
        for (name, info) in header.as_object_mut().unwrap() {
            if let Some(dtype) = relabel(name) {
                info["dtype"] = dtype.into();
            }
        }
        let mut text = serde_json::to_vec(&header).unwrap();
        while text.len() % 8 != 0 {
            text.push(b' ');
        }
        let mut out = (text.len() as u64).to_le_bytes().to_vec();
        out.extend_from_slice(&text);
        out.extend_from_slice(&bytes[8 + n..]);
        std::fs::write(path, out).unwrap();
    }

    #[test]
    fn tensors_relabelled_i32_are_invalid_in_the_check_and_refused_by_every_loader() {
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 4).unwrap();
        let files = [
            (VDVAE_SAFETENSORS, "encoder.in_conv.weight", "VDVAE"),
            ("versatile-diffusion/image_encoder/model.safetensors", "visual_projection.weight", "CLIP vision"),
            ("versatile-diffusion/text_encoder/model.safetensors", "text_projection.weight", "CLIP text"),
            ("versatile-diffusion/image_unet/diffusion_pytorch_model.safetensors", "conv_in.weight", "VD U-Nets"),
            ("versatile-diffusion/vae/diffusion_pytorch_model.safetensors", "encoder.conv_in.weight", "VD VAE"),
        ];
        for (file, key, _) in files {
            relabel_safetensors(&tmp.path().join(file), |k| (k == key).then_some("I32"));
        }
        let dir = ModelsDir::new(tmp.path());
        let report = dir.check();
        for (_, key, name) in files {
            let ModelStatus::Invalid(reason) = &report.get(name).unwrap().status else { panic!("{name}\n{report}") };
            assert_eq!(
                reason,
                &format!("1 with a non-floating dtype: {key} (found I32, expected F32, F16, BF16, F64)")
            );
        }
        let named = |e: ModelError, key: &str, file: &str| {
            let text = e.to_string();
            assert!(text.contains(key) && text.contains("I32") && text.contains(file), "{text}");
        };
        named(dir.load_vdvae(Device::Cpu).unwrap_err(), files[0].1, files[0].0);
        named(dir.load_clip_vision(Device::Cpu, Kind::Float).unwrap_err(), files[1].1, files[1].0);
        named(dir.load_clip_text(Device::Cpu, Kind::Float).unwrap_err(), files[2].1, files[2].0);
        let Err(vd) = dir.load_versatile_diffusion(Device::Cpu, Kind::Float, Kind::Float) else { panic!("VD loaded") };
        named(vd, files[3].1, VD_FOLDER);
    }

    #[test]
    fn every_tensor_relabelled_i32_is_invalid_and_f16_bf16_files_are_accepted() {
        // The issue's case: all F32 tensors of the VDVAE relabelled I32 (same bytes).
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 6).unwrap();
        let path = tmp.path().join(VDVAE_SAFETENSORS);
        let original = std::fs::read(&path).unwrap();
        relabel_safetensors(&path, |k| (k != "__metadata__").then_some("I32"));
        let report = ModelsDir::new(tmp.path()).check();
        let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
        let count = tiny_vdvae_config().parameter_shapes().unwrap().len();
        assert!(reason.starts_with(&format!("{count} with a non-floating dtype: ")), "{reason}");
        // Honest f16 and bf16 files check as they are and load (cast to f32).
        for kind in [Kind::Half, Kind::BFloat16] {
            std::fs::write(&path, &original).unwrap();
            let tensors: Vec<(String, Tensor)> =
                Tensor::read_safetensors(&path).unwrap().into_iter().map(|(k, t)| (k, t.to_kind(kind))).collect();
            write_tensors(&path, &tensors).unwrap();
            let dir = ModelsDir::new(tmp.path());
            assert_eq!(dir.check().get("VDVAE").unwrap().status, ModelStatus::TinyRandom, "{kind:?}");
            assert_eq!(dir.load_vdvae(Device::Cpu).unwrap().kind(), Kind::Float);
        }
    }

    #[test]
    fn header_dtypes_whose_bytes_do_not_fit_and_int_zip_files_are_invalid() {
        // An F32 tensor relabelled I64 keeps its bytes: half as many elements as its shape needs.
        let tmp = tempfile::tempdir().unwrap();
        write_tiny_models(tmp.path(), 7).unwrap();
        let path = tmp.path().join(VDVAE_SAFETENSORS);
        relabel_safetensors(&path, |k| (k == "decoder.gain").then_some("I64"));
        let report = ModelsDir::new(tmp.path()).check();
        let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
        assert!(reason.contains("tensor decoder.gain:") && reason.contains("of I64"), "{reason}");
        assert!(ModelsDir::new(tmp.path()).load_vdvae(Device::Cpu).is_err());

        // A zip torch.save file written by torch with int32 and int64 weights (the vdvae crate's
        // fixture, tools/checkpoint-dtypes/make_fixtures.py), as the official checkpoint's name.
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(VDVAE_CHECKPOINT);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vdvae/tests/fixtures/int-weights-module.th");
        std::fs::copy(fixture, &path).unwrap();
        let report = ModelsDir::new(tmp.path()).check();
        let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
        assert!(
            reason.contains(
                "2 with a non-floating dtype: decoder.gain (found I64, expected F32, F16, BF16, F64), \
                             encoder.in_conv.weight (found I32,"
            ),
            "{reason}"
        );
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

        // An OS error read through the versatile-diffusion crate (the issue's doubled message).
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
