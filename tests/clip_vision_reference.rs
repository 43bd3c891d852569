//! The CLIP-Vision adapter against a Python replay of the reference's feature extraction
//! (`tools/pil-resample/make_fixtures.py --what clip-vision`): 425x425 photographs as NSD stimuli ->
//! PIL -> torchvision `resize(pil, 512)` (Pillow BILINEAR) -> `to_tensor` -> `* 2 - 1` -> Versatile
//! Diffusion's `clip_encode_vision` (`(x + 1) / 2`, transformers 4.19's `* 255` truncation to
//! uint8, CLIP's shortest-side-224 bicubic resize, centre crop and normalisation) -> a tiny
//! random-weight CLIP vision tower (the same safetensors on both sides) -> VD's normalised tokens.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use brain_diffuser::Encoder;
use brain_diffuser::stages::clip::ClipVisionEncoder;
use clip::ClipVisionModel;
use tch::{Device, Kind, Tensor};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn clip_vision_features_equal_the_reference_extraction() {
    let dir = root().join("tests/fixtures/clip_vision");
    let meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let want: HashMap<String, Tensor> =
        Tensor::read_safetensors(dir.join("expected.safetensors")).unwrap().into_iter().collect();
    let want = &want["vd_vision"];
    let stimuli: Vec<image::RgbImage> = meta["stimuli"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| image::open(root().join(p.as_str().unwrap())).unwrap().to_rgb8())
        .collect();
    assert!(stimuli.len() >= 2 && stimuli.iter().all(|s| s.dimensions() == (425, 425)));
    let resize_to = meta["resize_to"].as_u64().unwrap() as u32;
    assert_eq!(resize_to, 512);

    // Batch size 1 as the reference script, and 2 (batching must not change the features).
    for batch_size in [1, 2] {
        let model = ClipVisionModel::from_pretrained(dir.join("image_encoder"), Device::Cpu, Kind::Float).unwrap();
        assert_eq!(model.config().image_size, 224); // ViT-L/14's input side: CLIP resizes 512 -> 224
        let encoder = ClipVisionEncoder::new(model, "tiny", resize_to, batch_size).unwrap();
        let got = encoder.encode(&stimuli).unwrap();
        let shape: Vec<usize> = want.size().iter().map(|&d| d as usize).collect();
        assert_eq!(encoder.feature_shape(), &shape[1..]);
        assert_eq!(got.dim(), (shape[0], shape[1] * shape[2]));
        let want = Vec::<f32>::try_from(&want.view([-1])).unwrap();
        let scale = want.iter().fold(0f32, |m, v| m.max(v.abs()));
        assert!(scale > 0.1, "degenerate expected features");
        let err = got.iter().zip(&want).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        println!("batch {batch_size}: max abs diff {err:.3e} (features up to {scale:.3})");
        assert!(err <= 1e-4, "batch {batch_size}: max abs diff {err:e} from the reference extraction");
    }
}
