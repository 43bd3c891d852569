//! Preprocessing against Pillow and transformers' `CLIPImageProcessorPil` (fixture written by
//! `tools/clip/make_fixtures.py --what preprocess`).

use std::path::{Path, PathBuf};

use clip::ClipImageProcessor;
use tch::{Device, Tensor};

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn names() -> (Vec<String>, String) {
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir().join("images.json")).unwrap()).unwrap();
    let names = v["images"].as_array().unwrap().iter().map(|n| n.as_str().unwrap().to_string()).collect();
    (names, v["pixel_values_of"].as_str().unwrap().to_string())
}

fn load(name: &str) -> image::RgbImage {
    image::open(dir().join(format!("{name}.png"))).unwrap().to_rgb8()
}

#[test]
fn shortest_side_resize_is_pixel_identical_to_pillow_bicubic() {
    let (names, _) = names();
    assert!(names.len() >= 6);
    let p = ClipImageProcessor::default();
    for name in &names {
        let img = load(name);
        let want = load(&format!("{name}_resized"));
        let got = p.resize(&img).unwrap();
        assert_eq!(got.dimensions(), want.dimensions(), "{name}: size");
        let diff = got.as_raw().iter().zip(want.as_raw()).filter(|(a, b)| a != b).count();
        // Exact on any CPU: Pillow's fixed-point integer arithmetic, reproduced step by step.
        assert_eq!(diff, 0, "{name}: {diff} channel values differ from Pillow");
    }
}

#[test]
fn pixel_values_match_the_transformers_processor() {
    let (_, name) = names();
    let want: Tensor =
        Tensor::read_safetensors(dir().join(format!("{name}_pixel_values.safetensors"))).unwrap().remove(0).1;
    let got = ClipImageProcessor::default().batch(&[load(&name)], Device::Cpu).unwrap();
    assert_eq!(got.size(), want.size());
    let err = (&got - &want).abs().max().double_value(&[]);
    assert!(err < 1e-6, "max abs diff {err}");
}

#[test]
fn centre_crop_and_normalisation_follow_the_formula() {
    // Closed form: a constant image stays constant; crop offsets are (side - crop) / 2 rounded down.
    let p = ClipImageProcessor::default();
    let grey = image::RgbImage::from_pixel(300, 224, image::Rgb([127, 127, 127]));
    let v = p.pixel_values(&grey).unwrap();
    for c in 0..3 {
        let want = (127.0 / 255.0 - clip::preprocess::CLIP_MEAN[c]) / clip::preprocess::CLIP_STD[c];
        assert!(v[c * 224 * 224..(c + 1) * 224 * 224].iter().all(|&x| (x - want).abs() < 1e-6));
    }
    let mut ramp = image::RgbImage::new(227, 224);
    for (x, _, px) in ramp.enumerate_pixels_mut() {
        *px = image::Rgb([x as u8, 0, 0]);
    }
    let crop = p.center_crop(&ramp).unwrap();
    assert_eq!(crop.get_pixel(0, 0)[0], 1); // (227 - 224) / 2 = 1
    assert!(p.center_crop(&image::RgbImage::new(100, 300)).is_err());
    assert!(p.resize(&image::RgbImage::new(0, 5)).is_err());
}

#[test]
fn float_images_are_truncated_like_the_reference_feature_extractor() {
    // (x * 255) cast to u8: 0.5 -> 127 (not 128), 1.0 -> 255, 0.999 -> 254, out of range saturates
    let data = [0.5f32, 1.0, 0.999, 0.0, -0.2, 1.7];
    let img = clip::preprocess::rgb_from_unit_floats_truncating(&data, 2, 1).unwrap();
    assert_eq!(img.as_raw(), &vec![127u8, 255, 254, 0, 0, 255]);
    assert!(clip::preprocess::rgb_from_unit_floats_truncating(&data, 3, 1).is_err());
}
