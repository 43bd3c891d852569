//! Reading published checkpoints into a [`VarStore`] by torchvision parameter name.
//!
//! Accepted files, recognised by their first bytes (any name: `.pth`, `.pt`, `.bin`, `.tar`):
//! `.safetensors`, PyTorch's zip-format `torch.save` files, and the legacy (pre-1.6, non-zip)
//! `torch.save` pickles that older torchvision and SwAV downloads are, each holding a name ->
//! tensor dict (a `{'state_dict': ...}` wrapper is unwrapped). The reading is the `weight-files`
//! leaf crate's. DataParallel's `module.` prefix is stripped (SwAV); entries the network does not
//! use (classifier, `AuxLogits`, SwAV's projection head and prototypes, `num_batches_tracked`) are
//! ignored.

use std::collections::HashMap;
use std::path::Path;

use tch::{Tensor, nn::VarStore};

use crate::MetricsError;

pub use weight_files::FLOAT_DTYPES;
pub use weight_files_tch::dtype_name;

/// Reads every tensor of a checkpoint file, with `module.` prefixes stripped from the names. A
/// `*.safetensors` file is read as safetensors (a damaged one is reported as such); any other name
/// by what its first bytes show.
pub fn read_state_dict(path: &Path) -> Result<HashMap<String, Tensor>, MetricsError> {
    let format = if path.extension().is_some_and(|e| e == "safetensors") {
        std::fs::File::open(path).map_err(|error| MetricsError::Io { path: path.to_owned(), error })?;
        weight_files::WeightFormat::Safetensors
    } else {
        weight_files::detect_format(path)?
    };
    let entries = weight_files_tch::read_state_dict_as(path, format)?;
    Ok(entries.into_iter().map(|(name, tensor)| (weight_files::strip_module_prefix(name), tensor)).collect())
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
