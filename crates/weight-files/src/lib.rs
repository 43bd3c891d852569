//! Weight files without a model: the low-level reading every model crate shares.
//!
//! - [`detect_format`]: a checkpoint's format from its first bytes (zip `torch.save`, legacy
//!   pre-1.6 `torch.save` pickle, safetensors), never from its extension.
//! - [`safetensors_header`]: a safetensors header, checked against the file's size, without the data.
//! - [`legacy`]: legacy `torch.save` files read in Rust (libtorch's C++ reader only opens the zip
//!   format), through the small pickle machine of [`pickle`].
//! - [`Dtype`], [`FLOAT_DTYPES`], [`KeyMismatch`]: the dtype names (safetensors' spelling) and the
//!   missing / unexpected / mis-shaped / non-floating key report the loaders print.
//! - The `weight-files-tch` crate adds tch kinds and a whole state dict of any format as tensors,
//!   so that this crate links no libtorch (`ridge` reads safetensors headers through it).
//!
//! Every error is a [`WeightFileError`] that names the file (and the key or shape) at fault.

mod dtype;
mod error;
mod format;
mod keys;
pub mod legacy;
pub mod pickle;
pub mod safetensors_header;

pub use dtype::{Dtype, FLOAT_DTYPES, is_float_dtype, non_float_tensors};
pub use error::WeightFileError;
pub use format::{WeightFormat, detect_format};
pub use keys::{KeyMismatch, compare_keys};
pub use legacy::{RawTensor, read_legacy};
pub use safetensors_header::{SafetensorsHeader, TensorInfo, read_safetensors_header, relabel_dtypes};

/// A state-dict key without the `module.` prefix that `DataParallel` / `DistributedDataParallel`
/// put before every parameter name (the SwAV and VDVAE checkpoints have it).
pub fn strip_module_prefix(name: String) -> String {
    match name.strip_prefix("module.") {
        Some(rest) => rest.to_owned(),
        None => name,
    }
}
