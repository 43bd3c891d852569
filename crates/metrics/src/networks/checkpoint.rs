//! Reading published checkpoints into a [`VarStore`] by torchvision parameter name.
//!
//! Accepted files: `.safetensors`, and PyTorch's zip-format `torch.save` files (`.pth`, `.pt`,
//! `.bin`, `.tar`, any name) holding a flat name -> tensor dict, read with `Tensor::loadz_multi`.
//! Older torchvision and SwAV downloads are legacy (pre-1.6, non-zip) pickles, which libtorch's C++
//! reader cannot open: convert them once with `tools/metrics/convert_checkpoint.py` (documented in
//! `docs/metrics.md`). DataParallel's `module.` prefix is stripped (SwAV); entries the network does
//! not use (classifier, `AuxLogits`, SwAV's projection head and prototypes, `num_batches_tracked`)
//! are ignored.

use std::collections::HashMap;
use std::path::Path;

use tch::{Kind, Tensor, nn::VarStore};

use crate::MetricsError;

/// The first bytes of a zip archive, which is what `torch.save` writes since PyTorch 1.6.
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";

/// Reads every tensor of a checkpoint file, with `module.` prefixes stripped from the names.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>, MetricsError> {
    let io = |error| MetricsError::Io { path: path.to_owned(), error };
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let entries = if is_safetensors {
        Tensor::read_safetensors(path).map_err(|e| MetricsError::Checkpoint {
            path: path.to_owned(),
            // tch's safetensors errors repeat the path, which this error names once.
            message: match e {
                tch::TchError::SafeTensorError { err, .. } => format!("not a readable safetensors file: {err}"),
                other => format!("not a readable safetensors file: {other}"),
            },
        })?
    } else {
        let mut magic = [0u8; 4];
        {
            use std::io::Read;
            let mut file = std::fs::File::open(path).map_err(io)?;
            file.read_exact(&mut magic).map_err(io)?;
        }
        if magic != ZIP_MAGIC {
            return Err(MetricsError::Checkpoint {
                path: path.to_owned(),
                message: "not a zip-format torch.save file (probably a legacy pickle checkpoint); convert it with \
                          `python tools/metrics/convert_checkpoint.py IN OUT.safetensors`"
                    .into(),
            });
        }
        Tensor::loadz_multi(path).map_err(|e| MetricsError::Checkpoint {
            path: path.to_owned(),
            message: format!("cannot read the tensors of this torch.save file (is it a flat state dict?): {e}"),
        })?
    };
    Ok(entries
        .into_iter()
        .map(|(name, tensor)| {
            let name = name.strip_prefix("module.").map(str::to_owned).unwrap_or(name);
            (name, tensor)
        })
        .collect())
}

/// The dtypes a parameter may be stored in (safetensors names); loading casts them to the network's
/// f32. Integer and bool tensors are refused where a parameter is expected: their bytes would become
/// meaningless weights. Integer entries the network does not use (`num_batches_tracked`) are ignored.
pub const FLOAT_DTYPES: [&str; 4] = ["F32", "F16", "BF16", "F64"];

/// The safetensors name of a tensor kind (`F32`, `I64`, `BOOL`, ...).
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

/// Copies a state dict into every variable of `vs`, casting f16, bf16 and f64 entries to the
/// variable's kind. Each variable must be present with its shape and a floating-point dtype; otherwise
/// nothing is copied and the error names every missing, mis-shaped and non-floating entry.
/// Returns the names in the file that the network does not use.
pub fn copy_into(vs: &VarStore, state: &HashMap<String, Tensor>, source: &Path) -> Result<Vec<String>, MetricsError> {
    const SHOWN: usize = 5;
    let mut variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let (mut missing, mut misshaped, mut wrong_dtype) = (Vec::new(), Vec::new(), Vec::new());
    for name in names {
        let Some(value) = state.get(name.as_str()) else {
            missing.push(name.clone());
            continue;
        };
        if value.size() != variables[name].size() {
            misshaped.push(format!(
                "parameter {name} has shape {:?}, the network expects {:?}",
                value.size(),
                variables[name].size()
            ));
        }
        let dtype = dtype_name(value.kind());
        if !FLOAT_DTYPES.contains(&dtype.as_str()) {
            wrong_dtype
                .push(format!("parameter {name} has dtype {dtype}, expected one of {}", FLOAT_DTYPES.join(", ")));
        }
    }
    let mut problems = Vec::new();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(SHOWN).map(String::as_str).collect();
        problems.push(format!("{} expected parameters are missing, e.g. {}", missing.len(), shown.join(", ")));
    }
    for list in [misshaped, wrong_dtype] {
        let more = list.len().saturating_sub(SHOWN);
        problems.extend(list.into_iter().take(SHOWN));
        if more > 0 {
            problems.push(format!("... and {more} more"));
        }
    }
    if !problems.is_empty() {
        return Err(MetricsError::Checkpoint { path: source.to_owned(), message: problems.join("; ") });
    }
    tch::no_grad(|| -> Result<(), MetricsError> {
        for (name, var) in variables.iter_mut() {
            var.f_copy_(&state[name])?;
        }
        Ok(())
    })?;
    let mut unused: Vec<String> = state.keys().filter(|k| !variables.contains_key(k.as_str())).cloned().collect();
    unused.sort();
    Ok(unused)
}
