//! Names, shapes and dtypes of weight files read without loading their data: safetensors headers
//! (checked against the file's size), zip `torch.save` listings, and the header and configurations
//! of a merged `vd-convert` file. Tested through the checks of `check.rs`.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::{Device, Kind, Tensor};
use versatile_diffusion::checkpoint::{MERGED_FORMAT, StateDict};
use versatile_diffusion::{SchedulerConfig, UNetConfig, VaeConfig};

/// Names, shapes and dtypes (safetensors names: `F32`, `I64`, ...) of a weight file's tensors.
pub(super) type Listing = BTreeMap<String, (Vec<i64>, String)>;

/// The header of a safetensors file: tensor shapes and dtypes, and the metadata strings.
pub(super) struct SafetensorsHeader {
    pub(super) tensors: Listing,
    pub(super) metadata: HashMap<String, String>,
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
pub(super) fn tensor_listing(path: &Path) -> Result<Listing, String> {
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
pub(super) fn placeholders(listing: &Listing, path: &Path) -> Result<StateDict, String> {
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

pub(super) fn state_dict_listing(sd: &StateDict) -> Listing {
    sd.iter().map(|(k, t)| (k.clone(), (t.size(), vdvae::checkpoint::dtype_name(t.kind())))).collect()
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
