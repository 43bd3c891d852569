//! Checkpoint dtypes: weights stored as integers are refused by name (safetensors whose header
//! relabels F32 tensors, honest I64 tensors, a zip `torch.save` file written by torch with int32
//! and int64 weights); f16 and bf16 checkpoints load, cast to f32, and encode like the f32 one.

mod common;

use std::path::Path;

use common::{TINY_WEIGHTS, fixture};
use image::RgbImage;
use tch::{Device, Kind, Tensor};
use vdvae::parity::Fixture;
use vdvae::{EncodeOptions, PosteriorDraw, Vdvae, VdvaeConfig, VdvaeError, WeightInit};

fn tiny_config() -> VdvaeConfig {
    Fixture::read(&fixture(TINY_WEIGHTS)).unwrap().config
}

/// Copies a safetensors file with the header's `dtype` of the tensors `relabel` names replaced
/// (same data bytes).
fn relabel_safetensors(src: &Path, dst: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
    weight_files::relabel_dtypes(src, dst, relabel).unwrap();
}

fn mismatch(err: VdvaeError) -> vdvae::KeyMismatch {
    match err {
        VdvaeError::CheckpointMismatch { mismatch, .. } => mismatch,
        other => panic!("expected a key report, got {other}"),
    }
}

#[test]
fn a_float_tensor_relabelled_i32_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relabelled.safetensors");
    relabel_safetensors(&fixture(TINY_WEIGHTS), &path, |k| (k == "encoder.in_conv.weight").then_some("I32"));
    let err = Vdvae::load(&path, &tiny_config(), Device::Cpu).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("relabelled.safetensors")
            && text.contains("encoder.in_conv.weight (found I32, expected F32, F16, BF16, F64)"),
        "{text}"
    );
    let m = mismatch(err);
    assert_eq!(m.wrong_dtype, vec![("encoder.in_conv.weight".to_string(), "I32".to_string())]);
    assert!(m.missing.is_empty() && m.unexpected.is_empty() && m.misshaped.is_empty(), "{m}");
}

#[test]
fn every_tensor_relabelled_i32_is_refused_and_nothing_is_copied() {
    // The case of the issue: all F32 tensors relabelled I32 loaded and produced NaN features.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("all-i32.safetensors");
    relabel_safetensors(&fixture(TINY_WEIGHTS), &path, |k| (k != "__metadata__").then_some("I32"));
    let mut model = Vdvae::new(&tiny_config(), Device::Cpu, WeightInit::Zeros).unwrap();
    let m = mismatch(model.load_weights(&path).unwrap_err());
    assert_eq!(m.wrong_dtype.len(), 358);
    assert!(m.wrong_dtype.iter().all(|(_, d)| d == "I32"));
    assert!(m.to_string().contains("358 with a non-floating dtype"), "{m}");
    let fresh = Vdvae::new(&tiny_config(), Device::Cpu, WeightInit::Zeros).unwrap().var_store().variables();
    for (name, t) in model.var_store().variables() {
        assert!(t.equal(&fresh[&name]), "{name} was changed by a refused checkpoint");
    }
}

#[test]
fn an_int64_tensor_is_refused_by_name() {
    let mut tensors = Tensor::read_safetensors(fixture(TINY_WEIGHTS)).unwrap();
    for (k, t) in tensors.iter_mut() {
        if k == "decoder.gain" {
            *t = t.to_kind(Kind::Int64);
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("int64.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();
    let m = mismatch(Vdvae::load(&path, &tiny_config(), Device::Cpu).unwrap_err());
    assert_eq!(m.wrong_dtype, vec![("decoder.gain".to_string(), "I64".to_string())]);
}

#[test]
fn integer_weights_in_a_torch_save_zip_file_are_refused_by_name() {
    // Written by torch (tools/checkpoint-dtypes/make_fixtures.py): `encoder.in_conv.weight` viewed
    // as int32 (same bytes), `decoder.gain` as int64, `decoder.bias` float; all under `module.`.
    let mut model = Vdvae::new(&tiny_config(), Device::Cpu, WeightInit::Zeros).unwrap();
    let err = model.load_weights(&fixture("int-weights-module.th")).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("int-weights-module.th"), "{text}");
    let m = mismatch(err);
    assert_eq!(
        m.wrong_dtype,
        vec![
            ("decoder.gain".to_string(), "I64".to_string()),
            ("encoder.in_conv.weight".to_string(), "I32".to_string())
        ]
    );
    assert!(!m.missing.contains(&"decoder.bias".to_string()) && m.missing.len() == 355, "{m}");
}

fn images() -> Vec<RgbImage> {
    (0..2u8).map(|k| RgbImage::from_fn(16, 16, |x, y| image::Rgb([x as u8 * 15, y as u8 * 13, 60 + k * 90]))).collect()
}

#[test]
fn f16_and_bf16_checkpoints_load_cast_and_encode_like_f32() {
    let config = tiny_config();
    let reference = Vdvae::load(&fixture(TINY_WEIGHTS), &config, Device::Cpu).unwrap();
    let options = EncodeOptions { n_blocks: 6, posterior: PosteriorDraw::Mean, seed: 0, batch_size: 2 };
    let want = reference.encode(&images(), &options).unwrap();
    let scale = want.values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let dir = tempfile::tempdir().unwrap();
    // Weight rounding (2^-11 relative for f16, 2^-8 for bf16) spreads through the encoder and the
    // decoder blocks' posteriors; the bounds are about 4x the errors measured on this fixture.
    for (kind, tolerance) in [(Kind::Half, 1e-3f32), (Kind::BFloat16, 1e-2)] {
        let tensors: Vec<(String, Tensor)> = Tensor::read_safetensors(fixture(TINY_WEIGHTS))
            .unwrap()
            .into_iter()
            .map(|(k, t)| (k, t.to_kind(kind)))
            .collect();
        let path = dir.path().join(format!("{kind:?}.safetensors"));
        Tensor::write_safetensors(&tensors, &path).unwrap();
        let model = Vdvae::load(&path, &config, Device::Cpu).unwrap();
        assert_eq!(model.kind(), Kind::Float);
        // The parameters are the stored values, exactly (every f16/bf16 value is an f32 value).
        let vars = model.var_store().variables();
        for (name, t) in &tensors {
            assert_eq!(vars[name].kind(), Kind::Float, "{name}");
            assert!(vars[name].equal(&t.to_kind(Kind::Float)), "{kind:?} {name}");
        }
        let got = model.encode(&images(), &options).unwrap();
        let worst = got.values.iter().zip(&want.values).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= tolerance * scale, "{kind:?}: max error {worst} vs scale {scale}");
        assert!(worst > 0.0, "{kind:?}: rounded weights must change the latents somewhat");
    }
}
