//! safetensors headers read without the data: the tensors' names, dtypes, shapes and byte ranges,
//! and the metadata strings, each range checked against the file's size and the shape's bytes.
//!
//! The header is read as plain JSON rather than through the `safetensors` crate's `Metadata`, whose
//! validation error does not say which tensor is wrong: every message here names the tensor and
//! what does not fit (a truncated file, a dtype relabelled so that the bytes no longer hold the
//! shape), with one error type for every reader of the workspace.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::ops::Range;
use std::path::{Path, PathBuf};

use crate::{Dtype, FLOAT_DTYPES, WeightFileError};

/// The largest header accepted (the format's own limit is 100 MB too).
const MAX_HEADER: u64 = 100_000_000;

/// One tensor of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// The element type.
    pub dtype: Dtype,
    /// The shape, outermost axis first.
    pub shape: Vec<usize>,
    /// Where its bytes lie in the file (absolute offsets, row-major, little-endian).
    pub bytes: Range<u64>,
}

/// The header of a safetensors file.
#[derive(Debug, Clone)]
pub struct SafetensorsHeader {
    /// The file it was read from.
    pub path: PathBuf,
    /// Every tensor by name.
    pub tensors: BTreeMap<String, TensorInfo>,
    /// The `__metadata__` strings.
    pub metadata: HashMap<String, String>,
}

impl SafetensorsHeader {
    /// The tensor `name`, or an error naming the file and the tensors it does hold.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo, WeightFileError> {
        self.tensors.get(name).ok_or_else(|| {
            let names: Vec<&String> = self.tensors.keys().collect();
            WeightFileError::format(&self.path, format!("no tensor {name:?} (it holds {names:?})"))
        })
    }
}

/// Reads the header of the safetensors file `path` and checks that every tensor's bytes lie inside
/// the file and hold exactly its shape's elements of its dtype.
pub fn read_safetensors_header(path: &Path) -> Result<SafetensorsHeader, WeightFileError> {
    let bad = |m: String| WeightFileError::format(path, m);
    let mut file = std::fs::File::open(path).map_err(WeightFileError::io(path))?;
    let file_len = file.metadata().map_err(WeightFileError::io(path))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(|_| bad("shorter than a safetensors header".into()))?;
    let header_len = u64::from_le_bytes(len_bytes);
    // Length first: a garbage length near u64::MAX must not overflow the sum.
    if header_len > MAX_HEADER || header_len + 8 > file_len {
        return Err(bad(format!("safetensors header length {header_len} does not fit the file ({file_len} bytes)")));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(WeightFileError::io(path))?;
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    let data_start = 8 + header_len;
    let mut tensors = BTreeMap::new();
    let mut metadata = HashMap::new();
    for (name, value) in map {
        if name == "__metadata__" {
            if let Some(m) = value.as_object() {
                metadata = m.iter().filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_owned()))).collect();
            }
            continue;
        }
        let dims = |key: &str| -> Option<Vec<u64>> {
            value.get(key)?.as_array()?.iter().map(serde_json::Value::as_u64).collect()
        };
        let dtype_text = value.get("dtype").and_then(serde_json::Value::as_str);
        let (Some(shape), Some(offsets), Some(dtype_text)) = (dims("shape"), dims("data_offsets"), dtype_text) else {
            return Err(bad(format!("tensor {name} has no valid dtype/shape/data_offsets in the header")));
        };
        if offsets.len() != 2
            || offsets[0] > offsets[1]
            || offsets[1].checked_add(data_start).is_none_or(|stop| stop > file_len)
        {
            return Err(bad(format!(
                "tensor {name}: data range {offsets:?} lies outside the file ({file_len} bytes; truncated?)"
            )));
        }
        let Some(dtype) = Dtype::from_name(dtype_text) else {
            return Err(bad(format!(
                "tensor {name} has dtype {dtype_text}, which the loaders cannot read (expected one of {})",
                FLOAT_DTYPES.join(", ")
            )));
        };
        let size = dtype.size() as u64;
        let needed = shape.iter().try_fold(size, |acc, &d| acc.checked_mul(d));
        if needed != Some(offsets[1] - offsets[0]) {
            return Err(bad(format!(
                "tensor {name}: {} data bytes do not hold shape {shape:?} of {dtype} ({size} bytes each)",
                offsets[1] - offsets[0]
            )));
        }
        let info = TensorInfo {
            dtype,
            shape: shape.iter().map(|&d| d as usize).collect(),
            bytes: data_start + offsets[0]..data_start + offsets[1],
        };
        tensors.insert(name, info);
    }
    Ok(SafetensorsHeader { path: path.to_path_buf(), tensors, metadata })
}

/// Writes `dst` as a copy of the safetensors file `src` whose header gives each tensor that
/// `relabel` names a new dtype name, with the data bytes unchanged: what a hand-edited or
/// mis-exported header looks like, for testing the dtype checks of loaders. The header stays
/// padded to 8 bytes; `src` and `dst` may be the same file.
pub fn relabel_dtypes(
    src: &Path,
    dst: &Path,
    relabel: impl Fn(&str) -> Option<&'static str>,
) -> Result<(), WeightFileError> {
    let bytes = std::fs::read(src).map_err(WeightFileError::io(src))?;
    let bad = |m: String| WeightFileError::format(src, m);
    let n = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or_default()) as usize);
    let Some(n) = n.filter(|&n| n <= bytes.len() - 8) else {
        return Err(bad("not a safetensors file (no header)".into()));
    };
    let mut header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&bytes[8..8 + n]).map_err(|e| bad(format!("invalid safetensors header: {e}")))?;
    for (name, info) in header.iter_mut() {
        if name == "__metadata__" {
            continue;
        }
        if let Some(dtype) = relabel(name) {
            info["dtype"] = dtype.into();
        }
    }
    let mut text = serde_json::to_vec(&header).map_err(|e| bad(e.to_string()))?;
    while text.len() % 8 != 0 {
        text.push(b' ');
    }
    let mut out = (text.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&text);
    out.extend_from_slice(&bytes[8 + n..]);
    std::fs::write(dst, out).map_err(WeightFileError::io(dst))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A safetensors file of the given JSON header and `data_len` zero bytes.
    fn file_with(dir: &Path, header: &str, data_len: usize) -> PathBuf {
        let path = dir.join("t.safetensors");
        let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(header.as_bytes());
        bytes.resize(bytes.len() + data_len, 0);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_header_written_by_the_safetensors_crate_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..24).collect();
        let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &data).unwrap();
        let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
        let bytes = safetensors::serialize([("w", view)], Some(meta)).unwrap();
        let path = dir.path().join("w.safetensors");
        std::fs::write(&path, &bytes).unwrap();
        let header = read_safetensors_header(&path).unwrap();
        let w = header.tensor("w").unwrap();
        assert_eq!((w.dtype, w.shape.clone()), (Dtype::F32, vec![2, 3]));
        assert_eq!(&bytes[w.bytes.start as usize..w.bytes.end as usize], &data[..]);
        assert_eq!(header.metadata["format"], "pt");
        let text = header.tensor("v").unwrap_err().to_string();
        assert!(text.contains("no tensor \"v\"") && text.contains("w.safetensors"), "{text}");
    }

    #[test]
    fn relabelled_headers_keep_the_data_and_change_only_the_named_dtypes() {
        let dir = tempfile::tempdir().unwrap();
        let data: Vec<u8> = (0..16).collect();
        let a = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data[..8]).unwrap();
        let b = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2], &data[8..]).unwrap();
        let meta = HashMap::from([("k".to_string(), "v".to_string())]);
        let path = dir.path().join("ab.safetensors");
        std::fs::write(&path, safetensors::serialize([("a", a), ("b", b)], Some(meta)).unwrap()).unwrap();
        relabel_dtypes(&path, &path, |k| (k == "b").then_some("I32")).unwrap();
        let header = read_safetensors_header(&path).unwrap();
        assert_eq!((header.tensors["a"].dtype, header.tensors["b"].dtype), (Dtype::F32, Dtype::I32));
        assert_eq!(header.metadata["k"], "v");
        let bytes = std::fs::read(&path).unwrap();
        let b = &header.tensors["b"].bytes;
        assert_eq!(&bytes[b.start as usize..b.end as usize], &data[8..]);
    }

    #[test]
    fn truncated_and_relabelled_headers_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let h = r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let text = read_safetensors_header(&file_with(dir.path(), h, 4)).unwrap_err().to_string();
        assert!(text.contains("tensor a: data range") && text.contains("truncated"), "{text}");
        let h = r#"{"a":{"dtype":"I64","shape":[2],"data_offsets":[0,8]}}"#;
        let text = read_safetensors_header(&file_with(dir.path(), h, 8)).unwrap_err().to_string();
        assert!(text.contains("tensor a: 8 data bytes do not hold shape [2] of I64"), "{text}");
        let h = r#"{"a":{"dtype":"F8_E4M3","shape":[2],"data_offsets":[0,2]}}"#;
        let text = read_safetensors_header(&file_with(dir.path(), h, 2)).unwrap_err().to_string();
        assert!(text.contains("tensor a has dtype F8_E4M3"), "{text}");
        let path = dir.path().join("short");
        std::fs::write(&path, [1u8, 2]).unwrap();
        assert!(read_safetensors_header(&path).unwrap_err().to_string().contains("shorter than"));
        std::fs::write(&path, u64::MAX.to_le_bytes()).unwrap();
        assert!(read_safetensors_header(&path).unwrap_err().to_string().contains("does not fit the file"));
    }
}
