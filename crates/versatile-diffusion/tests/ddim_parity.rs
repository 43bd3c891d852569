//! DDIM against diffusers' `DDIMScheduler` with VD's scheduler config, and the img2img start rules
//! against closed-form values.

mod common;

use common::{assert_close, cases, tiny_folder};
use tch::{Kind, Tensor};
use versatile_diffusion::{DdimScheduler, NoiseTimestep, SchedulerConfig};

fn scheduler() -> DdimScheduler {
    let config = SchedulerConfig::from_file(&tiny_folder().join("scheduler").join("scheduler_config.json")).unwrap();
    assert_eq!(config, SchedulerConfig::versatile_diffusion());
    DdimScheduler::new(config).unwrap()
}

#[test]
fn alphas_cumprod_equal_diffusers_to_float_rounding() {
    // Same f32 libtorch ops as diffusers, but not bit-identical across CPUs: linspace computes
    // `start + step * i`, which libtorch's AVX2 and AVX-512 kernels evaluate as one fused
    // multiply-add (one rounding) and its baseline kernels (ATEN_CPU_CAPABILITY=default, CPUs
    // without AVX2) as a product and a sum (two). Measured: 0 on the CPU that wrote the fixture
    // and under AVX2, 1.2e-7 relative (one unit in the last place, 121 of 1000 values) with the
    // baseline kernels. 1e-6 leaves 8x; a linear instead of the scaled-linear schedule, or a
    // shift by one timestep, is off by more than 1e-3.
    let ours = Tensor::from_slice(scheduler().alphas_cumprod());
    let reference = cases()["ddim_alphas_cumprod"].to_device(tch::Device::Cpu);
    assert_eq!(ours.size(), reference.size());
    let (ours, reference) = (ours.to_kind(Kind::Double), reference.to_kind(Kind::Double));
    let worst = ((&ours - &reference).abs() / reference.abs()).max().double_value(&[]);
    println!("alphas_cumprod: worst relative difference {worst:e}");
    assert!(worst <= 1e-6, "alphas_cumprod differ from diffusers' by {worst:e} relative");
}

#[test]
fn timesteps_equal_diffusers() {
    let s = scheduler();
    let cases = cases();
    for (steps, key) in [(50, "ddim_timesteps_50"), (7, "ddim_timesteps_7")] {
        let ours = Tensor::from_slice(&s.timesteps(steps).unwrap());
        assert!(ours.equal(&cases[key].to_device(tch::Device::Cpu)), "{key}");
    }
    let t50 = s.timesteps(50).unwrap();
    assert_eq!((t50[0], t50[13], t50[49]), (981, 721, 1));
}

#[test]
fn single_steps_match_diffusers_with_eta_0_and_0_5() {
    let s = scheduler();
    let cases = cases();
    let (x, eps, noise) = (&cases["ddim_x"], &cases["ddim_eps"], &cases["ddim_variance_noise"]);
    for t in [981, 721, 1] {
        let ours = s.step(eps, t, x, 50, 0.0, None).unwrap();
        assert_close(&format!("step t{t} eta 0"), &ours, &cases[&format!("ddim_step_t{t}_eta0")], 1e-5);
        let ours = s.step(eps, t, x, 50, 0.5, Some(noise)).unwrap();
        assert_close(&format!("step t{t} eta 0.5"), &ours, &cases[&format!("ddim_step_t{t}_eta5")], 1e-5);
    }
    assert!(s.step(eps, 721, x, 50, 0.5, None).is_err(), "eta > 0 without noise must be refused");
}

#[test]
fn add_noise_matches_diffusers() {
    let s = scheduler();
    let cases = cases();
    let ours = s.add_noise(&cases["ddim_x"], &cases["ddim_eps"], 721).unwrap();
    assert_close("add_noise t721", &ours, &cases["ddim_add_noise_t721"], 1e-6);
}

#[test]
fn alpha_bar_matches_closed_form_float64_values() {
    // Reference values computed in float64 from the scaled-linear schedule; diffusers works in f32.
    let s = scheduler();
    for (t, expected) in [(1, 0.998296), (721, 0.0705137), (741, 0.0603556), (981, 0.0057755)] {
        let ours = s.alpha_bar(t).unwrap();
        assert!((ours - expected).abs() / expected < 1e-5, "t {t}: {ours} vs {expected}");
    }
    // set_alpha_to_one = false: the step after t = 1 lands on alpha-bar_0 = 1 - 0.00085.
    assert!((s.alpha_bar(-19).unwrap() - 0.99915).abs() < 1e-7);
}

#[test]
fn strength_0_75_runs_37_steps_from_721_with_both_noise_conventions() {
    let s = scheduler();
    let faithful = s.img2img(50, 0.75, NoiseTimestep::BrainDiffuser).unwrap();
    let consistent = s.img2img(50, 0.75, NoiseTimestep::Consistent).unwrap();
    assert_eq!(faithful.timesteps.len(), 37);
    assert_eq!((faithful.timesteps[0], *faithful.timesteps.last().unwrap()), (721, 1));
    assert_eq!(faithful.timesteps, consistent.timesteps);
    assert_eq!((faithful.noise_timestep, consistent.noise_timestep), (741, 721));
    assert!(s.img2img(50, 1.0, NoiseTimestep::BrainDiffuser).is_err());
    assert_eq!(s.img2img(50, 1.0, NoiseTimestep::Consistent).unwrap().noise_timestep, 981);
    assert!(s.img2img(50, 0.0, NoiseTimestep::Consistent).is_err());
}
