//! diffusers U-Net configs in their per-block forms (issue 15, point 5): a folder written by
//! diffusers (`tools/versatile-diffusion/make_per_block_fixture.py`) with per-block
//! `attention_head_dim`, `layers_per_block`, per-layer `transformer_layers_per_block`,
//! `only_cross_attention`, linear projections and a text U-Net with its own heads loads through
//! `VersatileDiffusion::load` and matches diffusers' dual U-Net; forms diffusers refuses, or that
//! this crate cannot build, are refused by key and value.

mod common;

use std::collections::HashMap;
use std::path::PathBuf;

use common::{assert_close, fixtures};
use serde_json::{Value, json};
use tch::{Kind, Tensor};
use versatile_diffusion::config::TextUNetConfig;
use versatile_diffusion::{
    AttentionKernel, DualMix, DualUNet, UNetConfig, UNetRun, VdWeights, VersatileDiffusion, WeightSource,
};

fn per_block() -> PathBuf {
    fixtures().join("per_block")
}

fn cases() -> HashMap<String, Tensor> {
    let tensors = Tensor::read_safetensors(per_block().join("cases.safetensors")).expect("cases.safetensors");
    tensors.into_iter().map(|(k, t)| (k, t.to_device(common::device()))).collect()
}

fn cases_json() -> Value {
    let text = std::fs::read_to_string(per_block().join("cases.json")).expect("cases.json");
    serde_json::from_str(&text).expect("cases.json parses")
}

fn build(weights: VdWeights) -> DualUNet {
    let source = WeightSource::from_state_dict(weights.unet, "per_block", common::device(), Kind::Float);
    let unet = DualUNet::new(&weights.unet_config, &source).expect("dual U-Net builds");
    source.finish("dual U-Net").expect("every key fits");
    unet
}

fn check_against_diffusers(unet: &DualUNet, what: &str) {
    let cases = cases();
    let timestep = cases_json()["timestep"].as_f64().unwrap();
    for (w, key) in [(0.0, "out_w0"), (0.4, "out_w4"), (1.0, "out_w10")] {
        for kernel in [AttentionKernel::Fused, AttentionKernel::Explicit] {
            let run = UNetRun { mix: DualMix { text_weight: w, ..DualMix::default() }, attention: kernel };
            let out = unet.forward(&cases["sample"], timestep, &cases["context"], &run).unwrap();
            assert_close(&format!("{what} {key} {kernel:?}"), &out, &cases[key], 1e-4);
        }
    }
}

#[test]
fn per_block_folder_loads_through_versatile_diffusion_load() {
    VersatileDiffusion::load(&per_block(), common::device(), Kind::Float, Kind::Float)
        .expect("a diffusers folder with per-block attention heads loads");
}

#[test]
fn per_block_dual_unet_matches_diffusers() {
    let weights = VdWeights::from_diffusers_folder(&per_block()).unwrap();
    check_against_diffusers(&build(weights), "folder");
}

#[test]
fn per_block_layout_is_what_diffusers_built() {
    // The generator recorded every Transformer2DModel diffusers built; the resolved layout must
    // agree position by position (heads, head width, blocks, groups, projections, only-cross).
    let weights = VdWeights::from_diffusers_folder(&per_block()).unwrap();
    let layout = weights.unet_config.dual_layout().unwrap();
    let meta = cases_json();
    let mut positions = vec![("mid_block.attentions.0".to_owned(), layout.mid)];
    for (kind, blocks) in [("down_blocks", &layout.down), ("up_blocks", &layout.up)] {
        for (i, block) in blocks.iter().enumerate() {
            for (j, specs) in block.iter().enumerate() {
                positions.push((format!("{kind}.{i}.attentions.{j}"), *specs));
            }
        }
    }
    let recorded = meta["image_transformers"].as_object().unwrap();
    assert_eq!(positions.len(), recorded.len(), "attention positions");
    for (place, specs) in positions {
        for (index, key) in [(0, "image_transformers"), (1, "text_transformers")] {
            let expected = &meta[key][&place];
            let s = specs[index];
            let found = json!({
                "heads": s.heads, "head_dim": s.head_dim, "blocks": s.layers, "groups": s.groups,
                "linear": s.linear_projection, "only_cross": s.only_cross_attention,
            });
            assert_eq!(&found, expected, "{key} at {place}");
        }
    }
}

#[test]
fn merged_file_keeps_the_text_unet_layout() {
    // The text U-Net's heads and blocks differ from the image U-Net's; a merged file must carry
    // them (in `unet_config`, key `text_unet`) or its text transformers would be built wrongly.
    let weights = VdWeights::from_diffusers_folder(&per_block()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let merged = dir.path().join("merged.safetensors");
    weights.write_merged(&merged, Kind::Float).unwrap();
    let reread = VdWeights::from_merged_file(&merged).unwrap();
    assert!(reread.unet_config.text_unet.is_some(), "merged unet_config lacks the text U-Net");
    check_against_diffusers(&build(reread), "merged");
}

fn full_config(name: &str) -> Value {
    let path = fixtures().join("full").join(name).join("config.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn with(mut base: Value, changes: Value) -> Value {
    for (k, v) in changes.as_object().unwrap() {
        base[k] = v.clone();
    }
    base
}

fn parse(config: &Value) -> Result<UNetConfig, String> {
    let config: UNetConfig = serde_json::from_value(config.clone()).map_err(|e| e.to_string())?;
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

fn refused(config: Value, needles: &[&str]) {
    let err = parse(&config).expect_err("config must be refused");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

#[test]
fn a_per_block_list_equal_to_the_integer_gives_the_same_model() {
    let int = parse(&full_config("image_unet")).unwrap();
    let list = parse(&with(full_config("image_unet"), json!({"attention_head_dim": [8, 8, 8, 8]}))).unwrap();
    assert_eq!(int.dual_layout().unwrap(), list.dual_layout().unwrap());
    assert_eq!(DualUNet::manifest(&int).unwrap(), DualUNet::manifest(&list).unwrap());
    // The mid block reads the last entry, the up blocks the reversed list.
    let varied = parse(&with(full_config("image_unet"), json!({"attention_head_dim": [5, 10, 20, 16]}))).unwrap();
    let layout = varied.dual_layout().unwrap();
    assert_eq!(layout.mid[0].heads, 16);
    assert_eq!(layout.down[1][0][0].heads, 10);
    assert_eq!(layout.up[1][0][0].heads, 20); // up block 1 is level 2
    assert_eq!(layout.up[3][2][0].heads, 5);
    assert_eq!(layout.down[2][0][0].head_dim, 64);
}

#[test]
fn full_text_unet_config_fits_and_a_wrong_one_is_named() {
    let full = fixtures().join("full");
    let image = full.join("image_unet/config.json");
    let (config, text) = UNetConfig::read_dual(&image, Some(&full.join("text_unet/config.json"))).unwrap();
    assert!(config.text_unet.is_some());
    assert!(serde_json::from_str::<Value>(&text).unwrap()["text_unet"].is_object());
    let tiny = fixtures().join("tiny/text_unet/config.json");
    let err = UNetConfig::read_dual(&image, Some(&tiny)).unwrap_err().to_string();
    assert!(err.contains("channels") && err.contains("tiny/text_unet"), "{err}");
}

#[test]
fn text_unet_ignores_transformer_layers_in_down_and_up_blocks_but_not_in_the_mid_block() {
    // UNetFlatConditionModel's get_down_block/get_up_block drop `transformer_layers_per_block`.
    let text: TextUNetConfig =
        serde_json::from_value(with(full_config("text_unet"), json!({"transformer_layers_per_block": [2, 2, 2, 4]})))
            .unwrap();
    text.validate().unwrap();
    let layout = text.layout().unwrap();
    assert!(layout.down.iter().chain(&layout.up).flatten().all(|s| s.layers == 1));
    assert_eq!(layout.mid.layers, 4);
}

#[test]
fn forms_diffusers_refuses_are_refused_by_key_and_value() {
    let image = full_config("image_unet");
    refused(
        with(image.clone(), json!({"attention_head_dim": [8, 8, 8]})),
        &["attention_head_dim", "[8,8,8]", "one per down block (4)"],
    );
    refused(with(image.clone(), json!({"num_attention_heads": 8})), &["num_attention_heads", "8", "null"]);
    refused(with(image.clone(), json!({"attention_head_dim": "eight"})), &["attention_head_dim", "\"eight\""]);
    refused(with(image.clone(), json!({"layers_per_block": [2, 2]})), &["layers_per_block", "[2,2]"]);
    refused(with(image.clone(), json!({"only_cross_attention": [true, false]})), &["only_cross_attention"]);
    refused(
        with(image.clone(), json!({"transformer_layers_per_block": [1, [1, 2], 1, 1]})),
        &["transformer_layers_per_block", "reverse_transformer_layers_per_block"],
    );
    // A null head count where an attention needs one (diffusers fails there too).
    refused(
        with(image.clone(), json!({"attention_head_dim": [8, null, 8, 8]})),
        &["attention_head_dim", "down_blocks.1.attentions.0"],
    );
    // ... but accepted at a level without attention (neither its down nor its up block reads it).
    let no_attention_first = json!({
        "attention_head_dim": [null, 8, 8, 8],
        "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"],
    });
    let layout = parse(&with(image.clone(), no_attention_first)).unwrap().dual_layout().unwrap();
    assert!(layout.down[0].is_empty() && layout.up[3].is_empty());
}

#[test]
fn what_this_crate_cannot_build_is_refused_by_key_value_and_support() {
    let image = full_config("image_unet");
    refused(
        with(image.clone(), json!({"class_embed_type": "timestep"})),
        &["class_embed_type", "\"timestep\"", "supported: null"],
    );
    refused(with(image.clone(), json!({"attention_type": "gated"})), &["attention_type", "\"gated\"", "\"default\""]);
    refused(
        with(image.clone(), json!({"cross_attention_dim": [768, 768, 1024, 1024]})),
        &["cross_attention_dim", "[768,768,1024,1024]", "one context width"],
    );
    refused(with(image.clone(), json!({"mid_block_type": null})), &["mid_block_type", "UNetMidBlock2DCrossAttn"]);
    refused(
        with(
            image.clone(),
            json!({"down_block_types": ["SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]}),
        ),
        &["down_block_types", "SimpleCrossAttnDownBlock2D", "CrossAttnDownBlock2D and DownBlock2D"],
    );
    refused(with(image.clone(), json!({"attention_head_dim": 400})), &["attention_head_dim", "400 heads", "1 to 320"]);
    refused(with(image.clone(), json!({"resnet_time_scale_shift": "scale_shift"})), &["resnet_time_scale_shift"]);
    // Accepted and without effect on the model: values diffusers ignores for these blocks.
    for accepted in [
        json!({"upcast_attention": true}),
        json!({"dropout": 0.1, "resnet_skip_time_act": true, "cross_attention_norm": "group_norm"}),
        json!({"cross_attention_dim": [768, 768, 768, 768], "only_cross_attention": [false, false, false, false]}),
        json!({"down_block_types": ["UNetResCrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"]}),
    ] {
        let config = parse(&with(image.clone(), accepted.clone())).unwrap_or_else(|e| panic!("{accepted}: {e}"));
        let base = parse(&image).unwrap();
        assert_eq!(DualUNet::manifest(&config).unwrap(), DualUNet::manifest(&base).unwrap(), "{accepted}");
        assert_eq!(config.dual_layout().unwrap(), base.dual_layout().unwrap(), "{accepted}");
    }
}

#[test]
fn a_text_unet_whose_heads_differ_per_block_is_read_per_block() {
    // shi-labs' text U-Net with per-block heads (8 at every level, written as a list) fits the image
    // U-Net, and other head counts are kept for the text transformers only.
    let dir = tempfile::tempdir().unwrap();
    let image = fixtures().join("full/image_unet/config.json");
    let write = |name: &str, value: Value| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, value.to_string()).unwrap();
        path
    };
    let same = write("same.json", with(full_config("text_unet"), json!({"attention_head_dim": [8, 8, 8, 8]})));
    let (config, _) = UNetConfig::read_dual(&image, Some(&same)).unwrap();
    let int = UNetConfig::read_dual(&image, Some(&fixtures().join("full/text_unet/config.json"))).unwrap().0;
    assert_eq!(config.dual_layout().unwrap(), int.dual_layout().unwrap());
    let other = write("other.json", with(full_config("text_unet"), json!({"attention_head_dim": [4, 8, 16, 16]})));
    let layout = UNetConfig::read_dual(&image, Some(&other)).unwrap().0.dual_layout().unwrap();
    assert_eq!((layout.down[0][0][0].heads, layout.down[0][0][1].heads), (8, 4));
    assert_eq!((layout.mid[0].heads, layout.mid[1].heads), (8, 16));
    let wrong = write("wrong.json", with(full_config("text_unet"), json!({"attention_head_dim": [8, 8]})));
    let err = UNetConfig::read_dual(&image, Some(&wrong)).unwrap_err().to_string();
    assert!(err.contains("text U-Net") && err.contains("attention_head_dim") && err.contains("wrong.json"), "{err}");
}
