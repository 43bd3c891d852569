//! Checkpoint dtypes: weights stored as integers are refused by name (a safetensors header that
//! relabels an F32 tensor, a zip `torch.save` file written by torch with int32 and int64 weights),
//! while the int64 `num_batches_tracked` buffers of batch norm are still ignored; f16 and bf16
//! checkpoints load, cast to f32, and compute like the f32 one.

mod common;

use std::path::Path;

use common::{fixture, read_tensors, scaled_max_error};
use metrics::MetricsError;
use metrics::networks::checkpoint::{copy_into, read_state_dict};
use tch::nn::{self, ModuleT};
use tch::{Device, Kind, Tensor};

/// The conv + batch-norm pair of the tiny fixtures (as in `checkpoints.rs`).
fn tiny_net(vs: &nn::VarStore) -> impl ModuleT {
    let root = vs.root();
    let conv = nn::conv2d(&root / "conv", 3, 4, 3, nn::ConvConfig { padding: 1, ..Default::default() });
    let bn = nn::batch_norm2d(&root / "bn", 4, Default::default());
    nn::seq_t().add(conv).add(bn)
}

/// Copies a safetensors file with the header's `dtype` of the tensors `relabel` names replaced
/// (same data bytes).
fn relabel_safetensors(src: &Path, dst: &Path, relabel: impl Fn(&str) -> Option<&'static str>) {
    weight_files::relabel_dtypes(src, dst, relabel).unwrap();
}

fn load(path: &Path) -> Result<Vec<String>, MetricsError> {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = tiny_net(&vs);
    let state = read_state_dict(path)?;
    copy_into(&vs, &state, path)
}

#[test]
fn a_float_tensor_relabelled_i32_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relabelled.safetensors");
    relabel_safetensors(&fixture("tiny.safetensors"), &path, |k| (k == "conv.weight").then_some("I32"));
    let msg = load(&path).unwrap_err().to_string();
    assert!(
        msg.contains("relabelled.safetensors")
            && msg.contains("parameter conv.weight has dtype I32, expected one of F32, F16, BF16, F64")
            && !msg.contains("conv.bias"),
        "{msg}"
    );
}

#[test]
fn integer_weights_in_a_torch_save_zip_file_are_refused_by_name() {
    // Written by torch (tools/checkpoint-dtypes/make_fixtures.py): `conv.weight` viewed as int32
    // (same bytes), `bn.running_var` as int64, `conv.bias` float, `bn.num_batches_tracked` int64
    // as torch keeps it; all under `module.`.
    let path = fixture("tiny_int.pth");
    let state = read_state_dict(&path).unwrap();
    assert_eq!(state["bn.num_batches_tracked"].kind(), Kind::Int64);
    let msg = load(&path).unwrap_err().to_string();
    assert!(msg.contains("tiny_int.pth"), "{msg}");
    assert!(msg.contains("parameter conv.weight has dtype I32"), "{msg}");
    assert!(msg.contains("parameter bn.running_var has dtype I64"), "{msg}");
    assert!(!msg.contains("conv.bias") && !msg.contains("num_batches_tracked"), "{msg}");
}

#[test]
fn the_int64_num_batches_tracked_of_a_torch_save_file_is_ignored() {
    let state = read_state_dict(&fixture("tiny_zip.pth")).unwrap();
    assert_eq!(state["bn.num_batches_tracked"].kind(), Kind::Int64);
    let unused = load(&fixture("tiny_zip.pth")).unwrap();
    assert!(unused.iter().any(|k| k == "bn.num_batches_tracked"), "{unused:?}");
}

#[test]
fn f16_and_bf16_checkpoints_load_cast_and_compute_like_f32() {
    let reference = read_tensors("tiny_forward.safetensors");
    let original = read_tensors("tiny.safetensors");
    let dir = tempfile::tempdir().unwrap();
    // Weight rounding (2^-11 relative for f16, 2^-8 for bf16) through one conv and a batch norm;
    // the bounds are about 4x the errors measured on this fixture.
    for (kind, tolerance) in [(Kind::Half, 4e-4), (Kind::BFloat16, 1.2e-2)] {
        let tensors: Vec<(String, Tensor)> = original
            .iter()
            .map(|(k, t)| (k.clone(), if t.is_floating_point() { t.to_kind(kind) } else { t.shallow_clone() }))
            .collect();
        let path = dir.path().join(format!("{kind:?}.safetensors"));
        Tensor::write_safetensors(&tensors, &path).unwrap();
        let vs = nn::VarStore::new(Device::Cpu);
        let net = tiny_net(&vs);
        let state = read_state_dict(&path).unwrap();
        copy_into(&vs, &state, &path).unwrap();
        for (name, var) in vs.variables() {
            assert_eq!(var.kind(), Kind::Float, "{name}");
            assert!(var.equal(&original[&name].to_kind(kind).to_kind(Kind::Float)), "{kind:?} {name}");
        }
        let y = tch::no_grad(|| net.forward_t(&reference["input"], false));
        let err = scaled_max_error(&y, &reference["output"]);
        assert!(err < tolerance && err > 0.0, "{kind:?}: {err}");
    }
}
