//! Shared helpers of the parity tests: the fixture paths, the expected tensors, and a relative
//! comparison.
#![allow(dead_code)]

use std::collections::HashMap;
use std::path::PathBuf;

use tch::{Device, Kind, Tensor};
use versatile_diffusion::{VdWeights, VersatileDiffusion};

/// The device the tests run on: the CPU, or CUDA when `VD_TEST_DEVICE=cuda` (as
/// `scripts/gpu-check.sh` sets it). Asking for CUDA where there is none is a failure, not a skip.
/// On CUDA, cuDNN is disabled so that convolutions stay in true f32 (its TF32 kernels would not
/// meet the 1e-4 tolerance); matrix products are f32 by libtorch's default.
pub fn device() -> Device {
    match std::env::var("VD_TEST_DEVICE").as_deref() {
        Ok("cuda") => {
            assert!(tch::Cuda::is_available(), "VD_TEST_DEVICE=cuda but libtorch sees no CUDA device");
            tch::Cuda::set_user_enabled_cudnn(false);
            Device::Cuda(0)
        }
        Ok("cpu") | Err(_) => Device::Cpu,
        Ok(other) => panic!("VD_TEST_DEVICE={other}: expected cpu or cuda"),
    }
}

/// `tests/fixtures` of this crate, or `VD_FIXTURES` when set (for test binaries carried to
/// another machine, where the build path does not exist).
pub fn fixtures() -> PathBuf {
    match std::env::var_os("VD_FIXTURES") {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests").join("fixtures"),
    }
}

/// The tiny diffusers-format checkpoint written by the generator.
pub fn tiny_folder() -> PathBuf {
    fixtures().join("tiny")
}

/// Inputs and expected outputs recorded by diffusers.
pub fn cases() -> HashMap<String, Tensor> {
    let device = device();
    let tensors = Tensor::read_safetensors(tiny_folder().join("cases.safetensors")).expect("cases.safetensors");
    tensors.into_iter().map(|(k, t)| (k, t.to_device(device))).collect()
}

/// The scalar settings of the recorded cases.
pub fn cases_json() -> serde_json::Value {
    let text = std::fs::read_to_string(tiny_folder().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

/// The tiny model on the CPU in f32.
pub fn tiny_model() -> VersatileDiffusion {
    let weights = VdWeights::from_diffusers_folder(&tiny_folder()).expect("tiny checkpoint loads");
    VersatileDiffusion::from_weights(weights, device(), Kind::Float, Kind::Float).expect("tiny model builds")
}

/// max |ours - expected| / max |expected|.
pub fn relative_error(ours: &Tensor, expected: &Tensor) -> f64 {
    assert_eq!(ours.size(), expected.size(), "shapes differ");
    let ours = ours.to_device(Device::Cpu).to_kind(Kind::Double);
    let expected = expected.to_device(Device::Cpu).to_kind(Kind::Double);
    let diff = (&ours - &expected).abs().max().double_value(&[]);
    diff / expected.abs().max().double_value(&[]).max(1e-30)
}

/// Asserts `relative_error <= tolerance`, naming the case.
pub fn assert_close(case: &str, ours: &Tensor, expected: &Tensor, tolerance: f64) {
    let e = relative_error(ours, expected);
    println!("{case}: relative error {e:.3e} (tolerance {tolerance:e})");
    assert!(e <= tolerance, "{case}: relative error {e:e} exceeds {tolerance:e}");
}
