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

use tch::{Tensor, nn::VarStore};

use crate::MetricsError;

/// The first bytes of a zip archive, which is what `torch.save` writes since PyTorch 1.6.
const ZIP_MAGIC: [u8; 4] = *b"PK\x03\x04";

/// Reads every tensor of a checkpoint file, with `module.` prefixes stripped from the names.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>, MetricsError> {
    let io = |source| MetricsError::Io { path: path.to_owned(), source };
    let is_safetensors = path.extension().is_some_and(|e| e == "safetensors");
    let entries = if is_safetensors {
        Tensor::read_safetensors(path).map_err(|e| MetricsError::Checkpoint {
            path: path.to_owned(),
            message: format!("not a readable safetensors file: {e}"),
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

/// Copies a state dict into every variable of `vs`; each variable must be present with its shape.
/// Returns the names in the file that the network does not use.
pub fn copy_into(vs: &VarStore, state: &HashMap<String, Tensor>, source: &Path) -> Result<Vec<String>, MetricsError> {
    let mut variables = vs.variables();
    let mut names: Vec<&String> = variables.keys().collect();
    names.sort();
    let missing: Vec<String> =
        names.iter().filter(|n| !state.contains_key(n.as_str())).map(|n| n.to_string()).collect();
    if !missing.is_empty() {
        let shown: Vec<&str> = missing.iter().take(5).map(String::as_str).collect();
        return Err(MetricsError::Checkpoint {
            path: source.to_owned(),
            message: format!("{} expected parameters are missing, e.g. {}", missing.len(), shown.join(", ")),
        });
    }
    tch::no_grad(|| -> Result<(), MetricsError> {
        for (name, var) in variables.iter_mut() {
            let value = &state[name];
            if value.size() != var.size() {
                return Err(MetricsError::Checkpoint {
                    path: source.to_owned(),
                    message: format!(
                        "parameter {name} has shape {:?}, the network expects {:?}",
                        value.size(),
                        var.size()
                    ),
                });
            }
            var.f_copy_(value)?;
        }
        Ok(())
    })?;
    let mut unused: Vec<String> = state.keys().filter(|k| !variables.contains_key(k.as_str())).cloned().collect();
    unused.sort();
    Ok(unused)
}
