//! Legacy `torch.save` files written by torch 2.11 (`tools/weight-files/make_fixtures.py`,
//! `_use_new_zipfile_serialization=False`) read in Rust, compared byte for byte with the tensors
//! torch itself reads back from the same files (stored beside them as safetensors).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use weight_files::{Dtype, RawTensor, WeightFormat, detect_format, read_legacy};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures").join(name)
}

/// The tensors of a safetensors file, read by the `safetensors` crate, as raw tensors.
fn expected(name: &str) -> BTreeMap<String, RawTensor> {
    let bytes = std::fs::read(fixture(name)).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| {
            let dtype = Dtype::from_name(&format!("{:?}", v.dtype())).unwrap();
            (k, RawTensor { dtype, shape: v.shape().to_vec(), data: v.data().to_vec() })
        })
        .collect()
}

fn read(name: &str) -> Vec<(String, RawTensor)> {
    let path = fixture(name);
    assert_eq!(detect_format(&path).unwrap(), WeightFormat::LegacyPickle, "{name}");
    read_legacy(&path).unwrap()
}

fn assert_same(found: Vec<(String, RawTensor)>, expected: &BTreeMap<String, RawTensor>) {
    let names: Vec<&String> = found.iter().map(|(k, _)| k).collect();
    assert_eq!(names.len(), expected.len(), "{names:?}");
    for (name, tensor) in &found {
        let want = &expected[name];
        assert_eq!((tensor.dtype, &tensor.shape), (want.dtype, &want.shape), "{name}");
        assert_eq!(tensor.data, want.data, "{name}: values differ");
    }
}

#[test]
fn every_dtype_and_view_of_a_flat_state_dict_matches_torch() {
    let found = read("legacy_views.pt");
    // The file's order, `module.` prefix kept as saved.
    assert_eq!(found[0].0, "module.conv.weight");
    let dtypes: BTreeMap<&str, Dtype> = found.iter().map(|(k, t)| (k.as_str(), t.dtype)).collect();
    assert_eq!(dtypes["module.half"], Dtype::F16);
    assert_eq!(dtypes["module.bf16"], Dtype::BF16);
    assert_eq!(dtypes["module.slice"], Dtype::F64);
    assert_eq!(dtypes["module.bn.num_batches_tracked"], Dtype::I64);
    assert_eq!(dtypes["module.mask"], Dtype::BOOL);
    let expected = expected("legacy_expected.safetensors");
    assert_same(found.clone(), &expected);
    // Independent of the fixture: the transposed view really is the transpose of its storage-mate.
    let get = |n: &str| found.iter().find(|(k, _)| k == n).unwrap().1.clone();
    let (w, wt) = (get("module.fc.weight"), get("module.fc.weight_t"));
    assert_eq!((w.shape.clone(), wt.shape.clone()), (vec![4, 5], vec![5, 4]));
    for (i, j) in (0..4).flat_map(|i| (0..5).map(move |j| (i, j))) {
        assert_eq!(w.data[(i * 5 + j) * 4..][..4], wt.data[(j * 4 + i) * 4..][..4], "({i}, {j})");
    }
    // line[5:11] of arange(20) * 0.25 - 2.
    let slice: Vec<f64> =
        get("module.slice").data.chunks(8).map(|c| f64::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(slice, (5..11).map(|i| i as f64 * 0.25 - 2.0).collect::<Vec<_>>());
    let steps = get("module.bn.num_batches_tracked");
    assert_eq!((steps.shape.len(), i64::from_le_bytes(steps.data.try_into().unwrap())), (0, 123_456_789_012));
}

#[test]
fn pickle_protocol_4_reads_the_same() {
    assert_same(read("legacy_protocol4.pt"), &expected("legacy_expected.safetensors"));
}

#[test]
fn a_nested_checkpoint_yields_its_state_dict() {
    let found = read("legacy_nested.pt");
    let names: Vec<&str> = found.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["layer.weight", "layer.bias", "bn.num_batches_tracked"]);
    assert_same(found, &expected("legacy_nested_expected.safetensors"));
}

#[test]
fn damaged_files_are_refused_naming_the_file_and_the_part() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("legacy_views.pt")).unwrap();
    let cut = dir.path().join("cut.pt");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    let text = read_legacy(&cut).unwrap_err().to_string();
    assert!(text.contains("cut.pt") && text.contains("storage") && text.contains("truncated"), "{text}");
    let mut wrong = bytes.clone();
    wrong[6] ^= 0xff;
    let magic = dir.path().join("magic.pt");
    std::fs::write(&magic, &wrong).unwrap();
    let text = read_legacy(&magic).unwrap_err().to_string();
    assert!(text.contains("magic.pt") && text.contains("magic number"), "{text}");
    let inside = dir.path().join("inside.pt");
    std::fs::write(&inside, &bytes[..200]).unwrap();
    let text = read_legacy(&inside).unwrap_err().to_string();
    assert!(text.contains("inside.pt") && text.contains("state dict does not unpickle"), "{text}");
}
