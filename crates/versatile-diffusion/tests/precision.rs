//! Reduced precision: the U-Net with bf16 weights and activations (the CPU stand-in for the f16/bf16
//! CUDA path) stays close to diffusers' f32 output, and the fused and explicit attention agree.

mod common;

use common::{cases, relative_error, tiny_folder};
use tch::{Device, Kind};

use versatile_diffusion::{AttentionKernel, DualMix, DualUNet, UNetRun, VdWeights, WeightSource};

fn unet(kind: Kind) -> DualUNet {
    let weights = VdWeights::from_diffusers_folder(&tiny_folder()).unwrap();
    let source = WeightSource::from_state_dict(weights.unet, "tiny", common::device(), kind);
    let unet = DualUNet::new(&weights.unet_config, &source).unwrap();
    source.finish("dual U-Net").unwrap();
    unet
}

#[test]
fn reduced_precision_unet_stays_close_to_the_f32_reference() {
    // f16 convolutions are a CUDA feature; on the CPU bf16 stands in for both.
    let kinds: &[Kind] =
        if common::device() == Device::Cpu { &[Kind::BFloat16] } else { &[Kind::Half, Kind::BFloat16] };
    for &kind in kinds {
        check_kind(kind);
    }
}

fn check_kind(kind: Kind) {
    let unet = unet(kind);
    let cases = cases();
    for kernel in [AttentionKernel::Fused, AttentionKernel::Explicit] {
        let run = UNetRun { mix: DualMix { text_weight: 0.4, ..DualMix::default() }, attention: kernel };
        let out = unet.forward(&cases["unet_sample"], 721.0, &cases["unet_context"], &run).unwrap();
        assert_eq!(out.kind(), kind);
        let e = relative_error(&out, &cases["unet_out_w4"]);
        assert!(e < 5e-2, "{kind:?} {kernel:?}: relative error {e}");
    }
}
