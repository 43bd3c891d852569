//! The `weight-files` leaf as tch tensors: dtypes to kinds, and a whole state dict of any format as
//! CPU tensors, the one reader behind every model crate's checkpoint loading. A crate of its own so
//! that `weight-files` stays free of libtorch for the crates that know nothing of tensors (`ridge`).

use std::path::Path;

use tch::{Device, Kind, Tensor};

use weight_files::{Dtype, RawTensor, WeightFileError, WeightFormat, detect_format, read_legacy};

/// The tch kind of a dtype.
pub fn kind(dtype: Dtype) -> Kind {
    match dtype {
        Dtype::F32 => Kind::Float,
        Dtype::F16 => Kind::Half,
        Dtype::BF16 => Kind::BFloat16,
        Dtype::F64 => Kind::Double,
        Dtype::I64 => Kind::Int64,
        Dtype::I32 => Kind::Int,
        Dtype::I16 => Kind::Int16,
        Dtype::I8 => Kind::Int8,
        Dtype::U8 => Kind::Uint8,
        Dtype::BOOL => Kind::Bool,
    }
}

/// The dtype of a tch kind, `None` for kinds weight files do not hold (complex, quantised, ...).
pub fn dtype_of(kind: Kind) -> Option<Dtype> {
    Dtype::ALL.into_iter().find(|&d| self::kind(d) == kind)
}

/// The safetensors name of a tensor kind (`F32`, `I64`, `BOOL`, ...), as messages and listings
/// spell dtypes; tch's own name for kinds outside [`Dtype`].
pub fn dtype_name(kind: Kind) -> String {
    match dtype_of(kind) {
        Some(d) => d.name().to_owned(),
        None => format!("{kind:?}"),
    }
}

/// The values of a [`RawTensor`] as a CPU tensor of the same dtype and shape.
pub fn to_tensor(raw: &RawTensor) -> Result<Tensor, tch::TchError> {
    let shape: Vec<i64> = raw.shape.iter().map(|&d| d as i64).collect();
    Tensor::f_from_data_size(&raw.data, &shape, kind(raw.dtype))
}

/// Every tensor of a state dict file, on the CPU, by the format its first bytes show: zip
/// `torch.save` (libtorch's reader), legacy `torch.save` pickle ([`weight_files::legacy`]) or
/// safetensors. Names are as saved (see [`weight_files::strip_module_prefix`]).
pub fn read_state_dict(path: &Path) -> Result<Vec<(String, Tensor)>, WeightFileError> {
    read_state_dict_as(path, detect_format(path)?)
}

/// Every tensor of a state dict file read as `format` (for a caller that trusts a file name, so
/// that a damaged `*.safetensors` is reported as a damaged safetensors file).
pub fn read_state_dict_as(path: &Path, format: WeightFormat) -> Result<Vec<(String, Tensor)>, WeightFileError> {
    let torch = |e: tch::TchError| WeightFileError::Format { path: path.to_path_buf(), message: tch_message(e) };
    match format {
        WeightFormat::TorchZip => Tensor::loadz_multi_with_device(path, Device::Cpu).map_err(torch),
        WeightFormat::Safetensors => Tensor::read_safetensors(path).map_err(torch),
        WeightFormat::LegacyPickle => read_legacy(path)?
            .into_iter()
            .map(|(name, raw)| {
                let t = to_tensor(&raw).map_err(|e| WeightFileError::Format {
                    path: path.to_path_buf(),
                    message: format!("tensor {name}: {e}"),
                })?;
                Ok((name, t))
            })
            .collect(),
    }
}

/// libtorch's message without the file name that tch's safetensors errors repeat (the error
/// names the file once).
fn tch_message(e: tch::TchError) -> String {
    match e {
        tch::TchError::SafeTensorError { err, .. } => format!("not a readable safetensors file: {err}"),
        other => format!("not a readable torch.save file: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_raw_tensors_keep_dtype_shape_and_values() {
        for d in Dtype::ALL {
            assert_eq!(dtype_of(kind(d)), Some(d), "{d}");
            assert_eq!(dtype_name(kind(d)), d.name());
        }
        assert_eq!(dtype_name(Kind::ComplexFloat), "ComplexFloat");
        // 1.0 and -2.0 in IEEE half precision, little-endian.
        let raw = RawTensor { dtype: Dtype::F16, shape: vec![2, 1], data: vec![0x00, 0x3c, 0x00, 0xc0] };
        let t = to_tensor(&raw).unwrap();
        assert_eq!((t.kind(), t.size()), (Kind::Half, vec![2, 1]));
        let values = Vec::<f32>::try_from(t.to_kind(Kind::Float).flatten(0, -1)).unwrap();
        assert_eq!(values, vec![1.0, -2.0]);
    }
}
