//! The plain-data API end to end (u8 images and caption strings in, `f32` embeddings out) against
//! the reference flow run by `tools/clip/make_fixtures.py --what e2e`: `CLIPImageProcessorPil` +
//! CLIPModel towers + Versatile Diffusion's normalisation, `CLIPTokenizer` + the caption mean of
//! brain-diffuser's `cliptext_extract_features.py`, and the unconditional inputs (grey 127 image,
//! empty caption).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip::{ClipModel, ClipTokenizer, Embeddings, encode_captions_vd, encode_images_vd};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn assert_close(name: &str, got: &Embeddings, want: &Tensor) {
    let want_shape: Vec<usize> = want.size().iter().map(|&d| d as usize).collect();
    assert_eq!(got.shape, want_shape, "{name}: shape");
    let want = Vec::<f32>::try_from(&want.to_kind(Kind::Float).view([-1])).unwrap();
    let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    let err = got.data.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(scale > 1e-3, "{name}: degenerate expected values");
    println!("{name}: relative error {:.3e} (tolerance 1e-4)", err / scale);
    assert!(err <= 1e-4 * scale, "{name}: max abs diff {err:e} vs scale {scale:e}");
}

#[test]
fn images_and_captions_encode_like_the_reference_flow() {
    let dir = fixtures().join("e2e_small");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("e2e.json")).unwrap()).unwrap();
    let want: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("e2e.safetensors")).unwrap().into_iter().collect();
    let model = ClipModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap();

    let side = model.vision.config().image_size as u32;
    let mut images: Vec<image::RgbImage> = meta["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            image::open(fixtures().join("preprocess").join(format!("{}.png", n.as_str().unwrap()))).unwrap().to_rgb8()
        })
        .collect();
    assert_eq!(meta["grey_127_image_last"], serde_json::Value::Bool(true));
    images.push(image::RgbImage::from_pixel(side, side, image::Rgb([127, 127, 127])));
    let vd_vision = encode_images_vd(&model.vision, &images, 3).unwrap();
    assert_close("vd_vision", &vd_vision, &want["vd_vision"]);

    let tokenizer = ClipTokenizer::from_dir(fixtures().join("tokenizer/small_vocab")).unwrap();
    let captions: Vec<Vec<&str>> = meta["captions_per_image"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect())
        .collect();
    let flat: Vec<&str> = captions.iter().flatten().copied().collect();
    let ids = tokenizer.encode_tensor(&flat).unwrap();
    assert!(ids.equal(&want["input_ids"]), "token ids differ from CLIPTokenizer"); // integers
    let vd_text = encode_captions_vd(&model.text, &tokenizer, &captions).unwrap();
    assert_close("vd_text_mean", &vd_text, &want["vd_text_mean"]);

    assert!(encode_images_vd(&model.vision, &[], 3).is_err());
    assert!(encode_captions_vd(&model.text, &tokenizer, &[]).is_err());
}
