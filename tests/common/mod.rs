//! Shared set-up of the workspace-level tests: a small synthetic NSD, subject 1 assembled from it.

use nsd_io::SubjectData;
use nsd_io::synth::{SynthConfig, SynthNsd, write_synthetic_nsd};

/// A synthetic NSD written to a temporary folder and its subject 1, divided by the beta scale and
/// z-scored with training statistics as the reference's regression scripts do. 4 sessions of 150
/// trials over 200 images (40 shared test images), 16 features, per-trial noise 0.5 of a
/// unit-variance signal. The folder lives as long as the returned guard.
pub fn synthetic_subject(seed: u64) -> (tempfile::TempDir, SynthNsd, SubjectData) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = SynthConfig {
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
    };
    let nsd = write_synthetic_nsd(dir.path(), &config).expect("the synthetic NSD is written");
    let mut subject = nsd_io::assemble_subject(&nsd.layout, 1, &config.assembly_options()).expect("subject 1");
    subject.divide(f64::from(config.beta_scale));
    subject.zscore_with_train_stats().expect("train statistics");
    (dir, nsd, subject)
}
