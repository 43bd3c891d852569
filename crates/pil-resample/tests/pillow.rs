//! Byte-for-byte against Pillow 13.0.0: every resize the pipeline makes, on two photographs of
//! scikit-image cropped to 425x425 NSD-sized stimuli (`tools/pil-resample/make_fixtures.py --what
//! resample`). Exact on any CPU: Pillow's integer fixed-point arithmetic, reproduced step by step.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use image::RgbImage;
use pil_resample::{Filter, resize, resize_rgb8};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn load(name: &str) -> RgbImage {
    image::open(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}")).to_rgb8()
}

/// FNV-1a 64 of the bytes, as the generator hashes Pillow's `tobytes()`.
fn fnv1a64(bytes: &[u8]) -> String {
    let hash =
        bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3));
    format!("{hash:016x}")
}

fn cases() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("cases.json")).unwrap()).unwrap()
}

#[test]
fn every_pipeline_resize_of_the_photographs_equals_pillow() {
    let meta = cases();
    let mut outputs: HashMap<(String, String), RgbImage> = HashMap::new();
    let mut checked = Vec::new();
    for case in meta["cases"].as_array().unwrap() {
        let s = |k: &str| case[k].as_str().unwrap().to_string();
        let (photo, name, input) = (s("photo"), s("name"), s("input"));
        let source = if input == "source" {
            load(&format!("{photo}_425.png"))
        } else {
            outputs[&(photo.clone(), input.clone())].clone()
        };
        let filter = match s("filter").as_str() {
            "bilinear" => Filter::Bilinear,
            "bicubic" => Filter::Bicubic,
            other => panic!("unknown filter {other}"),
        };
        let (w, h) = (case["size"][0].as_u64().unwrap() as u32, case["size"][1].as_u64().unwrap() as u32);
        let got = resize(&source, w, h, filter).unwrap();
        assert_eq!(got.dimensions(), (w, h));
        let label =
            format!("{photo} {name}: {}x{} -> {w}x{h} {filter:?} ({})", source.width(), source.height(), s("via"));
        assert_eq!(fnv1a64(got.as_raw()), s("fnv1a64"), "{label}: bytes differ from Pillow's");
        checked.push(format!("{}x{}->{w}x{h} {filter:?}", source.width(), source.height()));
        outputs.insert((photo, name), got);
    }
    // Every size pair of the pipeline, on both photographs (512 -> 425 from two different inputs).
    for (pair, n) in [
        ("425x425->512x512 Bilinear", 2),
        ("425x425->64x64 Bilinear", 2),
        ("64x64->512x512 Bicubic", 2),
        ("512x512->425x425 Bicubic", 4),
        ("512x512->224x224 Bilinear", 2),
        ("425x425->224x224 Bilinear", 2),
        ("512x512->224x224 Bicubic", 2),
    ] {
        assert_eq!(checked.iter().filter(|c| c.as_str() == pair).count(), n, "{pair}");
    }
    assert_eq!(checked.len(), 16);
}

#[test]
fn vdvae_inputs_equal_pillows_pixels_and_the_raw_api_agrees() {
    for photo in cases()["photos"].as_array().unwrap() {
        let photo = photo.as_str().unwrap();
        let source = load(&format!("{photo}_425.png"));
        let want = load(&format!("{photo}_vdvae_64.png"));
        let got = resize(&source, 64, 64, Filter::Bilinear).unwrap();
        let differing = got.as_raw().iter().zip(want.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "{photo}: {differing} of {} values differ from Pillow", want.as_raw().len());
        let raw = resize_rgb8(source.as_raw(), 425, 425, 64, 64, Filter::Bilinear).unwrap();
        assert_eq!(&raw, want.as_raw(), "{photo}: raw-buffer API");
    }
}
