//! The small synthetic NSD of the workspace-level tests.

use nsd_io::synth::SynthConfig;

/// 4 sessions of 150 trials over 200 images per subject (40 shared test images), 16x16 stimuli,
/// 16 features, per-trial noise 0.5 of a unit-variance signal.
pub fn small_synth_config(seed: u64) -> SynthConfig {
    SynthConfig {
        seed,
        sessions: 4,
        trials_per_session: 150,
        volume: [14, 14, 10],
        n_images: 600,
        images_per_subject: 200,
        n_shared: 40,
        image_size: 16,
        n_features: 16,
        noise_sd: 0.5,
        ..SynthConfig::default()
    }
}
