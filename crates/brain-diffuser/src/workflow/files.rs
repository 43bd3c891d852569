//! Atomic writes and reads of the run folder's file types.

use std::path::Path;

use image::{ImageEncoder, RgbImage};
use ndarray::Array2;

use super::WorkflowError;

/// Writes `img` as a PNG, atomically.
pub fn save_png(path: &Path, img: &RgbImage) -> Result<(), WorkflowError> {
    nsd_io::write_atomic(path, |w| {
        image::codecs::png::PngEncoder::new(w)
            .write_image(img.as_raw(), img.width(), img.height(), image::ExtendedColorType::Rgb8)
            .map_err(|e| nsd_io::NsdError::Io { path: path.to_path_buf(), source: std::io::Error::other(e) })
    })?;
    Ok(())
}

/// Reads an image file as 8-bit RGB.
pub fn load_png(path: &Path) -> Result<RgbImage, WorkflowError> {
    let img = image::open(path).map_err(|e| WorkflowError::File { path: path.to_owned(), message: e.to_string() })?;
    Ok(img.to_rgb8())
}

/// Writes an f32 matrix as `.npy`, atomically.
pub fn save_npy(path: &Path, array: &Array2<f32>) -> Result<(), WorkflowError> {
    Ok(nsd_io::subject::save_npy(path, array)?)
}

/// Reads an f32 matrix from `.npy`.
pub fn load_npy(path: &Path) -> Result<Array2<f32>, WorkflowError> {
    Ok(nsd_io::subject::load_npy(path)?)
}

/// Writes text, atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), WorkflowError> {
    nsd_io::write_atomic(path, |w| {
        w.write_all(text.as_bytes()).map_err(|e| nsd_io::NsdError::Io { path: path.to_path_buf(), source: e })
    })?;
    Ok(())
}
