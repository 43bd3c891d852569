//! Checkpoint dtypes: weights stored as integers are refused by name, with every other problem of
//! the file (a merged safetensors file whose header relabels F32 tensors, an honest I64 tensor, a
//! zip `torch.save` file written by torch with int32 and int64 weights), and never converted into
//! a merged file; f16 and bf16 merged files load, cast to f32, and run like the f32 one.

mod common;

use std::path::Path;

use common::{assert_close, cases, tiny_folder};
use tch::{Device, Kind, Tensor};
use versatile_diffusion::checkpoint::{load_state_dict, rename_legacy_vae_keys};
use versatile_diffusion::{
    AutoencoderKl, DiffusionError, DualMix, KeyProblem, UNetRun, VaeConfig, VdWeights, VersatileDiffusion, WeightSource,
};

/// Copies a safetensors file with the header's `dtype` of the tensors `relabel` names replaced
/// (same data bytes).
fn relabel_safetensors(src: &Path, dst: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
    weight_files::relabel_dtypes(src, dst, relabel).unwrap();
}

fn key_problems(result: Result<VersatileDiffusion, DiffusionError>) -> Vec<KeyProblem> {
    match result {
        Err(DiffusionError::Keys { problems, .. }) => problems,
        Err(other) => panic!("expected a key error, got {other}"),
        Ok(_) => panic!("expected a key error, the model loaded"),
    }
}

fn dtype(name: &str, found: &str) -> KeyProblem {
    KeyProblem::Dtype { name: name.into(), found: found.into() }
}

#[test]
fn float_tensors_relabelled_i32_in_a_merged_file_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("vd.safetensors");
    VdWeights::from_diffusers_folder(&tiny_folder()).unwrap().write_merged(&merged, Kind::Float).unwrap();
    let unet_key = "conv_in.weight";
    let vae_key = "encoder.conv_in.weight";
    let relabelled = dir.path().join("relabelled.safetensors");
    relabel_safetensors(&merged, &relabelled, |k| {
        [format!("unet.{unet_key}"), format!("vae.{vae_key}")].contains(&k.to_owned()).then_some("I32")
    });
    let err = match VersatileDiffusion::load(&relabelled, Device::Cpu, Kind::Float, Kind::Float) {
        Err(err) => err,
        Ok(_) => panic!("a relabelled file loaded"),
    };
    let text = err.to_string();
    assert!(
        text.contains("relabelled.safetensors (U-Net)")
            && text.contains(&format!("`{unet_key}` has dtype I32, expected one of F32, F16, BF16, F64")),
        "{text}"
    );
    assert_eq!(key_problems(Err(err)), vec![dtype(unet_key, "I32")], "the U-Net is built first");

    // With the U-Net intact, the autoencoder's relabelled tensor is named.
    let vae_only = dir.path().join("vae-only.safetensors");
    relabel_safetensors(&merged, &vae_only, |k| (k == format!("vae.{vae_key}")).then_some("I32"));
    let problems = key_problems(VersatileDiffusion::load(&vae_only, Device::Cpu, Kind::Float, Kind::Float));
    assert_eq!(problems, vec![dtype(vae_key, "I32")]);
}

#[test]
fn an_int64_tensor_is_refused_and_never_written_into_a_merged_file() {
    let mut weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let key = "decoder.conv_out.bias";
    let long = weights.vae[key].to_kind(Kind::Int64);
    weights.vae.insert(key.into(), long);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vd.safetensors");
    match weights.write_merged(&path, Kind::Half) {
        Err(DiffusionError::Keys { problems, .. }) => assert_eq!(problems, vec![dtype(&format!("vae.{key}"), "I64")]),
        other => panic!("expected the int64 tensor to be refused, got {other:?}"),
    }
    assert!(!path.exists(), "nothing is written");
    let problems = key_problems(VersatileDiffusion::from_weights(weights, Device::Cpu, Kind::Float, Kind::Float));
    assert_eq!(problems, vec![dtype(key, "I64")]);
}

#[test]
fn integer_weights_in_a_torch_save_zip_file_are_refused_by_name() {
    // Written by torch (tools/checkpoint-dtypes/make_fixtures.py): `encoder.conv_in.weight` viewed
    // as int32 (same bytes), `decoder.conv_out.bias` as int64, `encoder.conv_in.bias` float.
    let path = common::fixtures().join("int_vae_weights.bin");
    let state = rename_legacy_vae_keys(load_state_dict(&path).unwrap());
    let config = VaeConfig::from_file(&tiny_folder().join("vae/config.json")).unwrap();
    let source = WeightSource::from_state_dict(state, path.display().to_string(), Device::Cpu, Kind::Float);
    AutoencoderKl::new(&config, &source).unwrap();
    let err = source.finish("AutoencoderKL").unwrap_err();
    assert!(err.to_string().contains("int_vae_weights.bin"), "{err}");
    let DiffusionError::Keys { problems, .. } = err else { panic!("expected a key error, got {err}") };
    let mut wrong: Vec<&KeyProblem> = problems.iter().filter(|p| matches!(p, KeyProblem::Dtype { .. })).collect();
    wrong.sort_by_key(|p| p.to_string());
    assert_eq!(wrong, vec![&dtype("decoder.conv_out.bias", "I64"), &dtype("encoder.conv_in.weight", "I32")]);
    assert!(!problems.iter().any(|p| p.to_string().contains("encoder.conv_in.bias")), "{problems:?}");
}

fn unet_output(model: &VersatileDiffusion) -> Tensor {
    let cases = cases();
    let run = UNetRun { mix: DualMix { text_weight: 0.4, ..DualMix::default() }, ..UNetRun::default() };
    model.unet.forward(&cases["unet_sample"], 721.0, &cases["unet_context"], &run).unwrap()
}

#[test]
fn bf16_and_f16_merged_files_load_cast_and_run_like_f32() {
    let dir = tempfile::tempdir().unwrap();
    let weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    // The reference implementation's outputs (diffusers, f32 weights).
    let (expected, vae_expected) = (&cases()["unet_out_w4"], &cases()["vae_decoded"]);
    // Weight rounding (2^-11 relative for f16, 2^-8 for bf16) through the tiny U-Net and VAE; the
    // bounds are about 4x the errors measured on this fixture.
    for (kind, tolerance) in [(Kind::Half, 1e-2), (Kind::BFloat16, 5e-2)] {
        let path = dir.path().join(format!("vd-{kind:?}.safetensors"));
        weights.write_merged(&path, kind).unwrap();
        let stored = VdWeights::open(&path).unwrap();
        assert!(stored.unet.values().chain(stored.vae.values()).all(|t| t.kind() == kind), "{kind:?}");
        let model = VersatileDiffusion::from_weights(stored, Device::Cpu, Kind::Float, Kind::Float).unwrap();
        assert_eq!((model.unet.kind(), model.vae.kind()), (Kind::Float, Kind::Float));
        assert_close(&format!("{kind:?} U-Net"), &unet_output(&model), expected, tolerance);
        let decoded = model.vae.decode(&cases()["vae_z"]).unwrap();
        assert_close(&format!("{kind:?} VAE"), &decoded, vae_expected, tolerance);
    }
}
