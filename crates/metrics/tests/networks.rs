//! The four torchvision networks against torchvision itself (tools/metrics/gen_fixtures.py,
//! `gen_networks`): same deterministic synthetic weights at the full architectures, small inputs,
//! features compared to 1e-4 of their scale; parameter names and shapes against torchvision's
//! state dicts (and SwAV's checkpoint layout).

mod common;

use std::collections::BTreeMap;

use common::{read_json, read_tensors, scaled_max_error};
use metrics::networks::synthetic::{fnv1a64, symmetric_uniform};
use metrics::{TorchvisionExtractor, TorchvisionNetwork};
use tch::{Device, Tensor};

fn input(name: &str, batch: i64, size: i64) -> Tensor {
    let seed = fnv1a64(&format!("input.{name}"));
    let values: Vec<f32> =
        (0..(batch * 3 * size * size) as u64).map(|i| symmetric_uniform(seed, i) as f32 * 2.0).collect();
    Tensor::from_slice(&values).view([batch, 3, size, size])
}

fn check_network(network: TorchvisionNetwork) {
    let meta = read_json("networks.json");
    let (size, batch) = (meta["input_size"].as_i64().unwrap(), meta["batch"].as_i64().unwrap());
    let expected = read_tensors("networks.safetensors");
    let net = TorchvisionExtractor::with_synthetic_weights(network, Device::Cpu).unwrap();
    let outputs = net.forward(&input(network.name(), batch, size)).unwrap();
    assert_eq!(outputs.len(), network.outputs().len());
    for (output, name) in outputs.iter().zip(network.outputs()) {
        let reference = &expected[&format!("{}.{name}", network.name())];
        assert_eq!(output.numel(), reference.numel(), "{} {name}: element count", network.name());
        let err = scaled_max_error(output, reference);
        println!("{} {name}: scaled max error {err:.3e} (tolerance 1e-4)", network.name());
        assert!(err < 1e-4, "{} {name}: scaled max error {err}", network.name());
    }
}

#[test]
fn alexnet_matches_torchvision() {
    check_network(TorchvisionNetwork::AlexNet);
}

#[test]
fn inception_v3_matches_torchvision() {
    check_network(TorchvisionNetwork::InceptionV3);
}

#[test]
fn efficientnet_b1_matches_torchvision() {
    check_network(TorchvisionNetwork::EfficientNetB1);
}

#[test]
fn resnet50_matches_torchvision() {
    check_network(TorchvisionNetwork::SwavResNet50);
}

/// Every parameter the network registers is in the checkpoint with the same shape, and the
/// checkpoint entries it does not use are exactly the expected ones.
fn check_manifest(network: TorchvisionNetwork, manifest_key: &str, ignored_prefixes: &[&str]) {
    let meta = read_json("networks.json");
    let manifest: BTreeMap<String, Vec<i64>> = meta["manifest"][manifest_key]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let name = k.strip_prefix("module.").unwrap_or(k).to_owned();
            (name, v.as_array().unwrap().iter().map(|d| d.as_i64().unwrap()).collect())
        })
        .collect();
    let net = TorchvisionExtractor::new(network, Device::Cpu);
    let params = net.parameter_shapes();
    for (name, shape) in &params {
        assert_eq!(manifest.get(name), Some(shape), "{manifest_key}: {name}");
    }
    let used: std::collections::HashSet<&String> = params.iter().map(|(n, _)| n).collect();
    for name in manifest.keys().filter(|k| !used.contains(k)) {
        assert!(
            name.ends_with("num_batches_tracked") || ignored_prefixes.iter().any(|p| name.starts_with(p)),
            "{manifest_key}: unexpected unused entry {name}"
        );
    }
}

#[test]
fn parameter_names_and_shapes_match_torchvision_checkpoints() {
    check_manifest(TorchvisionNetwork::AlexNet, "alexnet", &["classifier."]);
    check_manifest(TorchvisionNetwork::InceptionV3, "inception_v3", &["AuxLogits.", "fc."]);
    check_manifest(TorchvisionNetwork::EfficientNetB1, "efficientnet_b1", &["classifier."]);
    check_manifest(TorchvisionNetwork::SwavResNet50, "swav_resnet50", &["fc."]);
    check_manifest(TorchvisionNetwork::SwavResNet50, "swav_checkpoint", &["fc.", "projection_head.", "prototypes."]);
}

#[test]
fn feature_extractor_trait_flattens_rows() {
    use metrics::FeatureExtractor;
    let net = TorchvisionExtractor::with_synthetic_weights(TorchvisionNetwork::AlexNet, Device::Cpu).unwrap();
    let batch =
        ndarray::Array4::<f32>::from_shape_fn((3, 3, 64, 64), |(n, c, y, x)| ((n + c + y * x) % 7) as f32 / 7.0);
    let rows = net.extract(batch.view()).unwrap();
    assert_eq!(net.outputs(), vec!["features.4", "features.11"]);
    assert_eq!(rows[0].dim(), (3, 192 * 7 * 7));
    assert_eq!(rows[1].dim(), (3, 256 * 3 * 3));
    let bad = ndarray::Array4::<f32>::zeros((1, 4, 64, 64));
    assert!(net.extract(bad.view()).is_err());
}
