//! Shared set-up of the workspace-level tests: a small synthetic NSD, subject 1 assembled from it.

use nsd_io::SubjectData;
use nsd_io::synth::{SynthNsd, write_synthetic_nsd};

mod synth;

/// A synthetic NSD written to a temporary folder and its subject 1, divided by the beta scale and
/// z-scored with training statistics as the reference's regression scripts do. 4 sessions of 150
/// trials over 200 images (40 shared test images), 16 features, per-trial noise 0.5 of a
/// unit-variance signal. The folder lives as long as the returned guard.
pub fn synthetic_subject(seed: u64) -> (tempfile::TempDir, SynthNsd, SubjectData) {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let config = synth::small_synth_config(seed);
    let nsd = write_synthetic_nsd(dir.path(), &config).expect("the synthetic NSD is written");
    let mut subject = nsd_io::assemble_subject(&nsd.layout, 1, &config.assembly_options()).expect("subject 1");
    subject.divide(f64::from(config.beta_scale));
    subject.zscore_with_train_stats().expect("train statistics");
    (dir, nsd, subject)
}
