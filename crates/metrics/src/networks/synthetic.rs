//! Deterministic, checkpoint-free weights for parity tests and benchmarks.
//!
//! Full-size random weights of four networks would take hundreds of megabytes of fixtures. Instead,
//! every value is a pure function of the parameter's torchvision name and its flat index, computed
//! with integer hashing (FNV-1a of the name, SplitMix64 of the index) and one float64 multiply, so
//! the Python generator (`tools/metrics/synthetic.py`) reproduces the very same float32 values
//! bit for bit. The scales keep activations of the deep networks in a sane range.

use tch::{Kind, Tensor, nn::VarStore};

use crate::MetricsError;

pub use stable_hash::{splitmix64, symmetric_uniform};

/// 64-bit FNV-1a hash of a string (the `stable-hash` crate's).
pub fn fnv1a64(text: &str) -> u64 {
    stable_hash::fnv1a64(text.as_bytes())
}

/// The synthetic value of a parameter, as float32, from its name and shape.
pub fn parameter_values(name: &str, shape: &[i64]) -> Vec<f32> {
    let seed = fnv1a64(name);
    let count: i64 = shape.iter().product();
    let leaf = name.rsplit('.').next().unwrap_or(name);
    let (offset, scale) = match (leaf, shape.len()) {
        ("running_var", _) => (1.0, 0.5),
        ("running_mean", _) => (0.0, 0.1),
        ("weight", 1) => (1.0, 0.1),
        ("bias", _) => (0.0, 0.1),
        _ => {
            let fan_in: i64 = shape.iter().skip(1).product();
            (0.0, (6.0 / fan_in.max(1) as f64).sqrt())
        }
    };
    (0..count as u64).map(|i| (offset + symmetric_uniform(seed, i) * scale) as f32).collect()
}

/// Overwrites every variable of `vs` with its synthetic value.
pub fn fill_var_store(vs: &VarStore) -> Result<(), MetricsError> {
    tch::no_grad(|| {
        for (name, mut var) in vs.variables() {
            let values = parameter_values(&name, &var.size());
            let source = Tensor::from_slice(&values).view(var.size().as_slice()).to_kind(Kind::Float);
            var.f_copy_(&source)?;
        }
        Ok(())
    })
}
