//! The steps of the `brain-diffuser` command line, as library functions over a run folder.
//!
//! Every step reads what earlier steps wrote under a [`RunDir`] and writes its own outputs
//! atomically (a temporary file, then a rename), one unit at a time (a chunk of feature rows, one
//! regression, one image), so an interrupted step leaves only whole files and running it again
//! continues where it stopped. Each output folder records the settings that produced it
//! (`settings.toml`): a later run with other settings is refused rather than mixing outputs.
//!
//! Nothing here holds a whole subject's stimuli or regression weights: images are read from the
//! NSD stimulus file chunk by chunk, features are cached in row chunks and stream into the ridge
//! regressions column block by column block, and weights only ever exist in column blocks.

mod error;
mod files;
mod layout;

pub mod average;
pub mod evaluate;
pub mod extract;
pub mod features;
pub mod fit;
pub mod generate;
pub mod loaders;
pub mod prepare;
pub mod report;
pub mod roi;
pub mod steps;
pub mod weights;

pub use error::WorkflowError;
pub use files::{load_npy, load_png, save_npy, save_png, write_text};
pub use layout::{DataSplit, OutputDir, RunDir, SubjectDir, Variant};

/// A progress bar for `len` units of work, drawn on stderr when it is a terminal.
pub fn progress_bar(len: usize, message: &str) -> indicatif::ProgressBar {
    let bar = indicatif::ProgressBar::new(len as u64);
    let style = indicatif::ProgressStyle::with_template(
        "{msg:<28} [{elapsed_precise}] {bar:36.cyan/blue} {pos:>6}/{len:6} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
    bar.set_style(style);
    bar.set_message(message.to_owned());
    bar
}

/// Records the settings that produce a folder's outputs, or checks them against the record.
///
/// The first call for `dir` writes `dir/settings.toml`; later calls must pass the same `settings`,
/// otherwise the outputs already there were made differently and [`WorkflowError::Stale`] says so.
pub fn check_settings(dir: &std::path::Path, settings: &str) -> Result<(), WorkflowError> {
    let path = dir.join("settings.toml");
    match std::fs::read_to_string(&path) {
        Ok(recorded) if recorded == settings => Ok(()),
        Ok(recorded) => Err(WorkflowError::Stale { dir: dir.to_owned(), recorded, now: settings.to_owned() }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => write_text(&path, settings),
        Err(e) => Err(WorkflowError::io(&path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_recorded_once_and_other_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("regression/vdvae");
        check_settings(&out, "alpha = 50000\n").unwrap();
        assert_eq!(std::fs::read_to_string(out.join("settings.toml")).unwrap(), "alpha = 50000\n");
        check_settings(&out, "alpha = 50000\n").unwrap();
        let err = check_settings(&out, "alpha = 1\n").unwrap_err();
        assert!(matches!(err, WorkflowError::Stale { .. }), "{err}");
        let message = err.to_string();
        assert!(message.contains("alpha = 50000") && message.contains("alpha = 1"), "{message}");
    }
}
