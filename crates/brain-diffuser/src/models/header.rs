//! Names, shapes and dtypes of weight files read without loading their data: safetensors headers
//! (checked against the file's size), `torch.save` listings (zip or legacy pickle), and the header and configurations
//! of a merged `vd-convert` file. Tested through the checks of `check.rs`.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use tch::Tensor;
use versatile_diffusion::checkpoint::{MERGED_FORMAT, StateDict};
use versatile_diffusion::{SchedulerConfig, UNetConfig, VaeConfig};
use weight_files::{Dtype, WeightFormat};
use weight_files_tch::dtype_name;

/// Names, shapes and dtypes (safetensors names: `F32`, `I64`, ...) of a weight file's tensors.
pub(super) type Listing = BTreeMap<String, (Vec<i64>, String)>;

/// The header of a safetensors file: tensor shapes and dtypes, and the metadata strings.
pub(super) struct SafetensorsHeader {
    pub(super) tensors: Listing,
    pub(super) metadata: HashMap<String, String>,
}

/// Reads a safetensors header (the `weight-files` reader: every tensor's data inside the file and
/// exactly its shape's elements in a dtype the loaders can read).
fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, String> {
    let header = weight_files::read_safetensors_header(path).map_err(|e| e.to_string())?;
    let tensors = header
        .tensors
        .into_iter()
        .map(|(k, t)| (k, (t.shape.iter().map(|&d| d as i64).collect(), t.dtype.name().to_owned())))
        .collect();
    Ok(SafetensorsHeader { tensors, metadata: header.metadata })
}

/// Names, shapes and dtypes of a weight file, recognised by its first bytes: safetensors (header
/// only) or a `torch.save` file, zip or legacy pickle (read whole, on the CPU).
pub(super) fn tensor_listing(path: &Path) -> Result<Listing, String> {
    if weight_files::detect_format(path).map_err(|e| e.to_string())? == WeightFormat::Safetensors {
        return read_safetensors_header(path).map(|h| h.tensors);
    }
    let tensors = weight_files_tch::read_state_dict(path).map_err(|e| e.to_string())?;
    Ok(tensors.into_iter().map(|(k, t)| (k, (t.size(), dtype_name(t.kind())))).collect())
}

/// Zero-memory tensors of the listed shapes and dtypes, so that the `versatile-diffusion` key
/// functions can run on a file's listing and the dtypes follow the renamed keys.
pub(super) fn placeholders(listing: &Listing, path: &Path) -> Result<StateDict, String> {
    listing
        .iter()
        .map(|(k, (shape, dtype))| {
            let Some(dtype) = Dtype::from_name(dtype) else {
                return Err(format!("{}: tensor {k} has dtype {dtype}, which the loaders cannot read", path.display()));
            };
            let kind = weight_files_tch::kind(dtype);
            Ok((k.clone(), Tensor::from(0f32).to_kind(kind).expand(shape.as_slice(), false)))
        })
        .collect()
}

pub(super) fn state_dict_listing(sd: &StateDict) -> Listing {
    sd.iter().map(|(k, t)| (k.clone(), (t.size(), dtype_name(t.kind())))).collect()
}

/// The header and the three configurations of a merged file written by `vd-convert`.
pub(super) fn merged_header(
    path: &Path,
) -> Result<(SafetensorsHeader, UNetConfig, VaeConfig, SchedulerConfig), String> {
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
