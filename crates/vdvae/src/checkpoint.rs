//! Reading VDVAE state dicts: the official zip-format `torch.save` files (`.th`, `.pt`, `.pth`,
//! `.bin`) and `.safetensors`, recognised by their first bytes rather than their extension
//! (tch's `VarStore::load` would send a `.th` file to the TorchScript reader, which fails).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::{Kind, Tensor};

use crate::error::{KeyMismatch, VdvaeError};

/// The dtypes a parameter may be stored in (safetensors names): loading casts them to the model's
/// precision. Integer and bool tensors are refused: their bytes would become meaningless weights.
pub const FLOAT_DTYPES: [&str; 4] = ["F32", "F16", "BF16", "F64"];

/// The safetensors name of a tensor kind (`F32`, `I64`, `BOOL`, ...), as used in messages.
pub fn dtype_name(kind: Kind) -> String {
    match kind {
        Kind::Float => "F32".into(),
        Kind::Half => "F16".into(),
        Kind::BFloat16 => "BF16".into(),
        Kind::Double => "F64".into(),
        Kind::Int => "I32".into(),
        Kind::Int64 => "I64".into(),
        Kind::Int16 => "I16".into(),
        Kind::Int8 => "I8".into(),
        Kind::Uint8 => "U8".into(),
        Kind::Bool => "BOOL".into(),
        other => format!("{other:?}"),
    }
}

/// Whether a dtype (safetensors name) is one of the [`FLOAT_DTYPES`] a parameter may be stored in.
pub fn is_float_dtype(dtype: &str) -> bool {
    FLOAT_DTYPES.contains(&dtype)
}

/// The `(key, dtype)` of every tensor whose dtype is not one of the [`FLOAT_DTYPES`], sorted by key.
pub fn non_float_tensors<'a>(tensors: impl IntoIterator<Item = (&'a str, &'a str)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> =
        tensors.into_iter().filter(|(_, d)| !is_float_dtype(d)).map(|(k, d)| (k.to_owned(), d.to_owned())).collect();
    out.sort();
    out
}

/// The on-disk format of a checkpoint, from its magic bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// Zip archive written by `torch.save` (PyTorch >= 1.6 default).
    TorchZip,
    /// safetensors: little-endian header length, then a JSON header.
    Safetensors,
}

/// Recognises the checkpoint format from the first bytes of `path`.
pub fn detect_format(path: &Path) -> Result<CheckpointFormat, VdvaeError> {
    let io = |error| VdvaeError::Io { path: path.to_path_buf(), error };
    let mut head = [0u8; 9];
    let mut file = std::fs::File::open(path).map_err(io)?;
    let n = file.read(&mut head).map_err(io)?;
    let format_error = |message: String| VdvaeError::CheckpointFormat { path: path.to_path_buf(), message };
    if n >= 4 && head[..4] == *b"PK\x03\x04" {
        return Ok(CheckpointFormat::TorchZip);
    }
    if n == 9 && head[8] == b'{' {
        return Ok(CheckpointFormat::Safetensors);
    }
    if n >= 2 && head[0] == 0x80 && head[1] == 0x02 {
        return Err(format_error(
            "this is a legacy (pre-1.6, non-zip) torch.save pickle; re-save it once with \
             `torch.save(torch.load(f, map_location='cpu'), g)` or convert it to .safetensors"
                .into(),
        ));
    }
    Err(format_error(format!(
        "unknown format (first bytes {:02x?}); expected a zip torch.save file or safetensors",
        &head[..n]
    )))
}

/// Reads every tensor of a state dict, on the CPU, with a leading `module.` (from a
/// DistributedDataParallel-wrapped model) stripped from the keys.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, VdvaeError> {
    let format = detect_format(path)?;
    let tensors = match format {
        CheckpointFormat::TorchZip => Tensor::loadz_multi_with_device(path, tch::Device::Cpu),
        CheckpointFormat::Safetensors => Tensor::read_safetensors(path),
    }
    .map_err(|e| VdvaeError::CheckpointFormat { path: path.to_path_buf(), message: tch_message(e) })?;
    Ok(tensors.into_iter().map(|(k, t)| (k.strip_prefix("module.").map(str::to_string).unwrap_or(k), t)).collect())
}

/// libtorch's message without the file name that tch's safetensors errors repeat (the caller
/// names the file once).
fn tch_message(e: tch::TchError) -> String {
    match e {
        tch::TchError::SafeTensorError { err, .. } => format!("not a valid safetensors file: {err}"),
        other => other.to_string(),
    }
}

/// Compares the names and shapes of a state dict with those the model expects.
pub fn compare_keys(expected: &[(String, Vec<i64>)], found: &[(String, Vec<i64>)]) -> KeyMismatch {
    let expected_map: BTreeMap<&str, &Vec<i64>> = expected.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let found_map: HashMap<&str, &Vec<i64>> = found.iter().map(|(k, s)| (k.as_str(), s)).collect();
    let mut mismatch = KeyMismatch::default();
    for (k, shape) in expected {
        match found_map.get(k.as_str()) {
            None => mismatch.missing.push(k.clone()),
            Some(s) if *s != shape => mismatch.misshaped.push((k.clone(), shape.clone(), (*s).clone())),
            Some(_) => {}
        }
    }
    for (k, _) in found {
        if !expected_map.contains_key(k.as_str()) {
            mismatch.unexpected.push(k.clone());
        }
    }
    mismatch
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mismatch_lists_every_kind_of_difference_by_name() {
        let expected = vec![("a.weight".to_string(), vec![2, 3]), ("b".to_string(), vec![1])];
        let found = vec![("a.weight".to_string(), vec![3, 2]), ("c".to_string(), vec![1])];
        let m = compare_keys(&expected, &found);
        assert_eq!(m.missing, vec!["b"]);
        assert_eq!(m.unexpected, vec!["c"]);
        assert_eq!(m.misshaped, vec![("a.weight".to_string(), vec![2, 3], vec![3, 2])]);
        let text = m.to_string();
        assert!(
            text.contains("1 missing: b")
                && text.contains("1 unexpected: c")
                && text.contains("a.weight (expected [2, 3], found [3, 2])"),
            "{text}"
        );
        assert!(compare_keys(&expected, &expected.clone()).is_empty());
    }

    #[test]
    fn unknown_and_legacy_formats_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = dir.path().join("old.th");
        std::fs::write(&legacy, [0x80u8, 0x02, 0x8a, 0x0a, 0, 0, 0, 0, 0, 0]).unwrap();
        assert!(detect_format(&legacy).unwrap_err().to_string().contains("legacy"));
        let text = dir.path().join("x.th");
        std::fs::write(&text, b"hello world").unwrap();
        assert!(detect_format(&text).unwrap_err().to_string().contains("unknown format"));
        assert!(matches!(detect_format(&dir.path().join("absent.th")), Err(VdvaeError::Io { .. })));
    }
}
