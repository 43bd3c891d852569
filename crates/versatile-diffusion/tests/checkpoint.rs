//! Loading: the diffusers folders (zip-format `.bin`, legacy VAE names, dual assembly), the merged
//! safetensors file in f32 and f16, and key problems reported by name.

mod common;

use common::{assert_close, cases, tiny_folder};
use tch::{Device, Kind, Tensor};
use versatile_diffusion::checkpoint::{assemble_dual_unet, load_state_dict, rename_legacy_vae_keys};
use versatile_diffusion::{
    AutoencoderKl, DiffusionError, DualMix, KeyProblem, UNetRun, VdWeights, VersatileDiffusion, WeightSource,
};

#[test]
fn dual_assembly_takes_image_blocks_as_0_and_text_blocks_as_1() {
    let folder = tiny_folder();
    let image = load_state_dict(&folder.join("image_unet/diffusion_pytorch_model.bin")).unwrap();
    let text = load_state_dict(&folder.join("text_unet/diffusion_pytorch_model.bin")).unwrap();
    let key = "down_blocks.0.attentions.1.transformer_blocks.0.attn2.to_k.weight";
    let (image_k, text_k) = (image[key].shallow_clone(), text[key].shallow_clone());
    let resnet = "up_blocks.1.resnets.2.conv1.weight";
    let image_resnet = image[resnet].shallow_clone();
    let dual = assemble_dual_unet(image, Some(text)).unwrap();
    // Exact: assembling renames and moves tensors, no arithmetic.
    assert!(dual["down_blocks.0.attentions.1.transformers.0.transformer_blocks.0.attn2.to_k.weight"].equal(&image_k));
    assert!(dual["down_blocks.0.attentions.1.transformers.1.transformer_blocks.0.attn2.to_k.weight"].equal(&text_k));
    assert!(dual[resnet].equal(&image_resnet), "resnets come from the image U-Net");
    assert!(!dual.contains_key(key), "no undecorated attention keys remain");
    // Already-dual input passes through unchanged.
    let again = assemble_dual_unet(dual, None).unwrap();
    assert!(again.contains_key("mid_block.attentions.0.transformers.1.proj_in.weight"));
}

#[test]
fn legacy_and_current_vae_names_both_load() {
    let path = tiny_folder().join("vae/diffusion_pytorch_model.bin");
    let legacy = load_state_dict(&path).unwrap();
    assert!(legacy.contains_key("encoder.mid_block.attentions.0.query.weight"), "the fixture uses legacy names");
    let current = rename_legacy_vae_keys(legacy);
    assert!(current.contains_key("decoder.mid_block.attentions.0.to_out.0.bias"));
    let config = versatile_diffusion::VaeConfig::from_file(&tiny_folder().join("vae/config.json")).unwrap();
    let twice = rename_legacy_vae_keys(current);
    let source = WeightSource::from_state_dict(twice, "vae", common::device(), Kind::Float);
    let vae = AutoencoderKl::new(&config, &source).unwrap();
    source.finish("AutoencoderKL").unwrap();
    assert_close("vae decode", &vae.decode(&cases()["vae_z"]).unwrap(), &cases()["vae_decoded"], 1e-4);
}

fn unet_output(model: &VersatileDiffusion) -> Tensor {
    let cases = cases();
    let run = UNetRun { mix: DualMix { text_weight: 0.4, ..DualMix::default() }, ..UNetRun::default() };
    model.unet.forward(&cases["unet_sample"], 721.0, &cases["unet_context"], &run).unwrap()
}

#[test]
fn merged_file_round_trips_in_f32_and_loads_in_f16() {
    let dir = tempfile::tempdir().unwrap();
    let weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let f32_path = dir.path().join("vd-f32.safetensors");
    let f16_path = dir.path().join("vd-f16.safetensors");
    weights.write_merged(&f32_path, Kind::Float).unwrap();
    weights.write_merged(&f16_path, Kind::Half).unwrap();
    assert!(!dir.path().read_dir().unwrap().any(|e| e.unwrap().path().to_string_lossy().contains(".tmp-")));

    let merged = VersatileDiffusion::load(&f32_path, common::device(), Kind::Float, Kind::Float).unwrap();
    let expected = &cases()["unet_out_w4"];
    assert_close("merged f32", &unet_output(&merged), expected, 1e-4);

    // f16 storage, computed in f32: only the weight rounding differs.
    let half = VdWeights::open(&f16_path).unwrap();
    assert_eq!(half.unet.values().next().unwrap().kind(), Kind::Half);
    let half = VersatileDiffusion::from_weights(half, common::device(), Kind::Float, Kind::Float).unwrap();
    assert_close("merged f16 weights", &unet_output(&half), expected, 1e-2);

    let size = |p: &std::path::Path| std::fs::metadata(p).unwrap().len();
    assert!((size(&f16_path) as f64) < 0.6 * size(&f32_path) as f64, "f16 file is about half the f32 one");
}

fn key_problems(result: Result<VersatileDiffusion, DiffusionError>) -> Vec<KeyProblem> {
    match result {
        Err(DiffusionError::Keys { problems, .. }) => problems,
        Err(other) => panic!("expected a key error, got {other}"),
        Ok(_) => panic!("expected a key error, the model loaded"),
    }
}

#[test]
fn missing_unexpected_and_misshaped_keys_are_named() {
    let mut weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let missing = "mid_block.attentions.0.transformers.1.proj_out.bias";
    let reshaped = "conv_in.weight";
    let _ = weights.unet.remove(missing).unwrap();
    let _ = weights.unet.insert(reshaped.into(), Tensor::zeros([1, 2, 3], (Kind::Float, Device::Cpu)));
    weights.unet.insert("extra.weight".into(), Tensor::zeros([1], (Kind::Float, Device::Cpu)));
    let problems = key_problems(VersatileDiffusion::from_weights(weights, Device::Cpu, Kind::Float, Kind::Float));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.contains(&KeyProblem::Missing { name: missing.into(), expected: vec![16] }));
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, KeyProblem::Shape { name, found, .. } if name == reshaped && found == &[1, 2, 3]))
    );
    assert!(problems.contains(&KeyProblem::Unexpected { name: "extra.weight".into() }));
}

#[test]
fn error_message_names_the_key_and_the_file() {
    let mut weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let _ = weights.vae.remove("decoder.conv_out.bias").unwrap();
    let err = VersatileDiffusion::from_weights(weights, Device::Cpu, Kind::Float, Kind::Float).err().unwrap();
    let text = err.to_string();
    assert!(text.contains("decoder.conv_out.bias") && text.contains("tiny") && text.contains("VAE"), "{text}");
}

#[test]
fn text_unet_with_missing_attention_position_is_refused() {
    let folder = tiny_folder();
    let image = load_state_dict(&folder.join("image_unet/diffusion_pytorch_model.bin")).unwrap();
    let text = load_state_dict(&folder.join("text_unet/diffusion_pytorch_model.bin")).unwrap();
    let text = text.into_iter().filter(|(k, _)| !k.starts_with("up_blocks.2.attentions.1.")).collect();
    let err = assemble_dual_unet(image, Some(text)).err().unwrap().to_string();
    assert!(err.contains("up_blocks.2.attentions.1"), "{err}");
}

#[test]
fn missing_weight_file_is_an_io_error_with_the_path() {
    let err = load_state_dict(std::path::Path::new("/nonexistent/diffusion_pytorch_model.bin")).err().unwrap();
    assert!(err.to_string().contains("/nonexistent/diffusion_pytorch_model.bin"));
}

/// The `vd-convert` binary: cargo's, or `VD_CONVERT_BIN` for carried test binaries.
fn vd_convert() -> std::process::Command {
    let bin = std::env::var_os("VD_CONVERT_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_vd-convert").into());
    std::process::Command::new(bin)
}

#[test]
fn vd_convert_command_writes_a_loadable_merged_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny-f16.safetensors");
    let status = vd_convert().arg(tiny_folder()).arg(&out).args(["--precision", "f16"]).status().unwrap();
    assert!(status.success());
    let weights = VdWeights::open(&out).unwrap();
    assert!(weights.unet.values().all(|t| t.kind() == Kind::Half));
    assert_eq!(weights.unet_config.block_out_channels, vec![8, 16, 16]);
    assert_eq!(weights.scheduler_config, versatile_diffusion::SchedulerConfig::versatile_diffusion());
    // A folder without weights fails with a message naming the folder.
    let empty = dir.path().join("empty");
    std::fs::create_dir_all(empty.join("image_unet")).unwrap();
    let output = vd_convert().arg(&empty).arg(&out).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
}
