//! Reading VDVAE state dicts: the official `torch.save` files (`.th`, `.pt`, `.pth`, `.bin`; zip
//! format, or the legacy pre-1.6 pickle the official checkpoints are), and `.safetensors`,
//! recognised by their first bytes rather than their extension (tch's `VarStore::load` would send
//! a `.th` file to the TorchScript reader, which fails). The reading itself is the `weight-files`
//! leaf crate's, shared with the other model crates; this module keeps the names the crate has
//! always exported.

use std::path::Path;

use tch::Tensor;

use crate::error::VdvaeError;

pub use weight_files::{
    FLOAT_DTYPES, WeightFormat as CheckpointFormat, compare_keys, is_float_dtype, non_float_tensors,
};
pub use weight_files_tch::dtype_name;

/// Recognises the checkpoint format from the first bytes of `path`.
pub fn detect_format(path: &Path) -> Result<CheckpointFormat, VdvaeError> {
    Ok(weight_files::detect_format(path)?)
}

/// Reads every tensor of a state dict, on the CPU, with a leading `module.` (from a
/// DistributedDataParallel-wrapped model) stripped from the keys.
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, VdvaeError> {
    let tensors = weight_files_tch::read_state_dict(path)?;
    Ok(tensors.into_iter().map(|(k, t)| (weight_files::strip_module_prefix(k), t)).collect())
}
