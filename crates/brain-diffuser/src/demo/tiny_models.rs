//! Tiny models written in the layout and file formats of the real models folder
//! ([`write_tiny_models`]), so that the demo and the tests run every loader and the whole command
//! line on a CPU in minutes: seeded random weights, except the VDVAE, which is built to invert
//! itself ([`super::mosaic_vdvae`]) so that the demo's stage 1 has a known answer.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clip::{ClipTextModel, ClipTokenizer, ClipVisionModel, TextConfig, VisionConfig};
use tch::{Device, Kind, Tensor};
use tracing::info;
use vdvae::VdvaeConfig;
use versatile_diffusion::{AutoencoderKl, DualUNet, UNetConfig, VaeConfig};

use crate::models::{ModelError, TINY_MARKER, VD_FOLDER, VD_MERGED, VDVAE_HPS, VDVAE_SAFETENSORS, io_error};

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

/// Decoder blocks of the tiny VDVAE that carry the image (two at 1x1, two at 4x4): the demo's
/// stimuli are decoded from them and the pipeline regresses them.
pub const VDVAE_LATENT_BLOCKS: usize = 4;

/// Latent values per image in those blocks: 4 channels at 1x1 twice, at 4x4 twice.
pub const VDVAE_LATENT_DIM: usize = 2 * 4 + 2 * 4 * 16;

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

/// `count` values uniform in [-1, 1), a pure function of `seed` and `name` (the same on any machine,
/// whatever else draws random numbers).
pub(crate) fn seeded_uniform(seed: u64, name: &str, count: usize) -> Vec<f64> {
    let stream = stable_hash::fnv1a64_continue(seed ^ stable_hash::FNV_OFFSET, name.as_bytes());
    (0..count as u64).map(|i| stable_hash::symmetric_uniform(stream, i)).collect()
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

/// The tiny models' partial-file naming (`.brain-diffuser-partial-...`): every file is written
/// atomically, so an interrupted demo never leaves a half-written model that checks as present.
const PARTIALS: atomic_file::Partials = atomic_file::Partials::new("brain-diffuser");

fn atomic_error(e: atomic_file::AtomicError) -> ModelError {
    match e {
        atomic_file::AtomicError::Folder { path, source, .. } | atomic_file::AtomicError::Io { path, source } => {
            io_error(&path)(source)
        }
    }
}

pub(crate) fn write_text(path: &Path, text: &str) -> Result<(), ModelError> {
    PARTIALS.write_bytes(path, text.as_bytes()).map_err(atomic_error)
}

pub(crate) fn write_json(path: &Path, value: &serde_json::Value) -> Result<(), ModelError> {
    let text = serde_json::to_string_pretty(value)
        .map_err(|e| ModelError::Invalid { path: path.to_path_buf(), message: e.to_string() })?;
    write_text(path, &(text + "\n"))
}

pub(crate) fn write_tensors(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), ModelError> {
    // tch writes to a path: a temporary one beside `path`, renamed into place once complete.
    let tmp = PARTIALS.temp_path_for(path).map_err(atomic_error)?;
    if let Err(error) = Tensor::write_safetensors(tensors, &tmp) {
        let _ = std::fs::remove_file(&tmp);
        return Err(ModelError::Torch { path: path.to_path_buf(), error });
    }
    std::fs::rename(&tmp, path).map_err(io_error(path))
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
/// - `vdvae/hps.json` + `vdvae/model.safetensors`: the tiny VDVAE of the demo, built so that its
///   encoder inverts its decoder on colour mosaics ([`super::mosaic_vdvae`]; its colour mixing is
///   seeded), the one model here whose outputs have a known meaning;
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
///
/// [`ModelsDir`]: crate::models::ModelsDir
/// [`ModelsDir::check`]: crate::models::ModelsDir::check
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
    let mixing = seeded_uniform(seed, "vdvae.colour-mixing", 3 * (vdvae.zdim as usize).saturating_sub(3));
    let model = super::mosaic_vdvae::build(&vdvae, VDVAE_LATENT_BLOCKS, &mixing).map_err(vdvae_error)?;
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
        vdvae_latent_blocks: VDVAE_LATENT_BLOCKS,
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
    use crate::models::{ModelStatus, ModelsDir};
    use image::RgbImage;
    use metrics::Protocol;
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
    fn the_latent_constants_match_the_tiny_vdvae() {
        let layout = tiny_vdvae_config().latent_layout(VDVAE_LATENT_BLOCKS).unwrap();
        assert_eq!(layout.dim(), VDVAE_LATENT_DIM);
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
}
