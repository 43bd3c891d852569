//! `prepare`: NSD files -> the subject cache (z-scored fMRI, image ids, captions), the ROI patterns
//! over nsdgeneral voxels, and the test stimuli as PNGs.

use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::{Array1, Array2};
use nsd_io::{AssemblyOptions, NsdLayout, SubjectData, VoxelMask, nsdgeneral_mask, read_volume};
use tracing::{info, warn};

use super::integrity::{check_npy, check_png, ids_fingerprint, reusable};
use super::{SubjectDir, WorkflowError, check_settings, progress_bar, save_npy, save_png, write_text};
use crate::config::Config;
use crate::roi::{ROI_NAMES, RoiLabels, roi_patterns};

/// Reads images of the NSD stimulus set by 0-based id (from a reader thread: `Sync`).
pub trait StimulusSource: Sync {
    /// The images `ids`, in order.
    fn images(&self, ids: &[usize]) -> Result<Vec<RgbImage>, WorkflowError>;
}

impl StimulusSource for nsd_io::hdf5::StimulusBrick {
    fn images(&self, ids: &[usize]) -> Result<Vec<RgbImage>, WorkflowError> {
        let brick = self.read(ids)?;
        let (_, h, w, _) = brick.dim();
        brick
            .outer_iter()
            .zip(ids)
            .map(|(pixels, id)| {
                RgbImage::from_raw(w as u32, h as u32, pixels.iter().copied().collect())
                    .ok_or_else(|| WorkflowError::Invalid(format!("stimulus {id}: {w}x{h} image of the wrong size")))
            })
            .collect()
    }
}

/// The assembly options of `config` (sessions, trials, test threshold, stimulus count).
pub fn assembly_options(config: &Config) -> AssemblyOptions {
    AssemblyOptions {
        sessions: config.data.sessions,
        trials_per_session: config.data.trials_per_session,
        test_threshold: config.data.test_threshold,
        n_images: config.data.n_images,
        train_trials: config.data.train_trials,
        ..AssemblyOptions::default()
    }
}

/// Opens the NSD stimulus file of `nsd` and checks that its images are of the configured size
/// (`data.stimulus_size`): a configuration written for other stimuli is refused, naming the key,
/// the file and both sizes.
pub fn open_stimuli(nsd: &NsdLayout, config: &Config) -> Result<nsd_io::hdf5::StimulusBrick, WorkflowError> {
    let path = nsd.stimuli();
    let brick = nsd_io::hdf5::StimulusBrick::open(&path)?;
    let (h, w) = brick.image_size();
    let side = config.data.stimulus_size as usize;
    if (h, w) != (side, side) {
        return Err(WorkflowError::Invalid(format!(
            "configuration key 'data.stimulus_size' is {side} ({side}x{side} stimuli), but {} holds {w}x{h} \
             stimuli: set data.stimulus_size = {w} or point --nsd at the stimuli the configuration is for",
            path.display()
        )));
    }
    Ok(brick)
}

/// What [`prepare_subject`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub train_images: usize,
    pub test_images: usize,
    pub voxels: usize,
    /// Whether the 13 ROI patterns were written (the ROI volumes are optional).
    pub roi_patterns: bool,
    /// Whether the subject cache was already there, whole (nothing had to be rebuilt).
    pub reused: bool,
}

/// The settings record of the subject cache (`fmri/settings.toml`).
pub fn cache_settings(config: &Config, subject: u8) -> String {
    let d = &config.data;
    format!(
        "subject = {}\nsessions = {}\ntrials_per_session = {}\ntest_threshold = {}\nn_images = {}\n\
         fmri_divisor = {}\ntrain_trials = {:?}\nzscore = \"train statistics\"\n",
        subject, d.sessions, d.trials_per_session, d.test_threshold, d.n_images, d.fmri_divisor, d.train_trials
    )
}

/// The settings record of the ROI patterns (`fmri/roi_patterns.settings.toml`, next to
/// `roi_patterns.npy`: they depend on `roi.visual_rois`, the rest of `fmri/` does not).
pub fn roi_patterns_record(dir: &SubjectDir) -> PathBuf {
    dir.fmri().join("roi_patterns.settings.toml")
}

/// What state the subject cache in `fmri/` is in.
enum CacheState {
    /// Every file is there and whole.
    Whole(SubjectData),
    /// The fMRI and ids are whole; the caption files are missing or damaged (the problem).
    Captions(SubjectData, String),
    /// Nothing is there (a first run).
    Absent,
    /// An fMRI or id file is missing or damaged (the problem): the subject is assembled again.
    Damaged(String),
}

/// Reads the subject cache, checking every file prepare writes: the fMRI matrices and ids (their
/// shapes agreeing) and the caption rows (one per id).
fn cache_state(fmri: &Path, subject: u8) -> CacheState {
    let paths = SubjectData::cache_paths(fmri, subject);
    let [trf, tef, tri, tei, trc, tec] = &paths;
    if paths.iter().all(|p| !p.exists()) {
        return CacheState::Absent;
    }
    if let Some(missing) = paths[..4].iter().find(|p| !p.exists()) {
        return CacheState::Damaged(format!("{} is missing", missing.display()));
    }
    let ids = |p: &Path| -> Result<Vec<usize>, String> {
        let a: ndarray::Array1<i64> = nsd_io::subject::load_npy(p).map_err(|e| e.to_string())?;
        a.iter().map(|&v| usize::try_from(v).map_err(|_| format!("{}: negative id {v}", p.display()))).collect()
    };
    let read = || -> Result<SubjectData, String> {
        let train_fmri: Array2<f32> = nsd_io::subject::load_npy(trf).map_err(|e| e.to_string())?;
        let test_fmri: Array2<f32> = nsd_io::subject::load_npy(tef).map_err(|e| e.to_string())?;
        let (train_ids, test_ids) = (ids(tri)?, ids(tei)?);
        for (path, rows, n) in [(trf, train_fmri.nrows(), train_ids.len()), (tef, test_fmri.nrows(), test_ids.len())] {
            if rows != n {
                return Err(format!("{}: {rows} rows for {n} ids", path.display()));
            }
        }
        if train_fmri.ncols() != test_fmri.ncols() {
            return Err(format!(
                "{}: {} voxels, the training fMRI {}",
                tef.display(),
                test_fmri.ncols(),
                train_fmri.ncols()
            ));
        }
        Ok(SubjectData {
            subject,
            train_fmri,
            test_fmri,
            train_ids,
            test_ids,
            train_captions: Default::default(),
            test_captions: Default::default(),
        })
    };
    let mut data = match read() {
        Ok(data) => data,
        Err(problem) => return CacheState::Damaged(problem),
    };
    let captions = |p: &Path, n: usize| -> Result<nsd_io::CaptionTable, String> {
        if !p.exists() {
            return Err(format!("{} is missing", p.display()));
        }
        let table = nsd_io::CaptionTable::read_npy(p).map_err(|e| e.to_string())?;
        if table.rows.len() != n {
            return Err(format!("{}: {} caption rows for {n} images", p.display(), table.rows.len()));
        }
        Ok(table)
    };
    match (captions(trc, data.train_ids.len()), captions(tec, data.test_ids.len())) {
        (Ok(train), Ok(test)) => {
            data.train_captions = train;
            data.test_captions = test;
            CacheState::Whole(data)
        }
        (Err(problem), _) | (_, Err(problem)) => CacheState::Captions(data, problem),
    }
}

/// Rebuilds the caption files of the cache from the NSD caption array and the cached ids.
fn rebuild_captions(
    nsd: &NsdLayout,
    config: &Config,
    data: &mut SubjectData,
    fmri: &Path,
) -> Result<(), WorkflowError> {
    let table = nsd_io::CaptionTable::read_npy(&nsd.captions)?;
    if table.rows.len() != config.data.n_images {
        return Err(WorkflowError::Invalid(format!(
            "{}: {} caption rows, expected one per stimulus (data.n_images = {})",
            nsd.captions.display(),
            table.rows.len(),
            config.data.n_images
        )));
    }
    data.train_captions = table.select(&data.train_ids)?;
    data.test_captions = table.select(&data.test_ids)?;
    let [.., trc, tec] = SubjectData::cache_paths(fmri, data.subject);
    data.train_captions.write_npy(&trc)?;
    data.test_captions.write_npy(&tec)?;
    Ok(())
}

/// Assembles one subject as the reference does (trial averaging, division by
/// `data.fmri_divisor`, z-scoring with training statistics), saves it under `dir.fmri()`, writes
/// the ROI patterns when the ROI volumes exist, and the test stimuli as `ground_truth/NNNN.png`.
/// Each part is skipped when its outputs exist and are whole: every cached file is read and
/// checked (shapes, one caption row per id, PNGs that decode); what is missing or damaged is
/// rebuilt (captions alone from the NSD caption array when only they are).
pub fn prepare_subject(
    nsd: &NsdLayout,
    stimuli: &dyn StimulusSource,
    config: &Config,
    dir: &SubjectDir,
) -> Result<Prepared, WorkflowError> {
    let d = &config.data;
    let fmri_dir = dir.fmri();
    check_settings(&fmri_dir, &cache_settings(config, dir.subject))?;
    let (subject, reused) = match cache_state(&fmri_dir, dir.subject) {
        CacheState::Whole(subject) => {
            info!(subject = dir.subject, "subject cache present and whole, reusing it");
            (subject, true)
        }
        CacheState::Captions(mut subject, problem) => {
            warn!(subject = dir.subject, %problem, captions = %nsd.captions.display(), "rebuilding the caption cache");
            rebuild_captions(nsd, config, &mut subject, &fmri_dir)?;
            (subject, false)
        }
        state => {
            if let CacheState::Damaged(problem) = &state {
                warn!(subject = dir.subject, %problem, "subject cache incomplete or damaged: assembling it again");
            }
            info!(subject = dir.subject, sessions = d.sessions, "assembling the subject from NSD");
            let bar = super::Progress::each(d.sessions, &format!("subj{:02} sessions", dir.subject));
            let mut subject =
                nsd_io::assemble_subject_with_progress(nsd, dir.subject, &assembly_options(config), &mut |done, _| {
                    bar.set_position(done as u64)
                })?;
            bar.finish_and_clear();
            subject.divide(f64::from(d.fmri_divisor));
            subject.zscore_with_train_stats()?;
            subject.save(&fmri_dir)?;
            (subject, false)
        }
    };
    let roi_patterns = write_roi_patterns(nsd, config, dir, subject.n_voxels())?;
    write_ground_truth(stimuli, &subject.test_ids, config, dir)?;
    Ok(Prepared {
        train_images: subject.train_ids.len(),
        test_images: subject.test_ids.len(),
        voxels: subject.n_voxels(),
        roi_patterns,
        reused,
    })
}

/// The labels of an ROI volume at the nsdgeneral voxels.
fn labels(nsd: &NsdLayout, subject: u8, mask: &VoxelMask, name: &str) -> Result<Array1<f32>, WorkflowError> {
    let volume = read_volume(&nsd.roi(subject, name))?;
    Ok(mask.select(&volume)?.into_iter().map(|v| v as f32).collect())
}

/// Writes the ROI patterns (13 x voxels) unless they are there and whole. Their record
/// ([`roi_patterns_record`]) holds `roi.visual_rois`: patterns made with another source are refused.
fn write_roi_patterns(
    nsd: &NsdLayout,
    config: &Config,
    dir: &SubjectDir,
    voxels: usize,
) -> Result<bool, WorkflowError> {
    let path = dir.roi_patterns();
    let record = roi_patterns_record(dir);
    let settings =
        format!("visual_rois = {:?}\nrois = {}\nvoxels = {voxels}\n", config.roi.visual_rois, ROI_NAMES.len());
    let whole = reusable(&path, |p| check_npy(p, "<f4", &[Some(ROI_NAMES.len()), Some(voxels)]).map(|_| ()));
    if whole {
        match std::fs::read_to_string(&record) {
            Ok(recorded) if recorded == settings => return Ok(true),
            Ok(recorded) => return Err(WorkflowError::Stale { dir: path, recorded, now: settings }),
            // Patterns from before records were kept: recorded now.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                write_text(&record, &settings)?;
                return Ok(true);
            }
            Err(e) => return Err(WorkflowError::io(&record, e)),
        }
    }
    let names = ["floc-faces", "floc-words", "floc-places", "floc-bodies", "prf-visualrois", "prf-eccrois"];
    if let Some(missing) = names.iter().map(|n| nsd.roi(dir.subject, n)).find(|p| !p.exists()) {
        warn!(file = %missing.display(), "ROI volume missing: no ROI patterns (the roi and weights-roi steps need them)");
        return Ok(false);
    }
    let mask = nsdgeneral_mask(nsd, dir.subject)?;
    let v: Vec<Array1<f32>> = names.iter().map(|n| labels(nsd, dir.subject, &mask, n)).collect::<Result<_, _>>()?;
    let labels = RoiLabels {
        floc_faces: v[0].view(),
        floc_words: v[1].view(),
        floc_places: v[2].view(),
        floc_bodies: v[3].view(),
        prf_visualrois: v[4].view(),
        prf_eccrois: v[5].view(),
    };
    let patterns = roi_patterns(&labels, config.roi.visual_rois).map_err(WorkflowError::Invalid)?;
    write_text(&record, &settings)?;
    save_npy(&path, &patterns)?;
    Ok(true)
}

/// The name of test image `index` in every image folder.
pub fn image_name(index: usize) -> String {
    format!("{index:04}.png")
}

/// Writes the test stimuli as PNGs (those not there or damaged). The folder's record holds the
/// test ids and the stimulus size: images of other stimuli are refused.
fn write_ground_truth(
    stimuli: &dyn StimulusSource,
    test_ids: &[usize],
    config: &Config,
    dir: &SubjectDir,
) -> Result<(), WorkflowError> {
    let folder = dir.ground_truth();
    let settings =
        format!("test_ids = \"{}\"\nstimulus_size = {}\n", ids_fingerprint(test_ids), config.data.stimulus_size);
    check_settings(&folder, &settings)?;
    let todo: Vec<usize> = (0..test_ids.len()).filter(|&i| !reusable(&folder.join(image_name(i)), check_png)).collect();
    if todo.is_empty() {
        return Ok(());
    }
    let bar = progress_bar(todo.len(), "ground-truth images");
    for batch in todo.chunks(32) {
        let ids: Vec<usize> = batch.iter().map(|&i| test_ids[i]).collect();
        for (&i, img) in batch.iter().zip(stimuli.images(&ids)?) {
            save_png(&folder.join(image_name(i)), &img)?;
            bar.inc(1);
        }
    }
    bar.finish_and_clear();
    Ok(())
}
