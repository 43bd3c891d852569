//! Reading VDVAE state dicts: the official zip-format `torch.save` files (`.th`, `.pt`, `.pth`,
//! `.bin`) and `.safetensors`, recognised by their first bytes rather than their extension
//! (tch's `VarStore::load` would send a `.th` file to the TorchScript reader, which fails).

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::Path;

use tch::Tensor;

use crate::error::{KeyMismatch, VdvaeError};

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
    let io = |source| VdvaeError::Io { path: path.to_path_buf(), source };
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
    .map_err(|e| VdvaeError::CheckpointFormat { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(tensors.into_iter().map(|(k, t)| (k.strip_prefix("module.").map(str::to_string).unwrap_or(k), t)).collect())
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
