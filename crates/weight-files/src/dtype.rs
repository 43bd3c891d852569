/// The element types weight files hold, named as safetensors names them (`F32`, `I64`, ...), the
/// spelling every message and listing of the workspace uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Dtype {
    F32,
    F16,
    BF16,
    F64,
    I64,
    I32,
    I16,
    I8,
    U8,
    BOOL,
}

/// The dtypes a parameter may be stored in: loading casts them to the model's precision. Integer
/// and bool tensors are refused where a parameter is expected: their bytes would become
/// meaningless weights.
pub const FLOAT_DTYPES: [&str; 4] = ["F32", "F16", "BF16", "F64"];

impl Dtype {
    /// Every dtype, in the order of the enum.
    pub const ALL: [Dtype; 10] = [
        Dtype::F32,
        Dtype::F16,
        Dtype::BF16,
        Dtype::F64,
        Dtype::I64,
        Dtype::I32,
        Dtype::I16,
        Dtype::I8,
        Dtype::U8,
        Dtype::BOOL,
    ];

    /// The safetensors name (`F32`, `BF16`, `BOOL`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
            Dtype::F64 => "F64",
            Dtype::I64 => "I64",
            Dtype::I32 => "I32",
            Dtype::I16 => "I16",
            Dtype::I8 => "I8",
            Dtype::U8 => "U8",
            Dtype::BOOL => "BOOL",
        }
    }

    /// The dtype of a safetensors name, `None` for names outside [`Dtype::ALL`].
    pub fn from_name(name: &str) -> Option<Dtype> {
        Dtype::ALL.into_iter().find(|d| d.name() == name)
    }

    /// The dtype of a `safetensors` crate dtype, `None` for those outside [`Dtype::ALL`] (the
    /// 8-bit floats, unsigned 16-64-bit integers, complex, ...).
    pub fn from_safetensors(dtype: safetensors::Dtype) -> Option<Dtype> {
        Dtype::from_name(&format!("{dtype:?}"))
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            Dtype::BOOL | Dtype::U8 | Dtype::I8 => 1,
            Dtype::F16 | Dtype::BF16 | Dtype::I16 => 2,
            Dtype::F32 | Dtype::I32 => 4,
            Dtype::F64 | Dtype::I64 => 8,
        }
    }

    /// Whether a parameter may be stored in this dtype (one of [`FLOAT_DTYPES`]).
    pub fn is_float(self) -> bool {
        is_float_dtype(self.name())
    }
}

impl std::fmt::Display for Dtype {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sizes_match_safetensors() {
        for d in Dtype::ALL {
            assert_eq!(Dtype::from_name(d.name()), Some(d));
            let st: safetensors::Dtype = serde_json::from_value(serde_json::json!(d.name())).unwrap();
            assert_eq!(st.bitsize() / 8, d.size(), "{d}");
        }
        assert_eq!(Dtype::from_name("F8_E4M3"), None);
        assert!(Dtype::BF16.is_float() && !Dtype::I64.is_float());
        let odd = non_float_tensors([("b", "I64"), ("a", "BOOL"), ("c", "F16")]);
        assert_eq!(odd, vec![("a".to_string(), "BOOL".to_string()), ("b".to_string(), "I64".to_string())]);
    }
}
