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
//! regressions block by block, and weights only ever exist in column blocks.

mod error;
mod files;
mod layout;

pub mod average;
pub mod evaluate;
pub mod extract;
pub mod features;
pub mod fit;
pub mod generate;
pub mod integrity;
pub mod loaders;
mod overlap;
pub mod prepare;
pub mod report;
pub mod report_page;
pub mod roi;
pub mod steps;
pub mod weights;

pub use error::WorkflowError;
pub use files::{load_npy, load_png, save_npy, save_png, write_text};
pub use layout::{DataSplit, OutputDir, RunDir, SubjectDir, Variant};

/// A throttled [`Progress`] for `len` units of work (see [`Progress::new`]).
pub fn progress_bar(len: usize, message: &str) -> Progress {
    Progress::new(len, message)
}

/// How often a [`Progress`] without a terminal writes a line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Cadence {
    /// After every unit: for slow units (an image, a chunk of images, a session).
    EveryUnit,
    /// After every [`LOG_FRACTION`] of the work or [`LOG_INTERVAL`], whichever comes first, and
    /// at the end: for fast units (regression columns, ground-truth images).
    Throttled,
}

/// The share of the work between two log lines of a throttled [`Progress`].
const LOG_FRACTION: f64 = 0.05;
/// The longest time between two log lines of a throttled [`Progress`] that advances.
const LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// Progress of `len` units of work: an indicatif bar on stderr when stderr is a terminal,
/// otherwise `k of N` lines logged at `info` (a log file gets positions, not bar redraws).
///
/// Clones share the count, so a clone can advance it from another thread (the regressions read
/// their targets on a reader thread).
#[derive(Clone)]
pub struct Progress {
    bar: indicatif::ProgressBar,
    shared: std::sync::Arc<ProgressLog>,
}

struct ProgressLog {
    label: String,
    len: u64,
    /// Whether lines are logged (stderr is not a terminal).
    logging: bool,
    cadence: Cadence,
    started: std::time::Instant,
    state: std::sync::Mutex<LogState>,
}

struct LogState {
    done: u64,
    logged_done: u64,
    logged_at: std::time::Instant,
}

impl Progress {
    /// Progress of fast units: without a terminal, a line every 5 % or 10 s and at the end.
    pub fn new(len: usize, label: &str) -> Self {
        Self::with_cadence(len, label, Cadence::Throttled, std::io::IsTerminal::is_terminal(&std::io::stderr()))
    }

    /// Progress of slow units (images, chunks of images): without a terminal, a line per unit.
    pub fn each(len: usize, label: &str) -> Self {
        Self::with_cadence(len, label, Cadence::EveryUnit, std::io::IsTerminal::is_terminal(&std::io::stderr()))
    }

    fn with_cadence(len: usize, label: &str, cadence: Cadence, terminal: bool) -> Self {
        let len = len as u64;
        let bar = if terminal {
            let bar = indicatif::ProgressBar::new(len);
            let style = indicatif::ProgressStyle::with_template(
                "{msg:<28} [{elapsed_precise}] {bar:36.cyan/blue} {pos:>6}/{len:6} eta {eta}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_message(label.to_owned());
            bar
        } else {
            indicatif::ProgressBar::hidden()
        };
        let now = std::time::Instant::now();
        let shared = ProgressLog {
            label: label.to_owned(),
            len,
            logging: !terminal,
            cadence,
            started: now,
            state: std::sync::Mutex::new(LogState { done: 0, logged_done: 0, logged_at: now }),
        };
        Self { bar, shared: std::sync::Arc::new(shared) }
    }

    /// The number of units of work.
    pub fn len(&self) -> u64 {
        self.shared.len
    }

    /// Whether there is no work at all.
    pub fn is_empty(&self) -> bool {
        self.shared.len == 0
    }

    /// Advances by `n` units; without a terminal, logs `label: k of N` when a line is due.
    pub fn inc(&self, n: u64) {
        self.advance_to(None, n, |done, len| format!("{}: {done} of {len}", self.shared.label));
    }

    /// Advances by `n` units; without a terminal, logs `line(k, N)` when a line is due (for
    /// positions the count of this call does not show, such as an image's index in the whole set).
    pub fn inc_with(&self, n: u64, line: impl FnOnce(u64, u64) -> String) {
        self.advance_to(None, n, line);
    }

    /// Advances by `n` units found done (outputs of an earlier run), logging no line of its own:
    /// the next line shows them in its count.
    pub fn skip(&self, n: u64) {
        self.bar.inc(n);
        let mut state = self.shared.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.done = state.done.saturating_add(n);
        state.logged_done = state.logged_done.saturating_add(n);
    }

    /// Moves to `position` units done; without a terminal, logs `label: k of N` when a line is due.
    pub fn set_position(&self, position: u64) {
        self.advance_to(Some(position), 0, |done, len| format!("{}: {done} of {len}", self.shared.label));
    }

    /// Moves the count; returns the line logged, if one was due.
    fn advance_to(&self, position: Option<u64>, n: u64, line: impl FnOnce(u64, u64) -> String) -> Option<String> {
        match position {
            Some(p) => self.bar.set_position(p),
            None => self.bar.inc(n),
        }
        let log = &*self.shared;
        if !log.logging {
            return None;
        }
        // A poisoned lock only means another thread panicked mid-update: the counts stay usable.
        let mut state = log.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.done = position.unwrap_or_else(|| state.done.saturating_add(n));
        let now = std::time::Instant::now();
        if !line_due(log.cadence, log.len, &state, now) {
            return None;
        }
        let (done, len) = (state.done, log.len);
        state.logged_done = done;
        state.logged_at = now;
        drop(state);
        let elapsed = now.duration_since(log.started).as_secs_f64();
        let timing = match done {
            0 => format!("{elapsed:.1} s"),
            _ if done >= len => format!("{elapsed:.1} s"),
            _ => format!("{elapsed:.1} s, eta {:.0} s", elapsed / done as f64 * (len - done) as f64),
        };
        let line = format!("{} [{timing}]", line(done, len));
        tracing::info!("{line}");
        Some(line)
    }

    /// Removes the bar (a terminal) once the work is done.
    pub fn finish_and_clear(&self) {
        self.bar.finish_and_clear();
    }
}

/// Whether a log line is due after the count moved to `state.done`.
fn line_due(cadence: Cadence, len: u64, state: &LogState, now: std::time::Instant) -> bool {
    if state.done == state.logged_done || len == 0 {
        return false;
    }
    if cadence == Cadence::EveryUnit || (state.done >= len && state.logged_done < len) {
        return true;
    }
    let step = ((len as f64 * LOG_FRACTION).ceil() as u64).max(1);
    state.done >= state.logged_done.saturating_add(step) || now.duration_since(state.logged_at) >= LOG_INTERVAL
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

/// Checks that an earlier step's folder `dir` was made with the settings the configuration now
/// implies (`expected`): a step never builds on outputs made with other settings (say, alphas edited
/// in `<run>/config.toml` after `fit`). A folder without a record is [`WorkflowError::Missing`]
/// (`what`, made by `step`); another record is [`WorkflowError::Stale`] with both shown.
pub fn require_settings(
    dir: &std::path::Path,
    expected: &str,
    what: &str,
    step: &'static str,
) -> Result<(), WorkflowError> {
    let recorded = integrity::read_record(dir, what, step)?;
    if recorded == expected {
        Ok(())
    } else {
        Err(WorkflowError::Stale { dir: dir.to_owned(), recorded, now: expected.to_owned() })
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

    #[test]
    fn progress_without_a_terminal_logs_every_twentieth_of_fast_work_and_every_slow_unit() {
        let fast = Progress::with_cadence(100, "columns", Cadence::Throttled, false);
        let lines: Vec<String> =
            (0..100).filter_map(|_| fast.advance_to(None, 1, |k, n| format!("{k} of {n}"))).collect();
        let expected: Vec<String> = (1..=20).map(|j| format!("{} of 100", 5 * j)).collect();
        let positions: Vec<String> = lines.iter().map(|l| l.split(" [").next().unwrap().to_owned()).collect();
        assert_eq!(positions, expected);
        let slow = Progress::with_cadence(7, "images", Cadence::EveryUnit, false);
        let lines: Vec<String> =
            (0..7).filter_map(|_| slow.advance_to(None, 1, |k, n| format!("{k} of {n}"))).collect();
        assert_eq!(lines.len(), 7);
        assert!(lines[6].starts_with("7 of 7 ["), "{}", lines[6]);
        assert!(slow.advance_to(None, 0, |k, n| format!("{k} of {n}")).is_none(), "no line without progress");
        let drawn = Progress::with_cadence(7, "images", Cadence::EveryUnit, true);
        assert!(drawn.advance_to(None, 1, |k, n| format!("{k} of {n}")).is_none(), "a terminal gets the bar only");
    }

    #[test]
    fn throttled_progress_logs_after_ten_seconds_without_a_line() {
        let start = std::time::Instant::now();
        let state = LogState { done: 1, logged_done: 0, logged_at: start };
        assert!(!line_due(Cadence::Throttled, 1000, &state, start));
        assert!(line_due(Cadence::Throttled, 1000, &state, start + LOG_INTERVAL));
        let idle = LogState { done: 0, logged_done: 0, logged_at: start };
        assert!(!line_due(Cadence::Throttled, 1000, &idle, start + LOG_INTERVAL), "nothing new to say");
        let end = LogState { done: 1000, logged_done: 999, logged_at: start };
        assert!(line_due(Cadence::Throttled, 1000, &end, start), "the last unit is always logged");
    }
}
