//! Deterministic, checkpoint-free weights for parity tests and benchmarks.
//!
//! Full-size random weights of four networks would take hundreds of megabytes of fixtures. Instead,
//! every value is a pure function of the parameter's torchvision name and its flat index, computed
//! with integer hashing (FNV-1a of the name, SplitMix64 of the index) and one float64 multiply, so
//! the Python generator (`tools/metrics/synthetic.py`) reproduces the very same float32 values
//! bit for bit. The scales keep activations of the deep networks in a sane range.

use tch::{Kind, Tensor, nn::VarStore};

use crate::MetricsError;

const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// 64-bit FNV-1a hash of a string.
pub fn fnv1a64(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

/// SplitMix64 output number `index` (0-based) of the stream seeded with `seed`.
pub fn splitmix64(seed: u64, index: u64) -> u64 {
    let mut z = seed.wrapping_add(index.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Value number `index` of the stream `seed`, uniform in [-1, 1) with 53 random bits.
pub fn symmetric_uniform(seed: u64, index: u64) -> f64 {
    (splitmix64(seed, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
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
