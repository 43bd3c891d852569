//! Pillow-exact resizing, against images resized by Pillow itself (through torchvision's resize,
//! as the reference preprocessing calls it) in tools/vdvae/make_fixtures.py. Exact comparison on
//! any CPU: like Pillow, the resampler works in integer fixed point (22-bit coefficients).

mod common;

use common::fixture;
use image::RgbImage;
use pil_resample::{Filter, resize};
use tch::Tensor;
use vdvae::upscale;

fn to_image(t: &Tensor) -> RgbImage {
    let s = t.size();
    let bytes = Vec::<u8>::try_from(t.reshape([-1])).unwrap();
    RgbImage::from_raw(s[1] as u32, s[0] as u32, bytes).unwrap()
}

fn fixtures() -> std::collections::HashMap<String, Tensor> {
    Tensor::read_safetensors(fixture("pillow-resample.safetensors")).unwrap().into_iter().collect()
}

#[test]
fn bilinear_downscale_equals_pillow_for_every_size() {
    let t = fixtures();
    let mut checked = 0;
    for i in 0.. {
        let Some(input) = t.get(&format!("resize.{i}.input")) else { break };
        let expected = to_image(&t[&format!("resize.{i}.output")]);
        let got = resize(&to_image(input), 64, 64, Filter::Bilinear).unwrap();
        let differing = got.as_raw().iter().zip(expected.as_raw()).filter(|(a, b)| a != b).count();
        assert_eq!(differing, 0, "input {:?}: {differing} values differ from Pillow", input.size());
        checked += 1;
    }
    assert_eq!(checked, 5);
}

#[test]
fn bicubic_upscale_to_512_equals_pillow() {
    let t = fixtures();
    let got = upscale(&to_image(&t["upscale.input"]), 512).unwrap();
    let expected = to_image(&t["upscale.output"]);
    assert_eq!(got.dimensions(), (512, 512));
    let differing = got.as_raw().iter().zip(expected.as_raw()).filter(|(a, b)| a != b).count();
    assert_eq!(differing, 0);
}
