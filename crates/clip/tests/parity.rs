//! Replays the transformers fixtures under `tests/fixtures/model_*` (written by
//! `tools/clip/make_fixtures.py`): every output of the Rust towers must equal transformers' to
//! 1e-4 relative (max abs difference / max abs expected value), at whatever config the fixture has.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use clip::{ClipConfig, ClipError, ClipModel, ClipTextModel, ClipVisionModel, TextConfig, VisionConfig};
use tch::{Device, Kind, Tensor};

fn fixture_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("fixtures folder")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("model_")))
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 2, "expected the model fixtures, found {dirs:?}");
    dirs
}

fn io(dir: &Path) -> HashMap<String, Tensor> {
    Tensor::read_safetensors(dir.join("io.safetensors")).expect("io.safetensors").into_iter().collect()
}

fn assert_close(name: &str, got: &Tensor, want: &Tensor, rel: f64) {
    assert_eq!(got.size(), want.size(), "{name}: shape");
    let got = got.to_device(Device::Cpu).to_kind(Kind::Double);
    let want = want.to_kind(Kind::Double);
    let scale = want.abs().max().double_value(&[]);
    let err = (&got - &want).abs().max().double_value(&[]);
    assert!(scale > 1e-3, "{name}: expected values are degenerate (max {scale})");
    println!("{name}: relative error {:.3e} (tolerance {rel:e})", err / scale);
    assert!(err <= rel * scale, "{name}: max abs diff {err:e} > {rel:e} * {scale:e}");
}

fn check_vision(dir: &Path, model: &ClipVisionModel, t: &HashMap<String, Tensor>) {
    let out = model.forward(&t["pixel_values"]).unwrap();
    let tag = dir.display();
    assert_close(
        &format!("{tag} vision_last_hidden_state"),
        &out.last_hidden_state,
        &t["vision_last_hidden_state"],
        1e-4,
    );
    assert_close(&format!("{tag} vision_pooled"), &out.pooled, &t["vision_pooled"], 1e-4);
    assert_close(&format!("{tag} image_embeds"), &out.image_embeds, &t["image_embeds"], 1e-4);
    let vd = model.vd_embeddings(&t["pixel_values"]).unwrap();
    assert_close(&format!("{tag} vd_vision"), &vd, &t["vd_vision"], 1e-4);
}

fn check_text(dir: &Path, model: &ClipTextModel, t: &HashMap<String, Tensor>) {
    let ids = &t["input_ids"];
    let out = model.forward(ids).unwrap();
    let tag = dir.display();
    assert_close(&format!("{tag} text_last_hidden_state"), &out.last_hidden_state, &t["text_last_hidden_state"], 1e-4);
    assert_close(&format!("{tag} text_pooled"), &out.pooled, &t["text_pooled"], 1e-4);
    assert_close(&format!("{tag} text_embeds"), &out.text_embeds, &t["text_embeds"], 1e-4);
    assert_close(&format!("{tag} vd_text"), &model.vd_embeddings(ids).unwrap(), &t["vd_text"], 1e-4);
    let groups: Vec<usize> = Vec::<i64>::try_from(&t["caption_groups"]).unwrap().iter().map(|&g| g as usize).collect();
    let mean = model.vd_embeddings_mean(ids, &groups).unwrap();
    assert_close(&format!("{tag} vd_text_mean"), &mean, &t["vd_text_mean"], 1e-4);
}

#[test]
fn clip_model_checkpoint_replays_transformers_outputs() {
    for dir in fixture_dirs() {
        let t = io(&dir);
        let model = ClipModel::from_pretrained(&dir, Device::Cpu, Kind::Float).unwrap();
        check_vision(&dir, &model.vision, &t);
        check_text(&dir, &model.text, &t);
        assert!((model.logit_scale - 2.6592).abs() < 1e-6, "logit_scale {}", model.logit_scale);
    }
}

#[test]
fn pytorch_bin_with_legacy_position_ids_loads_the_same_weights() {
    for dir in fixture_dirs() {
        let t = io(&dir);
        let config = ClipConfig::from_file(dir.join("config.json")).unwrap();
        let ckpt = clip::weights::Checkpoint::open(dir.join("pytorch_model.bin")).unwrap();
        assert!(ckpt.shapes().contains_key("vision_model.embeddings.position_ids"));
        let vision = ClipVisionModel::from_checkpoint(&config.vision, &ckpt, Device::Cpu, Kind::Float).unwrap();
        let text = ClipTextModel::from_checkpoint(&config.text, &ckpt, Device::Cpu, Kind::Float).unwrap();
        check_vision(&dir, &vision, &t);
        check_text(&dir, &text, &t);
    }
}

#[test]
fn versatile_diffusion_encoder_folders_load_and_replay() {
    for dir in fixture_dirs() {
        let t = io(&dir);
        let vision = ClipVisionModel::from_pretrained(dir.join("image_encoder"), Device::Cpu, Kind::Float).unwrap();
        let text = ClipTextModel::from_pretrained(dir.join("text_encoder"), Device::Cpu, Kind::Float).unwrap();
        assert_eq!(vision.config(), &VisionConfig::from_file(dir.join("config.json")).unwrap());
        assert_eq!(text.config(), &TextConfig::from_file(dir.join("config.json")).unwrap());
        check_vision(&dir, &vision, &t);
        check_text(&dir, &text, &t);
    }
}

#[test]
fn half_precision_weights_track_f32_outputs() {
    // bf16 on CPU: the caller picks the precision; results stay near the f32 reference.
    let dir = &fixture_dirs()[0];
    let t = io(dir);
    let vision = ClipVisionModel::from_pretrained(dir.join("image_encoder"), Device::Cpu, Kind::BFloat16).unwrap();
    let got = vision.vd_embeddings(&t["pixel_values"]).unwrap();
    assert_eq!(got.kind(), Kind::BFloat16);
    assert_close("bf16 vd_vision", &got, &t["vd_vision"], 5e-2);
}

#[test]
fn checkpoint_key_problems_are_reported_by_name() {
    let dir = &fixture_dirs()[0];
    let tmp = tempfile::tempdir().unwrap();
    let mut tensors: Vec<(String, Tensor)> =
        Tensor::read_safetensors(dir.join("image_encoder/model.safetensors")).unwrap();
    tensors.retain(|(k, _)| k != "vision_model.post_layernorm.bias");
    for (k, v) in tensors.iter_mut() {
        if k == "visual_projection.weight" {
            *v = Tensor::zeros([3, 5], (Kind::Float, Device::Cpu));
        }
    }
    tensors.push(("vision_model.extra_head.weight".into(), Tensor::zeros([2], (Kind::Float, Device::Cpu))));
    let path = tmp.path().join("model.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    std::fs::copy(dir.join("image_encoder/config.json"), tmp.path().join("config.json")).unwrap();
    match ClipVisionModel::from_pretrained(tmp.path(), Device::Cpu, Kind::Float) {
        Err(ClipError::Checkpoint { missing, unexpected, mismatched, .. }) => {
            assert_eq!(missing, vec!["vision_model.post_layernorm.bias".to_string()]);
            assert_eq!(unexpected, vec!["vision_model.extra_head.weight".to_string()]);
            assert_eq!(mismatched.len(), 1);
            assert!(mismatched[0].starts_with("visual_projection.weight: checkpoint [3, 5]"), "{mismatched:?}");
        }
        other => panic!("expected a key report, got {other:?}"),
    }
    // A vision checkpoint has no text tower: the text model must name what is missing.
    match ClipTextModel::from_checkpoint(
        &TextConfig::from_file(dir.join("config.json")).unwrap(),
        &clip::weights::Checkpoint::open(dir.join("image_encoder/model.safetensors")).unwrap(),
        Device::Cpu,
        Kind::Float,
    ) {
        Err(ClipError::Checkpoint { missing, .. }) => {
            assert!(missing.contains(&"text_model.final_layer_norm.weight".to_string()), "{missing:?}")
        }
        other => panic!("expected missing text keys, got {other:?}"),
    }
}

#[test]
fn bad_inputs_are_errors_not_panics() {
    let dir = &fixture_dirs()[0];
    let model = ClipModel::from_pretrained(dir, Device::Cpu, Kind::Float).unwrap();
    let s = model.vision.config().image_size;
    assert!(model.vision.forward(&Tensor::zeros([1, 3, s + 1, s], (Kind::Float, Device::Cpu))).is_err());
    assert!(model.vision.forward(&Tensor::zeros([1, 3, s, s], (Kind::Int64, Device::Cpu))).is_err());
    let vocab = model.text.config().vocab_size;
    assert!(model.text.forward(&Tensor::from_slice(&[0i64, vocab]).view([1, 2])).is_err());
    assert!(model.text.forward(&Tensor::from_slice(&[-1i64, 1]).view([1, 2])).is_err());
    let too_long = model.text.config().max_position_embeddings + 1;
    assert!(model.text.forward(&Tensor::zeros([1, too_long], (Kind::Int64, Device::Cpu))).is_err());
    let ids = Tensor::zeros([3, 4], (Kind::Int64, Device::Cpu));
    assert!(model.text.vd_embeddings_mean(&ids, &[2, 2]).is_err());
    assert!(model.text.vd_embeddings_mean(&ids, &[3, 0]).is_err());
}

#[test]
fn half_precision_checkpoints_are_cast_on_load() {
    // A checkpoint stored in f16 (as VD's fp16 exports) loads into f32 weights; outputs stay
    // within f16 rounding of the f32 reference.
    let dir = &fixture_dirs()[0];
    let t = io(dir);
    let tmp = tempfile::tempdir().unwrap();
    let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(dir.join("image_encoder/model.safetensors"))
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_kind(Kind::Half)))
        .collect();
    Tensor::write_safetensors(&tensors, tmp.path().join("model.safetensors")).unwrap();
    std::fs::copy(dir.join("image_encoder/config.json"), tmp.path().join("config.json")).unwrap();
    let vision = ClipVisionModel::from_pretrained(tmp.path(), Device::Cpu, Kind::Float).unwrap();
    for (_, v) in vision.var_store().variables() {
        assert_eq!(v.kind(), Kind::Float);
    }
    let got = vision.vd_embeddings(&t["pixel_values"]).unwrap();
    assert_close("f16 checkpoint vd_vision", &got, &t["vd_vision"], 1e-2);
}

#[test]
fn folders_without_a_checkpoint_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = &fixture_dirs()[0];
    std::fs::copy(dir.join("config.json"), tmp.path().join("config.json")).unwrap();
    let err = ClipModel::from_pretrained(tmp.path(), Device::Cpu, Kind::Float).unwrap_err().to_string();
    assert!(err.contains("model.safetensors") && err.contains(&tmp.path().display().to_string()), "{err}");
    let err = ClipModel::from_pretrained(tmp.path().join("absent"), Device::Cpu, Kind::Float).unwrap_err().to_string();
    assert!(err.contains("config.json"), "{err}");
}
