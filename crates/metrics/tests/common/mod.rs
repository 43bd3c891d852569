//! Test helpers: the integer image recipes of `tools/metrics/synthetic.py`, reproduced exactly, and
//! fixture readers.
#![allow(dead_code)]

use std::path::PathBuf;

use image::RgbImage;
use metrics::networks::synthetic::splitmix64;
use serde_json::Value;

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

pub fn read_json(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture(name)).expect("fixture present");
    serde_json::from_str(&text).expect("fixture is JSON")
}

/// `synthetic.structured_image`.
pub fn structured_image(seed: u64, width: u32, height: u32) -> RgbImage {
    RgbImage::from_fn(width, height, |x, y| {
        let (x, y) = (i64::from(x), i64::from(y));
        let px: [u8; 3] = std::array::from_fn(|c| {
            let c = c as i64;
            let block = (((y >> 4) * 1000 + (x >> 4)) * 3 + c) as u64;
            let rnd = (splitmix64(seed, block) >> 58) as i64;
            let v = x * (c + 2) + y * (4 - c) + 64 * (((x >> 3) + (y >> 3)) & 1) + rnd * 4;
            v.rem_euclid(256) as u8
        });
        image::Rgb(px)
    })
}

/// `synthetic.noise_image`.
pub fn noise_image(seed: u64, width: u32, height: u32) -> RgbImage {
    let data = (0..u64::from(width) * u64::from(height) * 3).map(|i| (splitmix64(seed, i) >> 56) as u8).collect();
    RgbImage::from_raw(width, height, data).expect("size")
}

/// `synthetic.reconstruction_of`.
pub fn reconstruction_of(seed: u64, gt_w: u32, gt_h: u32, width: u32, height: u32, noise: i64) -> RgbImage {
    let gt = structured_image(seed, gt_w, gt_h);
    RgbImage::from_fn(width, height, |x, y| {
        let sx = (u64::from(x) * u64::from(gt_w) / u64::from(width)) as u32;
        let sy = (u64::from(y) * u64::from(gt_h) / u64::from(height)) as u32;
        let base = gt.get_pixel(sx, sy).0;
        let px: [u8; 3] = std::array::from_fn(|c| {
            let mut v = i64::from(base[c]);
            if noise > 0 {
                let i = (u64::from(y) * u64::from(width) + u64::from(x)) * 3 + c as u64;
                v += (splitmix64(seed ^ 0x5EED, i) % (2 * noise as u64)) as i64 - noise;
            }
            v.clamp(0, 255) as u8
        });
        image::Rgb(px)
    })
}

/// Builds an image from a fixture spec object.
pub fn image_from_spec(spec: &Value) -> RgbImage {
    let u = |k: &str| spec[k].as_u64().unwrap_or_else(|| panic!("spec field {k}"));
    match spec["kind"].as_str().expect("kind") {
        "structured" => structured_image(u("seed"), u("width") as u32, u("height") as u32),
        "noise" => noise_image(u("seed"), u("width") as u32, u("height") as u32),
        "reconstruction" => reconstruction_of(
            u("seed"),
            u("gt_width") as u32,
            u("gt_height") as u32,
            u("width") as u32,
            u("height") as u32,
            u("noise") as i64,
        ),
        other => panic!("unknown image kind {other}"),
    }
}

/// FNV-1a 64 of bytes as 16 hex digits (`synthetic.bytes_fnv1a64`).
pub fn bytes_fnv(bytes: &[u8]) -> String {
    format!("{:016x}", stable_hash::fnv1a64(bytes))
}

/// Reads a safetensors fixture into a name -> tensor map.
pub fn read_tensors(name: &str) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(fixture(name)).expect("safetensors fixture").into_iter().collect()
}

pub fn tensor_f64(t: &tch::Tensor) -> Vec<f64> {
    Vec::<f64>::try_from(t.to_kind(tch::Kind::Double).flatten(0, -1)).expect("to vec")
}

/// max |a - b| / max |b|: relative error at the scale of the expected tensor.
pub fn scaled_max_error(actual: &tch::Tensor, expected: &tch::Tensor) -> f64 {
    let a = tensor_f64(actual);
    let e = tensor_f64(expected);
    assert_eq!(a.len(), e.len(), "element counts differ");
    let scale = e.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    a.iter().zip(&e).fold(0.0f64, |m, (x, y)| m.max((x - y).abs())) / scale
}
