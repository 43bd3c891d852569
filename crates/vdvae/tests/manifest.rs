//! Names and shapes of the ImageNet-64 model against the manifest of the official checkpoint.

mod common;

use std::collections::BTreeMap;

use common::{TINY_WEIGHTS, fixture};
use tch::Device;
use vdvae::parity::Fixture;
use vdvae::{Vdvae, VdvaeConfig, WeightInit};

fn manifest() -> (serde_json::Value, BTreeMap<String, Vec<i64>>) {
    let text = std::fs::read_to_string(fixture("imagenet64-manifest.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tensors = json["tensors"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect()))
        .collect();
    (json, tensors)
}

#[test]
fn imagenet64_preset_equals_the_manifest_hps() {
    let (json, _) = manifest();
    let from_manifest = VdvaeConfig::from_hps_json(&json["hps"].to_string()).unwrap();
    assert_eq!(from_manifest, VdvaeConfig::imagenet64());
}

#[test]
fn imagenet64_shapes_from_the_config_equal_the_manifest() {
    let (json, expected) = manifest();
    let shapes: BTreeMap<String, Vec<i64>> =
        VdvaeConfig::imagenet64().parameter_shapes().unwrap().into_iter().collect();
    assert_eq!(shapes.len(), 2482);
    assert_eq!(json["n_tensors"].as_i64(), Some(2482));
    assert_eq!(shapes, expected);
    let params: i64 = shapes.values().map(|s| s.iter().product::<i64>()).sum();
    assert_eq!(params, 125_005_860);
    assert_eq!(json["n_params"].as_i64(), Some(params));
}

#[test]
fn imagenet64_model_var_store_equals_the_manifest() {
    // One full model (about 0.5 GB of zeros), built exactly as for loading the real checkpoint.
    let (_, expected) = manifest();
    let model = Vdvae::new(&VdvaeConfig::imagenet64(), Device::Cpu, WeightInit::Zeros).unwrap();
    let built: BTreeMap<String, Vec<i64>> = model.parameter_shapes().into_iter().collect();
    assert_eq!(built, expected);
}

#[test]
fn tiny_model_var_store_equals_the_config_description_and_the_weights_file() {
    let config = Fixture::read(&fixture(TINY_WEIGHTS)).unwrap().config;
    let model = Vdvae::new(&config, Device::Cpu, WeightInit::Reference { seed: 3 }).unwrap();
    let built: BTreeMap<String, Vec<i64>> = model.parameter_shapes().into_iter().collect();
    let described: BTreeMap<String, Vec<i64>> = config.parameter_shapes().unwrap().into_iter().collect();
    assert_eq!(built, described);
    let file: BTreeMap<String, Vec<i64>> =
        tch::Tensor::read_safetensors(fixture(TINY_WEIGHTS)).unwrap().into_iter().map(|(k, t)| (k, t.size())).collect();
    assert_eq!(built, file);
}
