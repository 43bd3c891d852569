//! Fixture loading shared by the integration tests.
#![allow(dead_code)]

use ndarray::{Array1, Array2};
use safetensors::{Dtype, SafeTensors};
use std::collections::HashMap;
use std::path::PathBuf;

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// A fixture file: tensors (F64 or F32, read as f64) by name plus the metadata strings.
pub struct Fixture {
    tensors: HashMap<String, (Vec<usize>, Vec<f64>)>,
    pub metadata: HashMap<String, String>,
}

impl Fixture {
    pub fn load(name: &str) -> Fixture {
        let path = fixture_path(&format!("{name}.safetensors"));
        let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let (_, meta) = SafeTensors::read_metadata(&bytes).expect("fixture header");
        let metadata = meta.metadata().clone().unwrap_or_default();
        let st = SafeTensors::deserialize(&bytes).expect("fixture");
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let data = match view.dtype() {
                Dtype::F64 => view.data().chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect(),
                Dtype::F32 => {
                    view.data().chunks_exact(4).map(|c| f64::from(f32::from_le_bytes(c.try_into().unwrap()))).collect()
                }
                other => panic!("fixture tensor {name}: unexpected dtype {other:?}"),
            };
            tensors.insert(name, (view.shape().to_vec(), data));
        }
        Fixture { tensors, metadata }
    }

    pub fn flag(&self, key: &str) -> bool {
        self.metadata.get(key).map(String::as_str) == Some("true")
    }

    pub fn matrix(&self, name: &str) -> Array2<f64> {
        let (shape, data) = &self.tensors[name];
        assert_eq!(shape.len(), 2, "{name} is not a matrix: {shape:?}");
        Array2::from_shape_vec((shape[0], shape[1]), data.clone()).unwrap()
    }

    pub fn matrix_f32(&self, name: &str) -> Array2<f32> {
        self.matrix(name).mapv(|v| v as f32)
    }

    pub fn vector(&self, name: &str) -> Array1<f64> {
        let (_, data) = &self.tensors[name];
        Array1::from_vec(data.clone())
    }
}

/// max |got - want| / max |want|.
pub fn relative_error(got: &Array2<f32>, want: &Array2<f64>) -> f64 {
    assert_eq!(got.dim(), want.dim(), "shapes differ");
    let scale = want.iter().fold(0f64, |m, v| m.max(v.abs()));
    let diff = got.iter().zip(want.iter()).fold(0f64, |m, (g, w)| m.max((f64::from(*g) - w).abs()));
    diff / scale
}
