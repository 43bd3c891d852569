use std::collections::{BTreeMap, HashMap};
use std::fmt;

use crate::FLOAT_DTYPES;

/// The keys by which a state dict differs from the model: missing, unexpected, mis-shaped, and
/// stored in a non-floating dtype. Its `Display` lists each kind by name (the first 20 of each).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyMismatch {
    /// Parameters of the model absent from the checkpoint.
    pub missing: Vec<String>,
    /// Checkpoint tensors the model has no parameter for.
    pub unexpected: Vec<String>,
    /// `(key, expected shape, found shape)` of tensors whose shape differs.
    pub misshaped: Vec<(String, Vec<i64>, Vec<i64>)>,
    /// `(key, dtype found)` of tensors the model needs whose dtype is not floating point (an
    /// integer or bool tensor would be cast to meaningless weights); names as in safetensors (`I32`).
    pub wrong_dtype: Vec<(String, String)>,
}

impl KeyMismatch {
    /// True when the checkpoint fits exactly.
    pub fn is_empty(&self) -> bool {
        self.missing.is_empty()
            && self.unexpected.is_empty()
            && self.misshaped.is_empty()
            && self.wrong_dtype.is_empty()
    }
}

impl fmt::Display for KeyMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        let list = |f: &mut fmt::Formatter<'_>, title: &str, items: Vec<String>| -> fmt::Result {
            if items.is_empty() {
                return Ok(());
            }
            write!(f, "{} {title}: ", items.len())?;
            write!(f, "{}", items.iter().take(SHOWN).cloned().collect::<Vec<_>>().join(", "))?;
            if items.len() > SHOWN {
                write!(f, ", ... ({} more)", items.len() - SHOWN)?;
            }
            write!(f, "; ")
        };
        list(f, "missing", self.missing.clone())?;
        list(f, "unexpected", self.unexpected.clone())?;
        list(
            f,
            "mis-shaped",
            self.misshaped.iter().map(|(k, e, g)| format!("{k} (expected {e:?}, found {g:?})")).collect(),
        )?;
        list(
            f,
            "with a non-floating dtype",
            self.wrong_dtype
                .iter()
                .map(|(k, d)| format!("{k} (found {d}, expected {})", FLOAT_DTYPES.join(", ")))
                .collect(),
        )
    }
}

/// Compares the names and shapes of a state dict with those the model expects (the dtypes are
/// the caller's: see [`crate::non_float_tensors`]).
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
        let mut m = compare_keys(&expected, &found);
        assert_eq!(m.missing, vec!["b"]);
        assert_eq!(m.unexpected, vec!["c"]);
        assert_eq!(m.misshaped, vec![("a.weight".to_string(), vec![2, 3], vec![3, 2])]);
        m.wrong_dtype.push(("a.weight".into(), "I32".into()));
        let text = m.to_string();
        assert!(
            text.contains("1 missing: b")
                && text.contains("1 unexpected: c")
                && text.contains("a.weight (expected [2, 3], found [3, 2])")
                && text.contains("1 with a non-floating dtype: a.weight (found I32, expected F32, F16, BF16, F64)"),
            "{text}"
        );
        assert!(compare_keys(&expected, &expected.clone()).is_empty());
    }
}
