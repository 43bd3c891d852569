//! The NSD experimental design (`nsd_expdesign.mat`) and the reference's trial -> image mapping
//! and train/test split.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{NsdError, Result};
use crate::mat::{MatClass, MatFile, write_mat};

/// The three variables of `nsd_expdesign.mat` the pipeline uses. Values are kept 1-based, as
/// MATLAB stores them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpDesign {
    /// For each trial (all sessions, in order), the index (1-based) of the subject's image.
    pub masterordering: Vec<usize>,
    /// `subjectim[s][m - 1]` is the 73k id (1-based) of image `m` for subject `s + 1`.
    pub subjectim: Vec<Vec<usize>>,
    /// The 73k ids (1-based) of the shared images (read but, as in the reference, not used).
    pub sharedix: Vec<usize>,
}

/// Which half of the reference split a stimulus belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Split {
    Train,
    Test,
}

/// One stimulus of a subject: its 0-based NSD id and the global trial indices that showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stimulus {
    pub nsd_id: usize,
    pub trials: Vec<usize>,
}

/// The reference's split: stimuli in order of first appearance, per half, and for each trial its
/// half and row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitPlan {
    pub train: Vec<Stimulus>,
    pub test: Vec<Stimulus>,
    /// For each trial, `(half, row in that half)`.
    pub trial_slot: Vec<(Split, usize)>,
}

fn to_index(v: f64, path: &Path, name: &str, at: usize) -> Result<usize> {
    if v.fract() != 0.0 || !(1.0..=1.0e9).contains(&v) {
        return Err(NsdError::format(path, format!("{name}[{at}] = {v}, expected a positive integer (1-based index)")));
    }
    Ok(v as usize)
}

impl SplitPlan {
    /// The same split with one training row per training trial (MindEye2's regime: regressions
    /// trained on single trials) instead of one per image: the training stimuli become one entry per
    /// trial, in trial order, each with its one trial (an image seen three times is three rows); the
    /// test half is unchanged (its repetitions stay averaged).
    pub fn with_single_training_trials(self) -> SplitPlan {
        let mut train = Vec::new();
        let trial_slot = self
            .trial_slot
            .iter()
            .enumerate()
            .map(|(t, &(half, row))| match half {
                Split::Test => (half, row),
                Split::Train => {
                    train.push(Stimulus { nsd_id: self.train[row].nsd_id, trials: vec![t] });
                    (half, train.len() - 1)
                }
            })
            .collect();
        SplitPlan { train, test: self.test, trial_slot }
    }
}

impl ExpDesign {
    /// Reads `nsd_expdesign.mat`.
    pub fn read(path: &Path) -> Result<Self> {
        let mat = MatFile::read(path)?;
        Self::from_mat(&mat, path)
    }

    /// Extracts the design from a parsed MAT-file (`path` names it in errors).
    pub fn from_mat(mat: &MatFile, path: &Path) -> Result<Self> {
        let (_, mo) = mat.numeric("masterordering", path)?;
        let masterordering =
            mo.iter().enumerate().map(|(i, &v)| to_index(v, path, "masterordering", i)).collect::<Result<_>>()?;
        let (dims, si) = mat.numeric("subjectim", path)?;
        if dims.len() != 2 {
            return Err(NsdError::format(path, format!("subjectim has dims {dims:?}, expected (subjects, images)")));
        }
        let (rows, cols) = (dims[0], dims[1]);
        let mut subjectim = vec![Vec::with_capacity(cols); rows];
        for c in 0..cols {
            for (r, row) in subjectim.iter_mut().enumerate() {
                row.push(to_index(si[r + rows * c], path, "subjectim", r + rows * c)?);
            }
        }
        let sharedix = match mat.numeric("sharedix", path) {
            Ok((_, s)) => {
                s.iter().enumerate().map(|(i, &v)| to_index(v, path, "sharedix", i)).collect::<Result<_>>()?
            }
            Err(_) => Vec::new(),
        };
        Ok(Self { masterordering, subjectim, sharedix })
    }

    /// Writes the design as a MATLAB v5 file (`masterordering` 1 x n, `subjectim` subjects x
    /// images, `sharedix` 1 x k; int32 so that scipy's loadmat gives integer arrays, which the
    /// reference indexes with; compressed).
    pub fn write(&self, path: &Path) -> Result<()> {
        let rows = self.subjectim.len();
        let cols = self.subjectim.first().map_or(0, Vec::len);
        if self.subjectim.iter().any(|r| r.len() != cols) {
            return Err(NsdError::Shape { message: "subjectim rows differ in length".into() });
        }
        let mo: Vec<f64> = self.masterordering.iter().map(|&v| v as f64).collect();
        let mut si = vec![0.0; rows * cols];
        for (r, row) in self.subjectim.iter().enumerate() {
            for (c, &v) in row.iter().enumerate() {
                si[r + rows * c] = v as f64;
            }
        }
        let sh: Vec<f64> = self.sharedix.iter().map(|&v| v as f64).collect();
        write_mat(
            path,
            &[
                ("masterordering", MatClass::Int32, &[1, mo.len()], &mo),
                ("sharedix", MatClass::Int32, &[1, sh.len()], &sh),
                ("subjectim", MatClass::Int32, &[rows, cols], &si),
            ],
        )
    }

    /// The 0-based NSD id shown on each of the first `n_trials` trials to `subject` (1-based),
    /// with `n_images` the size of the stimulus set (73000 for NSD) for the range check.
    pub fn trial_images(&self, subject: u8, n_trials: usize, n_images: usize) -> Result<Vec<(usize, usize)>> {
        let s = subject as usize;
        let row = self.subjectim.get(s.wrapping_sub(1)).ok_or_else(|| NsdError::OutOfRange {
            message: format!("subject {subject}: subjectim has {} subjects", self.subjectim.len()),
        })?;
        if n_trials > self.masterordering.len() {
            return Err(NsdError::OutOfRange {
                message: format!("{n_trials} trials requested, masterordering has {}", self.masterordering.len()),
            });
        }
        self.masterordering[..n_trials]
            .iter()
            .enumerate()
            .map(|(t, &m)| {
                let id = *row.get(m - 1).ok_or_else(|| NsdError::OutOfRange {
                    message: format!("trial {t}: masterordering value {m} > {} subject images", row.len()),
                })?;
                if id > n_images {
                    return Err(NsdError::OutOfRange {
                        message: format!("trial {t}: image id {id} (1-based) > {n_images} stimuli"),
                    });
                }
                Ok((m, id - 1))
            })
            .collect()
    }

    /// The reference's split of `subject`'s first `n_trials` trials: images with
    /// `masterordering <= test_threshold` (1000 in NSD: the shared images) are test, the rest train;
    /// each half lists its images in order of first appearance with their (sorted) trials.
    pub fn split(&self, subject: u8, n_trials: usize, n_images: usize, test_threshold: usize) -> Result<SplitPlan> {
        let pairs = self.trial_images(subject, n_trials, n_images)?;
        let mut plan = SplitPlan { train: Vec::new(), test: Vec::new(), trial_slot: Vec::with_capacity(n_trials) };
        let mut index: HashMap<(Split, usize), usize> = HashMap::new();
        for (t, (m, id)) in pairs.into_iter().enumerate() {
            let half = if m > test_threshold { Split::Train } else { Split::Test };
            let list = match half {
                Split::Train => &mut plan.train,
                Split::Test => &mut plan.test,
            };
            let row = *index.entry((half, id)).or_insert_with(|| {
                list.push(Stimulus { nsd_id: id, trials: Vec::new() });
                list.len() - 1
            });
            list[row].trials.push(t);
            plan.trial_slot.push((half, row));
        }
        Ok(plan)
    }
}
