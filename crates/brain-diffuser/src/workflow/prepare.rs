//! `prepare`: NSD files -> the subject cache (z-scored fMRI, image ids, captions), the ROI patterns
//! over nsdgeneral voxels, and the test stimuli as PNGs.

use image::RgbImage;
use ndarray::Array1;
use nsd_io::{AssemblyOptions, NsdLayout, SubjectData, VoxelMask, nsdgeneral_mask, read_volume};
use tracing::{info, warn};

use super::{SubjectDir, WorkflowError, check_settings, progress_bar, save_npy, save_png};
use crate::config::Config;
use crate::roi::{RoiLabels, roi_patterns};

/// Reads images of the NSD stimulus set by 0-based id.
pub trait StimulusSource {
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
        ..AssemblyOptions::default()
    }
}

/// What [`prepare_subject`] found or made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prepared {
    pub train_images: usize,
    pub test_images: usize,
    pub voxels: usize,
    /// Whether the 13 ROI patterns were written (the ROI volumes are optional).
    pub roi_patterns: bool,
    /// Whether the subject cache was already there.
    pub reused: bool,
}

/// Assembles one subject as the reference does (trial averaging, division by
/// `data.fmri_divisor`, z-scoring with training statistics), saves it under `dir.fmri()`, writes
/// the ROI patterns when the ROI volumes exist, and the test stimuli as `ground_truth/NNNN.png`.
/// Each part is skipped when its outputs exist.
pub fn prepare_subject(
    nsd: &NsdLayout,
    stimuli: &dyn StimulusSource,
    config: &Config,
    dir: &SubjectDir,
) -> Result<Prepared, WorkflowError> {
    let d = &config.data;
    let settings = format!(
        "subject = {}\nsessions = {}\ntrials_per_session = {}\ntest_threshold = {}\nn_images = {}\n\
         fmri_divisor = {}\nzscore = \"train statistics\"\n",
        dir.subject, d.sessions, d.trials_per_session, d.test_threshold, d.n_images, d.fmri_divisor
    );
    let fmri_dir = dir.fmri();
    check_settings(&fmri_dir, &settings)?;
    let cached = SubjectData::cache_paths(&fmri_dir, dir.subject)[..4].iter().all(|p| p.exists());
    let subject = if cached {
        info!(subject = dir.subject, "subject cache present, reusing it");
        SubjectData::load(&fmri_dir, dir.subject)?
    } else {
        info!(subject = dir.subject, sessions = d.sessions, "assembling the subject from NSD");
        let bar = progress_bar(d.sessions, &format!("subj{:02} sessions", dir.subject));
        let mut subject =
            nsd_io::assemble_subject_with_progress(nsd, dir.subject, &assembly_options(config), &mut |done, _| {
                bar.set_position(done as u64)
            })?;
        bar.finish_and_clear();
        subject.divide(f64::from(d.fmri_divisor));
        subject.zscore_with_train_stats()?;
        subject.save(&fmri_dir)?;
        subject
    };
    let roi_patterns = write_roi_patterns(nsd, config, dir)?;
    write_ground_truth(stimuli, &subject.test_ids, dir)?;
    Ok(Prepared {
        train_images: subject.train_ids.len(),
        test_images: subject.test_ids.len(),
        voxels: subject.n_voxels(),
        roi_patterns,
        reused: cached,
    })
}

/// The labels of an ROI volume at the nsdgeneral voxels.
fn labels(nsd: &NsdLayout, subject: u8, mask: &VoxelMask, name: &str) -> Result<Array1<f32>, WorkflowError> {
    let volume = read_volume(&nsd.roi(subject, name))?;
    Ok(mask.select(&volume)?.into_iter().map(|v| v as f32).collect())
}

fn write_roi_patterns(nsd: &NsdLayout, config: &Config, dir: &SubjectDir) -> Result<bool, WorkflowError> {
    let path = dir.roi_patterns();
    if path.exists() {
        return Ok(true);
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
    save_npy(&path, &patterns)?;
    Ok(true)
}

/// The name of test image `index` in every image folder.
pub fn image_name(index: usize) -> String {
    format!("{index:04}.png")
}

fn write_ground_truth(stimuli: &dyn StimulusSource, test_ids: &[usize], dir: &SubjectDir) -> Result<(), WorkflowError> {
    let folder = dir.ground_truth();
    let todo: Vec<usize> = (0..test_ids.len()).filter(|&i| !folder.join(image_name(i)).exists()).collect();
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
