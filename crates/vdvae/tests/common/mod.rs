//! Paths of the committed fixtures (see tests/fixtures/README.md).
#![allow(dead_code)]

use std::path::PathBuf;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub const TINY_WEIGHTS: &str = "tiny-weights.safetensors";
pub const TINY_WEIGHTS_TH: &str = "tiny-weights-module.th";
pub const TINY_REFERENCE: &str = "tiny-reference.safetensors";
