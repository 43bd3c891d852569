//! Replays the reference fixture produced by the original VDVAE code (tiny configuration, random
//! weights, every random draw recorded) and checks every output.

mod common;

use common::{TINY_REFERENCE, TINY_WEIGHTS, TINY_WEIGHTS_TH, fixture};
use tch::{Device, Tensor};
use vdvae::Vdvae;
use vdvae::parity::{Fixture, replay};

const TOLERANCE: f64 = 1e-5;

fn tiny_model(weights: &str) -> (Vdvae, Fixture) {
    let fx = Fixture::read(&fixture(TINY_REFERENCE)).unwrap();
    let model = Vdvae::load(&fixture(weights), &fx.config, Device::Cpu).unwrap();
    (model, fx)
}

#[test]
fn tiny_reference_replays_within_tolerance() {
    let (model, fx) = tiny_model(TINY_WEIGHTS);
    // The configuration comes from the fixture's metadata.
    assert_eq!((fx.config.width, fx.config.zdim, fx.config.num_mixtures, fx.manual_latent_blocks), (16, 4, 3, 4));
    let report = replay(&model, &fx).unwrap();
    for o in &report.outputs {
        println!("{:<20} max abs {:.3e} max rel {:.3e}", o.name, o.max_abs, o.max_rel);
        assert!(o.max_rel <= TOLERANCE, "{} differs: {o:?}", o.name);
    }
    // Every recorded output was compared: input, 4 activations, 10 x (z, kl), px_z, 2 manual px_z, params.
    assert_eq!(report.outputs.len(), 1 + 4 + 20 + 1 + 2 + 1);
    let s = report.sample;
    println!(
        "u8 sample: {} values, {} off by one at a boundary, {} other",
        s.total, s.off_by_one_at_boundary, s.other_mismatches
    );
    assert_eq!(s.total, 2 * 16 * 16 * 3);
    assert_eq!(s.other_mismatches, 0);
    assert!(report.passes(TOLERANCE));
}

#[test]
fn zip_torch_save_with_module_prefix_replays_too() {
    let (model, fx) = tiny_model(TINY_WEIGHTS_TH);
    assert!(replay(&model, &fx).unwrap().passes(TOLERANCE));
}

#[test]
fn replay_detects_a_perturbed_weight() {
    let (model, fx) = tiny_model(TINY_WEIGHTS);
    let mut vars = model.var_store().variables();
    let w = vars.get_mut("decoder.dec_blocks.7.resnet.c2.weight").unwrap();
    tch::no_grad(|| {
        let _ = w.g_add_(&(w.ones_like() * 0.1));
    });
    let report = replay(&model, &fx).unwrap();
    assert!(!report.passes(TOLERANCE));
    // Blocks before 7 are untouched; block 7 on differ.
    let err = |name: &str| report.outputs.iter().find(|o| o.name == name).unwrap().max_rel;
    assert_eq!(err("posterior.z.7"), 0.0);
    println!("z.8 {:e} px_z {:e}", err("posterior.z.8"), err("manual_t1.px_z"));
    assert!(err("posterior.z.8") > TOLERANCE && err("manual_t1.px_z") > TOLERANCE);
}

#[test]
fn fixture_reader_names_missing_tensors() {
    let fx = Fixture::read(&fixture(TINY_REFERENCE)).unwrap();
    assert!(fx.names().contains(&"posterior.eps.9"));
    assert!(fx.tensor("posterior.eps.10").unwrap_err().to_string().contains("posterior.eps.10"));
    // A file without `hps` metadata is refused with the reason.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bare.safetensors");
    Tensor::write_safetensors(&[("a", Tensor::zeros([1], (tch::Kind::Float, Device::Cpu)))], &path).unwrap();
    assert!(Fixture::read(&path).unwrap_err().to_string().contains("hps"));
}

#[test]
fn channels_last_layout_replays_within_tolerance() {
    let (mut model, fx) = tiny_model(TINY_WEIGHTS);
    model.set_channels_last(true);
    let w = &model.var_store().variables()["decoder.dec_blocks.3.prior.c2.weight"];
    assert_eq!(w.stride(), vec![36, 1, 12, 4], "weights are stored NHWC");
    let report = replay(&model, &fx).unwrap();
    let worst = report.worst().unwrap();
    println!("channels-last worst: {worst:?}; u8 {:?}", report.sample);
    assert!(report.passes(TOLERANCE), "{worst:?} {:?}", report.sample);
    model.set_channels_last(false);
    assert!(replay(&model, &fx).unwrap().passes(TOLERANCE));
}
