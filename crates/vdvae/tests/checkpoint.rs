//! Loading state dicts: zip and legacy `torch.save` (written by torch itself, `module.` prefix)
//! and safetensors, with every key and shape checked.

mod common;

use common::{TINY_WEIGHTS, TINY_WEIGHTS_TH, fixture};
use tch::{Device, Tensor};
use vdvae::parity::Fixture;
use vdvae::{Vdvae, VdvaeConfig, VdvaeError, WeightInit};

fn tiny_config() -> VdvaeConfig {
    Fixture::read(&fixture(TINY_WEIGHTS)).unwrap().config
}

#[test]
fn torch_save_and_safetensors_load_the_same_values() {
    let config = tiny_config();
    let a = Vdvae::load(&fixture(TINY_WEIGHTS), &config, Device::Cpu).unwrap();
    let b = Vdvae::load(&fixture(TINY_WEIGHTS_TH), &config, Device::Cpu).unwrap();
    let (va, vb) = (a.var_store().variables(), b.var_store().variables());
    assert_eq!(va.len(), 358);
    for (name, t) in &va {
        // Exact: both files store the same f32 values and loading copies them.
        assert!(t.equal(&vb[name]), "{name}");
        // Random weights were really loaded (none of them is zero in the fixture).
        assert!(t.abs().min().double_value(&[]) > 0.0, "{name} kept its zero init");
    }
}

#[test]
fn a_legacy_torch_save_file_loads_the_same_values_as_the_zip_one() {
    // tiny-weights-module.th re-saved by torch with `_use_new_zipfile_serialization=False`
    // (tools/weight-files/make_fixtures.py): the format of the official VDVAE checkpoints.
    let config = tiny_config();
    let legacy = fixture("tiny-weights-module-legacy.th");
    assert_eq!(vdvae::checkpoint::detect_format(&legacy).unwrap(), vdvae::checkpoint::CheckpointFormat::LegacyPickle);
    let a = Vdvae::load(&fixture(TINY_WEIGHTS_TH), &config, Device::Cpu).unwrap();
    let b = Vdvae::load(&legacy, &config, Device::Cpu).unwrap();
    let (va, vb) = (a.var_store().variables(), b.var_store().variables());
    assert_eq!((va.len(), vb.len()), (358, 358));
    for (name, t) in &va {
        assert!(t.equal(&vb[name]), "{name}");
        assert!(t.abs().min().double_value(&[]) > 0.0, "{name} kept its zero init");
    }
}

#[test]
fn mismatched_checkpoints_are_refused_with_every_key_named() {
    let config = tiny_config();
    let mut tensors = Tensor::read_safetensors(fixture(TINY_WEIGHTS)).unwrap();
    tensors.retain(|(k, _)| k != "decoder.gain");
    for (k, t) in tensors.iter_mut() {
        if k == "encoder.in_conv.weight" {
            *t = t.narrow(0, 0, 8);
        }
    }
    tensors.push(("decoder.extra.weight".into(), Tensor::zeros([2], (tch::Kind::Float, Device::Cpu))));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.safetensors");
    Tensor::write_safetensors(&tensors, &path).unwrap();

    let mut model = Vdvae::new(&config, Device::Cpu, WeightInit::Zeros).unwrap();
    let err = model.load_weights(&path).unwrap_err();
    match &err {
        VdvaeError::CheckpointMismatch { mismatch, .. } => {
            assert_eq!(mismatch.missing, vec!["decoder.gain"]);
            assert_eq!(mismatch.unexpected, vec!["decoder.extra.weight"]);
            assert_eq!(
                mismatch.misshaped,
                vec![("encoder.in_conv.weight".to_string(), vec![16, 3, 3, 3], vec![8, 3, 3, 3])]
            );
        }
        other => panic!("unexpected error {other}"),
    }
    let text = err.to_string();
    assert!(
        text.contains("bad.safetensors") && text.contains("decoder.gain") && text.contains("decoder.extra.weight"),
        "{text}"
    );
    // Nothing was copied (exact: a sum of zeros is zero).
    let vars = model.var_store().variables();
    assert_eq!(vars["decoder.dec_blocks.0.enc.c1.weight"].abs().sum(tch::Kind::Float).double_value(&[]), 0.0);
}

#[test]
fn a_checkpoint_for_another_config_is_refused() {
    let mut config = tiny_config();
    config.dec_blocks = "1x2,4m1,4x1,8m4,8x2,16m8,16x3".into();
    let err = Vdvae::load(&fixture(TINY_WEIGHTS), &config, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("decoder.dec_blocks.10.enc.c1.weight"), "{err}");
}
