//! [`ModelsDir::check`]: whether every expected model is present and holds the tensors its loader
//! needs with the full-size model's names, shapes and dtypes, reported as a [`ModelsReport`] with
//! the URL to fetch each missing file from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use clip::weights::{find_checkpoint, is_legacy_buffer};
use clip::{ClipTokenizer, TextConfig, VisionConfig};
use metrics::TorchvisionExtractor;
use tch::Device;
use vdvae::VdvaeConfig;
use versatile_diffusion::checkpoint::{assemble_dual_unet, rename_legacy_vae_keys};
use versatile_diffusion::{AutoencoderKl, DualUNet, Manifest, SchedulerConfig, UNetConfig, VaeConfig};

use super::header::{Listing, merged_header, placeholders, state_dict_listing, tensor_listing};
use super::{
    METRIC_NETWORKS, METRICS_FOLDER, MetricNetworkFile, ModelsDir, TINY_MARKER, TOKENIZER_FILES, VD_FOLDER, VD_HUB,
    VD_MERGED, VDVAE_CHECKPOINT, VDVAE_HPS, VDVAE_URL, diffusers_weights,
};

/// CLIP ViT-L/14's vocabulary size and special ids.
const CLIP_VOCAB: (usize, u32, u32) = (49408, 49406, 49407);

impl ModelsDir {
    /// Checks every expected model (see [`ModelsReport`]). A model is valid when its files are
    /// present and every tensor the loader needs is there with the full-size model's shape (names
    /// and shapes come from the crates' configuration-only listings; torchvision networks are built
    /// one at a time). safetensors files are checked from their header; `torch.save` files (zip or legacy pickle)
    /// (`.th`, `.bin`) are read whole, one at a time (VD's `text_unet` `.bin` needs about 7 GB of
    /// host memory). In a folder written by [`write_tiny_models`](super::write_tiny_models), models are
    /// compared with their own (tiny) configurations and reported as tiny random stand-ins.
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
                    to: PathBuf::from(METRICS_FOLDER).join(file.download_name()),
                    size: file.size,
                }],
                None,
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
        let path = self.metric_network_path(file);
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
    /// by [`write_tiny_models`](super::write_tiny_models) (synthetic: never counted as valid).
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
// Expected names and shapes, compared with a file's listing.

fn shapes(list: impl IntoIterator<Item = (String, Vec<i64>)>) -> BTreeMap<String, Vec<i64>> {
    list.into_iter().collect()
}

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

fn manifest_shapes(m: Manifest) -> BTreeMap<String, Vec<i64>> {
    m.into_iter().collect()
}

fn read_json_value(path: &Path) -> Result<serde_json::Value, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: not valid JSON: {e}", path.display()))
}

/// The dual U-Net names and shapes a file must hold: its own configuration's for tiny models,
/// otherwise Versatile Diffusion's (and the file's configuration must describe that same model).
fn unet_expected(config: &UNetConfig, tiny: bool, origin: &Path) -> Result<BTreeMap<String, Vec<i64>>, String> {
    let own = manifest_shapes(DualUNet::manifest(config).map_err(|e| e.to_string())?);
    if tiny {
        return Ok(own);
    }
    let full = manifest_shapes(DualUNet::manifest(&UNetConfig::versatile_diffusion()).map_err(|e| e.to_string())?);
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
    let full = manifest_shapes(AutoencoderKl::manifest(&VaeConfig::versatile_diffusion()).map_err(|e| e.to_string())?);
    if own != full {
        return Err(format!("{}: the autoencoder configuration is not Versatile Diffusion's", origin.display()));
    }
    Ok(full)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tiny_models::{tiny_vdvae_config, write_json, write_tensors, write_text, write_tiny_models};
    use crate::models::{ModelError, VDVAE_SAFETENSORS};
    use metrics::Protocol;
    use metrics::protocol::slots;
    use tch::{Kind, Tensor};
    use versatile_diffusion::VdWeights;
    use versatile_diffusion::checkpoint::MERGED_FORMAT;

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
    fn the_hub_configs_are_expected_at_full_size() {
        // The presets' manifests equal diffusers' (`versatile-diffusion`'s tests/manifest.rs); the
        // hub's config files describe those same models.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../versatile-diffusion/tests/fixtures/full");
        let from_fixture = UNetConfig::from_file(&fixtures.join("image_unet/config.json")).unwrap();
        assert!(unet_expected(&from_fixture, false, Path::new("x")).is_ok());
        let vae_from_fixture = VaeConfig::from_file(&fixtures.join("vae/config.json")).unwrap();
        assert!(vae_expected(&vae_from_fixture, false, Path::new("x")).is_ok());
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
        let (unet, vae) = (UNetConfig::versatile_diffusion(), VaeConfig::versatile_diffusion());
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

    /// Rewrites a safetensors file in place with the header's `dtype` of the tensors `relabel`
    /// names replaced (same data bytes), as a hand-edited or mis-exported header would be.
    fn relabel_safetensors(path: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
        weight_files::relabel_dtypes(path, path, relabel).unwrap();
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
        // The case: all F32 tensors of the VDVAE relabelled I32 (same bytes).
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
    fn a_legacy_torch_save_vdvae_checks_like_its_zip_twin() {
        // The same tiny VDVAE state dict saved by torch as a zip file and as a legacy pickle
        // (tools/weight-files/make_fixtures.py), each as the official checkpoint's name: both are
        // read (no conversion step) and give the very same report against ImageNet-64's shapes.
        let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../vdvae/tests/fixtures");
        let reason = |file: &str| {
            let tmp = tempfile::tempdir().unwrap();
            let path = tmp.path().join(VDVAE_CHECKPOINT);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::copy(fixtures.join(file), &path).unwrap();
            let report = ModelsDir::new(tmp.path()).check();
            let ModelStatus::Invalid(reason) = &report.get("VDVAE").unwrap().status else { panic!("{report}") };
            reason.clone()
        };
        let (zip, legacy) = (reason("tiny-weights-module.th"), reason("tiny-weights-module-legacy.th"));
        assert!(zip.contains("mis-shaped") && zip.contains("missing"), "{zip}");
        assert_eq!(legacy, zip);
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
}
