//! Checkpoint dtypes: weights stored as integers are refused by name (a safetensors header that
//! relabels an F32 tensor, a zip `torch.save` file written by torch with int32 and int64 weights);
//! integer `position_ids` buffers are still skipped; f16 and bf16 checkpoints load and run like f32.

use std::path::{Path, PathBuf};

use clip::weights::Checkpoint;
use clip::{ClipConfig, ClipError, ClipModel, ClipTextModel, ClipVisionModel, VisionConfig};
use tch::{Device, Kind, Tensor};

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// Copies a safetensors file with the header's `dtype` of the tensors `relabel` names replaced
/// (same data bytes).
fn relabel_safetensors(src: &Path, dst: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
    weight_files::relabel_dtypes(src, dst, relabel).unwrap();
}

/// A copy of the tiny vision tower folder whose `model.safetensors` is made by `write`.
fn vision_folder(write: impl FnOnce(&Path, &Path)) -> tempfile::TempDir {
    let src = fixtures().join("model_tiny/image_encoder");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    write(&src.join("model.safetensors"), &dir.path().join("model.safetensors"));
    dir
}

fn wrong_dtypes(result: Result<impl std::fmt::Debug, ClipError>) -> Vec<(String, String)> {
    match result {
        Err(ClipError::Checkpoint { wrong_dtype, .. }) => wrong_dtype,
        other => panic!("expected a key report, got {other:?}"),
    }
}

#[test]
fn a_float_tensor_relabelled_i32_is_refused_by_name() {
    let key = "vision_model.embeddings.patch_embedding.weight";
    let dir = vision_folder(|src, dst| relabel_safetensors(src, dst, |k| (k == key).then_some("I32")));
    let err = ClipVisionModel::from_pretrained(dir.path(), Device::Cpu, Kind::Float).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("model.safetensors")
            && text.contains(&format!("not floating point: {key} (found I32, expected F32, F16, BF16, F64)"))
            && !text.contains("missing"),
        "{text}"
    );
    assert_eq!(wrong_dtypes(Err::<(), _>(err)), vec![(key.to_string(), "I32".to_string())]);
}

#[test]
fn every_tensor_relabelled_i32_is_refused() {
    let dir = vision_folder(|src, dst| relabel_safetensors(src, dst, |k| (k != "__metadata__").then_some("I32")));
    let wrong = wrong_dtypes(ClipVisionModel::from_pretrained(dir.path(), Device::Cpu, Kind::Float));
    let config = VisionConfig::from_file(dir.path().join("config.json")).unwrap();
    let parameters = ClipVisionModel::new(&config, Device::Cpu, Kind::Float).unwrap().var_store().variables().len();
    assert_eq!(wrong.len(), parameters, "every parameter is named");
}

#[test]
fn a_relabelled_logit_scale_is_refused() {
    let src = fixtures().join("model_tiny");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    relabel_safetensors(&src.join("model.safetensors"), &dir.path().join("model.safetensors"), |k| {
        (k == "logit_scale").then_some("I32")
    });
    let wrong = wrong_dtypes(ClipModel::from_pretrained(dir.path(), Device::Cpu, Kind::Float));
    assert_eq!(wrong, vec![("logit_scale".to_string(), "I32".to_string())]);
}

#[test]
fn integer_weights_in_a_torch_save_zip_file_are_refused_by_name() {
    // Written by torch (tools/checkpoint-dtypes/make_fixtures.py): the patch embedding viewed as
    // int32 (same bytes), the projection as int64, the class embedding float, and the int64
    // `position_ids` buffer, which the loader skips.
    let checkpoint = Checkpoint::open(fixtures().join("int_weights.bin")).unwrap();
    assert_eq!(checkpoint.dtypes()["vision_model.embeddings.position_ids"], "I64");
    let config = VisionConfig::from_file(fixtures().join("model_tiny/image_encoder/config.json")).unwrap();
    let result = ClipVisionModel::from_checkpoint(&config, &checkpoint, Device::Cpu, Kind::Float);
    let text = format!("{:?}", result.as_ref().err());
    assert!(text.contains("int_weights.bin"), "{text}");
    assert_eq!(
        wrong_dtypes(result),
        vec![
            ("vision_model.embeddings.patch_embedding.weight".to_string(), "I32".to_string()),
            ("visual_projection.weight".to_string(), "I64".to_string()),
        ]
    );
}

#[test]
fn the_int64_position_ids_of_a_real_export_are_still_skipped() {
    // transformers' older exports carry `position_ids` as int64 buffers; the zip fixture has them.
    let dir = fixtures().join("model_tiny");
    let checkpoint = Checkpoint::open(dir.join("pytorch_model.bin")).unwrap();
    assert_eq!(checkpoint.dtypes()["text_model.embeddings.position_ids"], "I64");
    assert_eq!(checkpoint.dtypes()["vision_model.embeddings.position_ids"], "I64");
    let config = ClipConfig::from_file(dir.join("config.json")).unwrap();
    ClipVisionModel::from_checkpoint(&config.vision, &checkpoint, Device::Cpu, Kind::Float).unwrap();
    ClipTextModel::from_checkpoint(&config.text, &checkpoint, Device::Cpu, Kind::Float).unwrap();
}

#[test]
fn f16_and_bf16_checkpoints_load_cast_and_run_like_f32() {
    let src = fixtures().join("model_tiny/image_encoder");
    let reference = ClipVisionModel::from_pretrained(&src, Device::Cpu, Kind::Float).unwrap();
    let size = reference.config().image_size;
    let pixels =
        (Tensor::arange(2 * 3 * size * size, (Kind::Float, Device::Cpu)) * 0.37).sin().view([2, 3, size, size]);
    let want = reference.forward(&pixels).unwrap().image_embeds;
    let scale = want.abs().max().double_value(&[]);
    // Weight rounding (2^-11 relative for f16, 2^-8 for bf16) through the tiny tower; the bounds
    // are about 4x the errors measured on this fixture.
    for (kind, tolerance) in [(Kind::Half, 2e-3), (Kind::BFloat16, 1.2e-2)] {
        let dir = vision_folder(|src, dst| {
            let tensors: Vec<(String, Tensor)> =
                Tensor::read_safetensors(src).unwrap().into_iter().map(|(k, t)| (k, t.to_kind(kind))).collect();
            Tensor::write_safetensors(&tensors, dst).unwrap();
        });
        let stored = Checkpoint::open(dir.path().join("model.safetensors")).unwrap();
        let name = if kind == Kind::Half { "F16" } else { "BF16" };
        assert!(stored.dtypes().values().all(|d| d == name), "{kind:?}");
        let model = ClipVisionModel::from_pretrained(dir.path(), Device::Cpu, Kind::Float).unwrap();
        let vars = model.var_store().variables();
        for (k, t) in reference.var_store().variables() {
            assert_eq!(vars[&k].kind(), Kind::Float, "{k}");
            assert!(vars[&k].equal(&t.to_kind(kind).to_kind(Kind::Float)), "{kind:?} {k}");
        }
        let got = model.forward(&pixels).unwrap().image_embeds;
        let err = (&got - &want).abs().max().double_value(&[]);
        assert!(err <= tolerance * scale && err > 0.0, "{kind:?}: max error {err} vs scale {scale}");
    }
}
