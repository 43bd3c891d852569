//! Checkpoint loading from files written by torch.save (zip and legacy) and safetensors
//! (tools/metrics/gen_fixtures.py, `gen_checkpoints`).

mod common;

use common::{fixture, read_tensors, scaled_max_error};
use metrics::MetricsError;
use metrics::networks::checkpoint::{copy_into, read_state_dict};
use tch::Device;
use tch::nn::{self, ModuleT};

/// A conv + batch-norm pair named like the checkpoint's `conv` and `bn` entries.
fn tiny_net(vs: &nn::VarStore) -> impl ModuleT {
    let root = vs.root();
    let conv = nn::conv2d(&root / "conv", 3, 4, 3, nn::ConvConfig { padding: 1, ..Default::default() });
    let bn = nn::batch_norm2d(&root / "bn", 4, Default::default());
    nn::seq_t().add(conv).add(bn)
}

fn load_and_run(file: &str) -> Result<(), MetricsError> {
    let vs = nn::VarStore::new(Device::Cpu);
    let net = tiny_net(&vs);
    let path = fixture(file);
    let state = read_state_dict(&path)?;
    let unused = copy_into(&vs, &state, &path)?;
    // SwAV-style extras are reported, not loaded; `module.` has been stripped.
    assert!(unused.iter().any(|k| k == "projection_head.0.weight"), "{unused:?}");
    assert!(unused.iter().any(|k| k == "prototypes.weight"));
    let t = read_tensors("tiny_forward.safetensors");
    let y = tch::no_grad(|| net.forward_t(&t["input"], false));
    let err = scaled_max_error(&y, &t["output"]);
    assert!(err < 1e-6, "{file}: {err}");
    Ok(())
}

#[test]
fn zip_format_torch_save_loads_with_module_prefix_stripped() {
    load_and_run("tiny_zip.pth").unwrap();
}

#[test]
fn safetensors_conversion_loads() {
    // The safetensors file has no `module.` prefix and no extras except the SwAV ones.
    load_and_run("tiny.safetensors").unwrap();
}

#[test]
fn legacy_pickle_converted_by_the_tool_loads() {
    load_and_run("tiny_legacy_converted.safetensors").unwrap();
}

#[test]
fn legacy_pickle_loads_as_it_is() {
    // The legacy (pre-1.6) format of older torchvision downloads, read in Rust: no conversion.
    load_and_run("tiny_legacy.pth").unwrap();
}

#[test]
fn legacy_pickle_holds_the_same_values_as_the_zip_file() {
    let legacy = read_state_dict(&fixture("tiny_legacy.pth")).unwrap();
    let zip = read_state_dict(&fixture("tiny_zip.pth")).unwrap();
    let mut names: Vec<&String> = legacy.keys().collect();
    names.sort();
    assert_eq!(names.len(), 9, "{names:?}");
    assert!(names.iter().all(|k| !k.starts_with("module.")), "{names:?}");
    for name in names {
        let (a, b) = (&legacy[name], &zip[name]);
        // Exact: the same values saved twice by torch, including the int64 `num_batches_tracked`.
        assert_eq!((a.kind(), a.size()), (b.kind(), b.size()), "{name}");
        assert!(a.equal(b), "{name}");
    }
    assert_eq!(legacy["bn.num_batches_tracked"].int64_value(&[]), 7);
}

#[test]
fn wrong_shapes_and_missing_entries_are_named() {
    let vs = nn::VarStore::new(Device::Cpu);
    let _net = tiny_net(&vs);
    let path = fixture("tiny_wrong_shape.pth");
    let state = read_state_dict(&path).unwrap();
    let msg = copy_into(&vs, &state, &path).unwrap_err().to_string();
    assert!(msg.contains("conv.weight") && msg.contains("[4, 3, 5, 5]"), "{msg}");

    let mut partial = read_state_dict(&fixture("tiny_zip.pth")).unwrap();
    partial.remove("bn.running_var");
    let msg = copy_into(&vs, &partial, &path).unwrap_err().to_string();
    assert!(msg.contains("bn.running_var") && msg.contains("missing"), "{msg}");

    let missing = read_state_dict(&fixture("does_not_exist.pth")).unwrap_err();
    assert!(matches!(missing, MetricsError::Io { .. }));
}
