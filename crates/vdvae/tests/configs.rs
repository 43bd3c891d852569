//! Any valid configuration builds and runs: custom widths (zero-padding in the encoder, channel
//! slicing at mix-ins), resolutions without `bias_xs`, 1x1-only blocks.

use tch::{Device, Kind, Tensor};
use vdvae::{PosteriorDraw, SeededNoise, Vdvae, VdvaeConfig, WeightInit};

fn small(enc: &str, dec: &str, widths: &str, no_bias_above: i64) -> VdvaeConfig {
    VdvaeConfig {
        width: 16,
        zdim: 4,
        bottleneck_multiple: 0.25,
        enc_blocks: enc.into(),
        dec_blocks: dec.into(),
        image_size: 16,
        num_mixtures: 2,
        no_bias_above,
        custom_width_str: widths.into(),
        normalisation: vdvae::Normalisation::IMAGENET64,
    }
}

#[test]
fn varied_valid_configs_build_and_run_end_to_end() {
    let configs = [
        small("16x2,16d2,8x2,8d2,4x2,4d4,1x2", "1x2,4m1,4x1,8m4,8x2,16m8,16x2", "", 64),
        small("16x1,16d2,8x1,8d2,4x1,4d4,1x1", "1x1,4m1,8m4,16m8,16x1", "8:24,4:24,1:32", 64),
        small("16x1,16d2,8,8d4,2x2,2d2,1", "1,2m1,2x2,8m2,16m8", "", 2),
        small("16,16d16,1x3", "1x3,16m1,16", "", 1),
    ];
    for config in configs {
        config.validate().unwrap();
        let model = Vdvae::new(&config, Device::Cpu, WeightInit::Reference { seed: 1 }).unwrap();
        let mut built = model.parameter_shapes();
        let mut described = config.parameter_shapes().unwrap();
        built.sort();
        described.sort();
        assert_eq!(built, described, "{config:?}");

        let x = Tensor::randn([3, 16, 16, 3], (Kind::Float, Device::Cpu));
        let acts = model.encoder_activations(&x).unwrap();
        let n = model.n_decoder_blocks();
        let pass = model.posterior_pass(&acts, n, PosteriorDraw::Sample, &mut SeededNoise::new(0, 3), true).unwrap();
        let px_z = pass.px_z.unwrap();
        assert_eq!(px_z.size(), vec![3, 16, 16, 16]);
        assert!(bool::try_from(px_z.isfinite().all()).unwrap());
        let given = &pass.z[..1];
        let mut noise = SeededNoise::new(1, 3);
        let px = model.generate(3, given, 0.5, &mut noise).unwrap();
        let img = model.sample_output(&px, vdvae::OutputDraw::Sample, &mut noise).unwrap();
        assert_eq!((img.size(), img.kind()), (vec![3, 16, 16, 3], Kind::Uint8), "{config:?}");
    }
}
