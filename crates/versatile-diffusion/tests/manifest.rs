//! At the full Versatile Diffusion configuration, the dual U-Net's and the autoencoder's parameter
//! names and shapes equal those of diffusers' models (manifests recorded by the generator on the
//! meta device). Checked by walking our module tree with zero-memory placeholders: nothing of the
//! ~4.5 GB is allocated.

mod common;

use std::collections::BTreeMap;

use common::fixtures;
use versatile_diffusion::{AutoencoderKl, DualUNet, Manifest, UNetConfig, VaeConfig};

fn recorded(name: &str) -> Manifest {
    let text = std::fs::read_to_string(fixtures().join("full").join(name)).unwrap();
    let map: BTreeMap<String, Vec<i64>> = serde_json::from_str(&text).unwrap();
    map
}

fn compare(ours: &Manifest, theirs: &Manifest) {
    let only_ours: Vec<_> = ours.keys().filter(|k| !theirs.contains_key(*k)).collect();
    let only_theirs: Vec<_> = theirs.keys().filter(|k| !ours.contains_key(*k)).collect();
    assert!(
        only_ours.is_empty() && only_theirs.is_empty(),
        "only ours: {only_ours:?}\nonly diffusers: {only_theirs:?}"
    );
    for (k, shape) in ours {
        assert_eq!(shape, &theirs[k], "{k}");
    }
}

#[test]
fn full_dual_unet_names_and_shapes_equal_diffusers() {
    let config = UNetConfig::from_file(&fixtures().join("full/image_unet/config.json")).unwrap();
    let ours = DualUNet::manifest(&config).unwrap();
    let theirs = recorded("dual_unet_manifest.json");
    compare(&ours, &theirs);
    let positions: std::collections::BTreeSet<&str> =
        ours.keys().filter_map(|k| k.find(".transformers.1.").map(|i| &k[..i])).collect();
    assert_eq!(positions.len(), 16, "VD has 16 dual attention positions");
    let params: i64 = ours.values().map(|s| s.iter().product::<i64>()).sum();
    assert!((1_100_000_000..1_160_000_000).contains(&params), "{params} parameters");
}

#[test]
fn full_vae_names_and_shapes_equal_diffusers() {
    let config = VaeConfig::from_file(&fixtures().join("full/vae/config.json")).unwrap();
    compare(&AutoencoderKl::manifest(&config).unwrap(), &recorded("vae_manifest.json"));
}

#[test]
fn the_versatile_diffusion_presets_are_the_full_size_models() {
    let unet = UNetConfig::versatile_diffusion();
    unet.validate().unwrap();
    compare(&DualUNet::manifest(&unet).unwrap(), &recorded("dual_unet_manifest.json"));
    let vae = VaeConfig::versatile_diffusion();
    vae.validate().unwrap();
    assert_eq!(vae.scaling_factor, 0.18215);
    compare(&AutoencoderKl::manifest(&vae).unwrap(), &recorded("vae_manifest.json"));
}
