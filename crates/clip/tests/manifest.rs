//! At the ViT-L/14 configuration, the parameter names and shapes equal those of transformers'
//! CLIPModel, CLIPVisionModelWithProjection and CLIPTextModelWithProjection (manifest recorded by
//! `tools/clip/make_fixtures.py --what manifest` on the meta device). The full-size description is
//! computed from the config without allocating; at the tiny fixture configs the description is
//! checked against the variables the model really creates.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use clip::{
    ClipConfig, ClipTextModel, ClipVisionModel, TextConfig, VisionConfig, clip_model_parameter_shapes,
    text_parameter_shapes, vision_parameter_shapes,
};
use tch::{Device, Kind};

type Shapes = BTreeMap<String, Vec<i64>>;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn manifest() -> BTreeMap<String, Shapes> {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("manifest_vit_l14.json")).unwrap()).unwrap()
}

fn diff(ours: &Shapes, theirs: &Shapes) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in theirs {
        match ours.get(k) {
            None => out.push(format!("missing {k}")),
            Some(o) if o != v => out.push(format!("{k}: ours {o:?}, transformers {v:?}")),
            _ => {}
        }
    }
    out.extend(ours.keys().filter(|k| !theirs.contains_key(*k)).map(|k| format!("extra {k}")));
    out
}

#[test]
fn vit_l14_config_file_parses_to_the_preset() {
    let path = fixtures().join("vit_l14_config.json");
    assert_eq!(ClipConfig::from_file(&path).unwrap(), ClipConfig::vit_l14());
    assert_eq!(VisionConfig::from_file(&path).unwrap(), VisionConfig::vit_l14());
    assert_eq!(TextConfig::from_file(&path).unwrap(), TextConfig::vit_l14());
    assert_eq!(VisionConfig::vit_l14().num_positions(), 257);
}

#[test]
fn vit_l14_names_and_shapes_equal_transformers() {
    let m = manifest();
    let c = ClipConfig::vit_l14();
    let full = clip_model_parameter_shapes(&c);
    let d = diff(&full, &m["CLIPModel"]);
    assert!(d.is_empty(), "CLIPModel: {d:#?}");
    let vision: Shapes = vision_parameter_shapes(&c.vision, 768).into_iter().collect();
    let d = diff(&vision, &m["CLIPVisionModelWithProjection"]);
    assert!(d.is_empty(), "vision: {d:#?}");
    let text: Shapes = text_parameter_shapes(&c.text, 768).into_iter().collect();
    let d = diff(&text, &m["CLIPTextModelWithProjection"]);
    assert!(d.is_empty(), "text: {d:#?}");
    let params: i64 = full.values().map(|s| s.iter().product::<i64>()).sum();
    assert_eq!(params, 427_616_513); // transformers' CLIPModel(ViT-L/14) parameter count
}

#[test]
fn built_models_create_exactly_the_described_variables() {
    for dir in ["model_tiny", "model_eos_first"] {
        let c = ClipConfig::from_file(fixtures().join(dir).join("config.json")).unwrap();
        let v = ClipVisionModel::new(&c.vision, Device::Cpu, Kind::Float).unwrap();
        let t = ClipTextModel::new(&c.text, Device::Cpu, Kind::Float).unwrap();
        let built: Shapes = v
            .var_store()
            .variables()
            .into_iter()
            .chain(t.var_store().variables())
            .map(|(k, t)| (k, t.size()))
            .collect();
        let mut described = clip_model_parameter_shapes(&c);
        described.remove("logit_scale");
        let d = diff(&built, &described);
        assert!(d.is_empty(), "{dir}: {d:#?}");
    }
}
