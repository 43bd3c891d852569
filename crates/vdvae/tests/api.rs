//! The plain-data API: images in, flat latents out, and back, seeded.

mod common;

use common::{TINY_REFERENCE, TINY_WEIGHTS, fixture};
use image::RgbImage;
use tch::{Device, Kind, Tensor};
use vdvae::parity::{Fixture, compare};
use vdvae::{DecodeOptions, EncodeOptions, Latents, OutputDraw, PosteriorDraw, SeededNoise, Vdvae};

fn tiny() -> (Vdvae, Fixture) {
    let fx = Fixture::read(&fixture(TINY_REFERENCE)).unwrap();
    let model = Vdvae::load(&fixture(TINY_WEIGHTS), &fx.config, Device::Cpu).unwrap();
    (model, fx)
}

fn fixture_images(fx: &Fixture) -> Vec<RgbImage> {
    let t = fx.tensor("input.image_u8").unwrap();
    (0..t.size()[0])
        .map(|i| RgbImage::from_raw(16, 16, Vec::<u8>::try_from(t.get(i).reshape([-1])).unwrap()).unwrap())
        .collect()
}

/// Images of assorted sizes: the fixture's two, and resized variants.
fn images(fx: &Fixture) -> Vec<RgbImage> {
    let base = fixture_images(fx);
    vec![
        base[0].clone(),
        base[1].clone(),
        image::imageops::resize(&base[0], 37, 53, image::imageops::FilterType::Nearest),
    ]
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

/// Number of pixel values that differ by more than one level.
fn differing_levels(a: &[RgbImage], b: &[RgbImage]) -> usize {
    a.iter().zip(b).flat_map(|(x, y)| x.as_raw().iter().zip(y.as_raw())).filter(|(p, q)| p.abs_diff(**q) > 1).count()
}

#[test]
fn preprocessing_of_model_size_images_equals_the_reference_input() {
    let (model, fx) = tiny();
    let x = model.preprocess(&fixture_images(&fx)).unwrap();
    // Exact on any CPU: integer resizing (identity here), then u8 -> f32, + shift, * scale, each
    // one correctly rounded IEEE operation as in the reference.
    assert_eq!(compare("input.x", &x, fx.tensor("input.x").unwrap()).unwrap().max_rel, 0.0);
}

#[test]
fn encode_gives_reference_layout_rows_reproducibly_whatever_the_batching() {
    let (model, fx) = tiny();
    let imgs = images(&fx);
    let opts = EncodeOptions { n_blocks: 4, seed: 11, batch_size: 3, ..Default::default() };
    let a = model.encode(&imgs, &opts).unwrap();
    // Blocks 0-1 at 1x1 and 2-3 at 4x4, zdim 4.
    assert_eq!((a.n_images(), a.dim), (3, 2 * 4 + 2 * 4 * 16));
    // Same draws per image whatever the batching; convolutions of different batch sizes may
    // round differently (other kernels), hence a float tolerance.
    let b = model.encode(&imgs, &EncodeOptions { batch_size: 1, ..opts }).unwrap();
    assert!(max_abs_diff(&a.values, &b.values) < 1e-5, "{}", max_abs_diff(&a.values, &b.values));
    // Exact: the same call in the same process runs the same kernels on the same inputs.
    assert_eq!(a, model.encode(&imgs, &opts).unwrap());
    let c = model.encode(&imgs, &EncodeOptions { seed: 12, ..opts }).unwrap();
    assert!(max_abs_diff(&a.values, &c.values) > 0.1);
}

#[test]
fn encoding_only_the_first_blocks_equals_the_full_posterior_pass() {
    let (model, fx) = tiny();
    let x = model.preprocess(&fixture_images(&fx)).unwrap();
    let acts = model.encoder_activations(&x).unwrap();
    let full = model.posterior_pass(&acts, 10, PosteriorDraw::Sample, &mut SeededNoise::new(5, 2), false).unwrap();
    let short = model.posterior_pass(&acts, 4, PosteriorDraw::Sample, &mut SeededNoise::new(5, 2), false).unwrap();
    assert!(full.px_z.is_some() && short.px_z.is_none());
    for i in 0..4 {
        // Exact: blocks 0-3 run the same kernels on the same inputs in both passes (same process).
        assert!(full.z[i].equal(&short.z[i]), "block {i}");
    }
    // The flat vector holds block 2 of image 1 at offset 8 + 64, C order.
    let layout = model.config().latent_layout(4).unwrap();
    let flat = layout.flatten(&short.z).unwrap();
    let row1 = &flat[layout.dim()..];
    let z2 = Vec::<f32>::try_from(short.z[2].get(1).reshape([-1])).unwrap();
    // Exact: flattening copies values.
    assert_eq!(&row1[layout.offset(2)..layout.offset(2) + 64], &z2[..]);
    assert_eq!(layout.offset(2), 8);
}

#[test]
fn posterior_mean_is_deterministic_and_is_the_noise_free_sample() {
    let (model, fx) = tiny();
    let imgs = images(&fx);
    let mean = |seed| {
        model
            .encode(&imgs, &EncodeOptions { n_blocks: 4, posterior: PosteriorDraw::Mean, seed, batch_size: 2 })
            .unwrap()
    };
    // Exact here and below: same process, same kernels, same inputs; mean + std * 0 is the mean.
    assert_eq!(mean(1), mean(2));
    // With all-zero posterior noise the sample equals the mean.
    let x = model.preprocess(&imgs[..2]).unwrap();
    let acts = model.encoder_activations(&x).unwrap();
    let mut zero = vdvae::ExplicitNoise::new();
    for i in 0..4 {
        let shape = if i < 2 { [2, 4, 1, 1] } else { [2, 4, 4, 4] };
        zero = zero.with_gaussian(vdvae::GaussianDraw::Posterior, i, Tensor::zeros(shape, (Kind::Float, Device::Cpu)));
    }
    let pass = model.posterior_pass(&acts, 4, PosteriorDraw::Sample, &mut zero, false).unwrap();
    let flat = model.config().latent_layout(4).unwrap().flatten(&pass.z).unwrap();
    assert_eq!(&flat[..], &mean(3).values[..2 * 136]);
}

#[test]
fn decode_round_trip_is_seeded_and_sized() {
    let (model, fx) = tiny();
    let latents = model.encode(&images(&fx), &EncodeOptions { n_blocks: 4, ..Default::default() }).unwrap();
    let opts = DecodeOptions { seed: 4, ..Default::default() };
    let a = model.decode(&latents, &opts).unwrap();
    assert_eq!(a.len(), 3);
    assert!(a.iter().all(|img| img.dimensions() == (16, 16)));
    // Exact: same process, same seed, same batches, hence the same kernels on the same values.
    assert_eq!(a, model.decode(&latents, &opts).unwrap());
    assert_eq!(a, model.decode_rows(&latents.values, 4, &opts).unwrap());
    assert!(model.decode_rows(&latents.values[1..], 4, &opts).unwrap_err().to_string().contains("whole rows"));
    // Batching changes no draw; allow a rare level flip from batch-size-dependent rounding.
    assert!(differing_levels(&a, &model.decode(&latents, &DecodeOptions { batch_size: 1, ..opts }).unwrap()) <= 3);
    assert!(differing_levels(&a, &model.decode(&latents, &DecodeOptions { seed: 5, ..opts }).unwrap()) > 300);
    // Prior mean and output mode: no randomness left.
    let det = |seed| {
        model
            .decode(&latents, &DecodeOptions { temperature: 0.0, output: OutputDraw::Mode, seed, batch_size: 3 })
            .unwrap()
    };
    assert_eq!(det(1), det(2));
    assert_eq!(vdvae::upscale(&a[0], 512).unwrap().dimensions(), (512, 512));
}

#[test]
fn per_image_seeds_give_each_image_the_draws_of_its_own_seed() {
    let (model, fx) = tiny();
    let latents = model.encode(&images(&fx), &EncodeOptions { n_blocks: 4, ..Default::default() }).unwrap();
    let seeds = [11, 7, 2024];
    let one = DecodeOptions { batch_size: 1, ..Default::default() };
    let each = model.decode_per_image_seeds(&latents, &one, &seeds).unwrap();
    // Image k is what decoding row k alone with seed seeds[k] gives (batch 1: the same kernels).
    for (k, &seed) in seeds.iter().enumerate() {
        let row = Latents { n_blocks: 4, dim: latents.dim, values: latents.row(k).to_vec() };
        assert_eq!(each[k], model.decode(&row, &DecodeOptions { seed, ..one }).unwrap()[0], "image {k}");
    }
    // In one batch of 3 the draws are the same (up to a rare batch-size rounding flip), and an
    // image does not change when another image's seed does.
    let batched = model.decode_per_image_seeds(&latents, &DecodeOptions { batch_size: 3, ..one }, &seeds).unwrap();
    assert!(differing_levels(&each, &batched) <= 3);
    let other = model.decode_per_image_seeds(&latents, &one, &[11, 8, 2024]).unwrap();
    assert_eq!((&other[0], &other[2]), (&each[0], &each[2]));
    assert!(differing_levels(&other[1..2], &each[1..2]) > 100);
    let err = model.decode_per_image_seeds(&latents, &one, &seeds[..2]).unwrap_err().to_string();
    assert!(err.contains("2 seeds for 3 images"), "{err}");
}

#[test]
fn decode_refuses_latents_of_the_wrong_size() {
    let (model, _) = tiny();
    let bad = Latents { n_blocks: 4, dim: 100, values: vec![0.0; 200] };
    assert!(model.decode(&bad, &DecodeOptions::default()).unwrap_err().to_string().contains("dimension"));
    let too_many = Latents { n_blocks: 11, dim: 1, values: vec![0.0; 1] };
    assert!(model.decode(&too_many, &DecodeOptions::default()).is_err());
    assert!(
        model
            .decode(
                &Latents { n_blocks: 4, dim: 136, values: vec![0.0; 136] },
                &DecodeOptions { temperature: -1.0, ..Default::default() }
            )
            .is_err()
    );
}

#[test]
fn double_precision_replays_close_to_the_reference() {
    let (mut model, fx) = tiny();
    model.set_precision(Kind::Double).unwrap();
    let report = vdvae::parity::replay(&model, &fx).unwrap();
    let worst = report.worst().unwrap();
    assert!(worst.max_rel < 1e-4, "{worst:?}");
    assert!(model.set_precision(Kind::Int).is_err());
}

#[test]
fn bfloat16_runs_and_stays_near_the_reference() {
    let (mut model, fx) = tiny();
    model.set_precision(Kind::BFloat16).unwrap();
    let report = vdvae::parity::replay(&model, &fx).unwrap();
    for o in report.outputs.iter().filter(|o| o.name.ends_with("px_z") || o.name.starts_with("encoder")) {
        println!("bf16 {o:?}");
        // bf16 keeps 8 mantissa bits: a few 1e-3 relative after ten blocks, far below O(1).
        assert!(o.max_rel < 0.05, "{o:?}");
    }
    assert!(report.worst().unwrap().max_rel > 1e-5, "bf16 cannot be exact");
}
