//! Pixel-level image handling shared by the metrics: libtorch's plain bilinear resize (float, as
//! torchvision's tensor `Resize`), conversion to float and scikit-image's grey conversion.
//! Pillow-exact resizing of the uint8 images is the `pil-resample` crate's.

use image::RgbImage;

use crate::MetricsError;

/// scikit-image `rgb2gray` weights (ITU-R BT.709 luma): Y = 0.2125 R + 0.7154 G + 0.0721 B.
pub const RGB_TO_GRAY: [f64; 3] = [0.2125, 0.7154, 0.0721];

/// A float RGB image in [0, 1], row-major, channels last (like `np.array(img) / 255`).
#[derive(Debug, Clone, PartialEq)]
pub struct RgbF64 {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height * width * 3` values, RGB interleaved.
    pub data: Vec<f64>,
}

/// A float grey image, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayF64 {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height * width` values.
    pub data: Vec<f64>,
}

impl GrayF64 {
    /// scikit-image `rgb2gray(np.array(img) / 255)` straight from 8-bit RGB.
    pub fn from_rgb8(image: &RgbImage) -> Self {
        GrayF64 {
            width: image.width() as usize,
            height: image.height() as usize,
            data: image
                .as_raw()
                .chunks_exact(3)
                .map(|p| {
                    (f64::from(p[0]) / 255.0) * RGB_TO_GRAY[0]
                        + (f64::from(p[1]) / 255.0) * RGB_TO_GRAY[1]
                        + (f64::from(p[2]) / 255.0) * RGB_TO_GRAY[2]
                })
                .collect(),
        }
    }
}

impl RgbF64 {
    /// `np.array(img) / 255.0`.
    pub fn from_rgb8(image: &RgbImage) -> Self {
        RgbF64 {
            width: image.width() as usize,
            height: image.height() as usize,
            data: image.as_raw().iter().map(|&v| f64::from(v) / 255.0).collect(),
        }
    }

    /// scikit-image `rgb2gray`: the weighted channel sum, without clipping.
    pub fn to_gray(&self) -> GrayF64 {
        GrayF64 {
            width: self.width,
            height: self.height,
            data: self
                .data
                .chunks_exact(3)
                .map(|p| p[0] * RGB_TO_GRAY[0] + p[1] * RGB_TO_GRAY[1] + p[2] * RGB_TO_GRAY[2])
                .collect(),
        }
    }

    /// Resizes with libtorch's bilinear interpolation without antialiasing (`align_corners=False`),
    /// in float32 as torchvision's tensor `Resize(antialias=False)` does, then clamps to [0, 1]
    /// (MindEye clamps reconstructions at load).
    pub fn resize_bilinear_torch(&self, width: usize, height: usize) -> Result<RgbF64, MetricsError> {
        if width == 0 || height == 0 || self.width == 0 || self.height == 0 {
            return Err(MetricsError::Invalid {
                what: "resize".into(),
                message: format!("cannot resize {}x{} to {width}x{height}", self.width, self.height),
            });
        }
        if (width, height) == (self.width, self.height) {
            return Ok(self.clone());
        }
        let data: Vec<f32> = self.data.iter().map(|&v| v as f32).collect();
        let tensor =
            tch::Tensor::from_slice(&data).view([1, self.height as i64, self.width as i64, 3]).permute([0, 3, 1, 2]);
        let resized = tch::no_grad(|| {
            tensor
                .f_upsample_bilinear2d([height as i64, width as i64], false, None, None)
                .and_then(|t| t.f_clamp(0.0, 1.0))
                .and_then(|t| t.f_permute([0, 2, 3, 1]))
                .and_then(|t| t.f_contiguous())
        })?;
        let out: Vec<f32> = Vec::<f32>::try_from(resized.flatten(0, -1))?;
        Ok(RgbF64 { width, height, data: out.into_iter().map(f64::from).collect() })
    }
}
