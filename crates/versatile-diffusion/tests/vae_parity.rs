//! AutoencoderKL encode (posterior mean and log-variance) and decode against diffusers, loading
//! the fixture's VAE file that uses the legacy attention names.

mod common;

use common::{assert_close, cases, tiny_model};

#[test]
fn encode_matches_diffusers_posterior() {
    let model = tiny_model();
    let cases = cases();
    let posterior = model.vae.encode(&cases["vae_image"]).unwrap();
    assert_close("vae mean", &posterior.mean, &cases["vae_mean"], 1e-4);
    assert_close("vae logvar", &posterior.logvar, &cases["vae_logvar"], 1e-4);
}

#[test]
fn decode_matches_diffusers() {
    let model = tiny_model();
    let cases = cases();
    let decoded = model.vae.decode(&cases["vae_z"]).unwrap();
    assert_close("vae decode", &decoded, &cases["vae_decoded"], 1e-4);
}

#[test]
fn odd_image_size_is_rejected_with_the_shape() {
    let model = tiny_model();
    let bad = tch::Tensor::zeros([1, 3, 30, 30], (tch::Kind::Float, tch::Device::Cpu));
    let err = model.vae.encode(&bad).err().expect("30 is not a multiple of 4");
    assert!(err.to_string().contains("[1, 3, 30, 30]"), "{err}");
}
