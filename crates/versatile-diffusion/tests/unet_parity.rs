//! The dual U-Net against diffusers' `UNet2DConditionModel` after `_convert_to_dual_attention`,
//! at the tiny configuration of the fixture, for text weights 0, 0.4 and 1.

mod common;

use common::{assert_close, cases, cases_json, relative_error, tiny_folder};
use tch::Kind;
use versatile_diffusion::{AttentionKernel, DualMix, DualUNet, UNetRun, VdWeights, WeightSource};

fn tiny_unet() -> DualUNet {
    let weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let source = WeightSource::from_state_dict(weights.unet, "tiny", common::device(), Kind::Float);
    let unet = DualUNet::new(&weights.unet_config, &source).unwrap();
    source.finish("dual U-Net").unwrap();
    unet
}

#[test]
fn dual_unet_matches_diffusers_for_each_text_weight() {
    let unet = tiny_unet();
    let cases = cases();
    let meta = cases_json();
    let timestep = meta["unet"]["timestep"].as_f64().unwrap();
    let (x, ctx) = (&cases["unet_sample"], &cases["unet_context"]);
    for (w, key) in [(0.0, "unet_out_w0"), (0.4, "unet_out_w4"), (1.0, "unet_out_w10")] {
        for kernel in [AttentionKernel::Fused, AttentionKernel::Explicit] {
            let run = UNetRun { mix: DualMix { text_weight: w, ..DualMix::default() }, attention: kernel };
            let out = unet.forward(x, timestep, ctx, &run).unwrap();
            assert_close(&format!("{key} {kernel:?}"), &out, &cases[key], 1e-4);
        }
    }
}

#[test]
fn text_weight_changes_the_output() {
    // The three expected outputs must differ, or the parity test above could not catch a swap of
    // the text and vision transformers.
    let cases = cases();
    assert!(relative_error(&cases["unet_out_w0"], &cases["unet_out_w10"]) > 1e-2);
    assert!(relative_error(&cases["unet_out_w4"], &cases["unet_out_w0"]) > 1e-4);
    assert!(relative_error(&cases["unet_out_w4"], &cases["unet_out_w10"]) > 1e-2);
}

#[test]
fn wrong_context_shape_is_an_error_naming_the_split() {
    let unet = tiny_unet();
    let cases = cases();
    let short = cases["unet_context"].narrow(1, 0, 300);
    let err = unet.forward(&cases["unet_sample"], 721.0, &short, &UNetRun::default()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("77 text") && text.contains("257 vision"), "{text}");
}
