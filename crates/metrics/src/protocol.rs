//! The two published evaluation protocols as named configurations.
//!
//! They differ in many silent knobs (see `docs/metrics.md`): resampling (Pillow's antialiased
//! filters vs libtorch bilinear without antialiasing), network input sizes, the SSIM function, and
//! which EfficientNet weights are meant. A [`Protocol`] fixes all of them and is written into every
//! report, so two numbers computed under different protocols are never mistaken for each other.

use serde::{Deserialize, Serialize};

use crate::MetricsError;
use crate::low_level::SsimParams;

/// How the pixel metrics (PixCorr, SSIM) bring a pair to a common size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum PixelResize {
    /// Brain-Diffuser: the reconstruction goes through Pillow's `resize` to the ground truth's size
    /// (bicubic, antialiased, uint8 output); the ground truth is used as is.
    PilBicubicToGroundTruth,
    /// MindEye: both images are resized to `size` x `size` with libtorch bilinear interpolation
    /// without antialiasing, in float32, clamped to [0, 1].
    TorchBilinear {
        /// Side length (425 in MindEye).
        size: usize,
    },
}

/// Which SSIM function scores the grey images. Written `"columns1d"` or `"gaussian2d"`; a
/// configuration may also say `"columns"` or `"two-d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SsimVariant {
    /// Mean over columns of a 1-D SSIM along each column (scikit-image 0.17 with
    /// `multichannel=True` on a grey image): Brain-Diffuser's published numbers.
    #[serde(alias = "columns")]
    Columns1d,
    /// The standard 2-D Gaussian SSIM (scikit-image >= 0.20): MindEye's published numbers.
    #[serde(alias = "two-d")]
    Gaussian2d,
}

/// How images are resized before a feature network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkResize {
    /// Pillow bilinear (antialiased) on the uint8 image, as torchvision's PIL `resize` (Brain-Diffuser).
    PilBilinear,
    /// libtorch bilinear without antialiasing on float images (torchvision tensor `Resize`, MindEye).
    TorchBilinear,
}

/// How a feature metric turns ground-truth and reconstruction features into one number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeatureScore {
    /// Two-way identification accuracy (higher is better, chance 0.5).
    TwoWayIdentification,
    /// Mean correlation distance 1 - r (lower is better).
    CorrelationDistance,
}

/// Extractor slot names used by the protocols; [`crate::Extractors`] is keyed by them.
pub mod slots {
    /// torchvision AlexNet.
    pub const ALEXNET: &str = "alexnet";
    /// torchvision Inception v3.
    pub const INCEPTION_V3: &str = "inception_v3";
    /// torchvision EfficientNet-B1.
    pub const EFFICIENTNET_B1: &str = "efficientnet_b1";
    /// ResNet-50 with SwAV weights.
    pub const SWAV_RESNET50: &str = "swav_resnet50";
    /// CLIP ViT-L/14 final image embedding (supplied by another crate).
    pub const CLIP: &str = "clip";
}

/// One feature-based column of the results table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeatureMetric {
    /// Column name, e.g. `"AlexNet(2)"`.
    pub column: String,
    /// Extractor slot, e.g. `"alexnet"` (see [`slots`]).
    pub extractor: String,
    /// Output of the extractor, e.g. `"features.4"`.
    pub output: String,
    /// Square input side the images are resized to.
    pub input_size: usize,
    /// How the features are scored.
    pub score: FeatureScore,
}

/// A complete evaluation protocol.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Protocol {
    /// Name written into reports.
    pub name: String,
    /// Number of test images the published numbers use (982 or 1000); other counts are allowed
    /// and reported.
    pub expected_images: usize,
    /// Pixel-metric resizing.
    pub pixel_resize: PixelResize,
    /// SSIM function.
    pub ssim: SsimVariant,
    /// SSIM constants.
    pub ssim_params: SsimParams,
    /// Resizing before feature networks.
    pub network_resize: NetworkResize,
    /// Feature columns, in report order.
    pub feature_metrics: Vec<FeatureMetric>,
    /// Weights each network is meant to carry (documentation written into reports).
    pub weights: Vec<(String, String)>,
}

fn metric(column: &str, extractor: &str, output: &str, input_size: usize, score: FeatureScore) -> FeatureMetric {
    FeatureMetric { column: column.into(), extractor: extractor.into(), output: output.into(), input_size, score }
}

impl Protocol {
    /// Brain-Diffuser's `evaluate_reconstruction.py` (982 images; every network at 224 with Pillow
    /// bilinear; PixCorr after Pillow bicubic to the ground truth's size; column-wise SSIM).
    pub fn brain_diffuser() -> Self {
        use FeatureScore::*;
        Protocol {
            name: "brain-diffuser".into(),
            expected_images: 982,
            pixel_resize: PixelResize::PilBicubicToGroundTruth,
            ssim: SsimVariant::Columns1d,
            ssim_params: SsimParams::default(),
            network_resize: NetworkResize::PilBilinear,
            feature_metrics: vec![
                metric("AlexNet(2)", slots::ALEXNET, "features.4", 224, TwoWayIdentification),
                metric("AlexNet(5)", slots::ALEXNET, "features.11", 224, TwoWayIdentification),
                metric("Inception", slots::INCEPTION_V3, "avgpool", 224, TwoWayIdentification),
                metric("CLIP", slots::CLIP, "final", 224, TwoWayIdentification),
                metric("EffNet-B", slots::EFFICIENTNET_B1, "avgpool", 224, CorrelationDistance),
                metric("SwAV", slots::SWAV_RESNET50, "avgpool", 224, CorrelationDistance),
            ],
            weights: vec![
                (slots::ALEXNET.into(), "torchvision AlexNet_Weights.IMAGENET1K_V1".into()),
                (slots::INCEPTION_V3.into(), "torchvision Inception_V3_Weights.IMAGENET1K_V1".into()),
                (slots::EFFICIENTNET_B1.into(), "torchvision EfficientNet_B1_Weights.IMAGENET1K_V1".into()),
                (slots::SWAV_RESNET50.into(), "facebookresearch/swav swav_800ep_pretrain".into()),
                (slots::CLIP.into(), "OpenAI CLIP ViT-L/14, float32".into()),
            ],
        }
    }

    /// MindEye's `Reconstruction_Metrics` notebook (982 images in MindEye1, 1000 in MindEye2; each
    /// network at its weights' resize size without antialiasing or crop; pixels at 425 bilinear;
    /// 2-D SSIM).
    pub fn mindeye() -> Self {
        use FeatureScore::*;
        Protocol {
            name: "mindeye".into(),
            expected_images: 982,
            pixel_resize: PixelResize::TorchBilinear { size: 425 },
            ssim: SsimVariant::Gaussian2d,
            ssim_params: SsimParams::default(),
            network_resize: NetworkResize::TorchBilinear,
            feature_metrics: vec![
                metric("AlexNet(2)", slots::ALEXNET, "features.4", 256, TwoWayIdentification),
                metric("AlexNet(5)", slots::ALEXNET, "features.11", 256, TwoWayIdentification),
                metric("Inception", slots::INCEPTION_V3, "avgpool", 342, TwoWayIdentification),
                metric("CLIP", slots::CLIP, "final", 224, TwoWayIdentification),
                metric("EffNet-B", slots::EFFICIENTNET_B1, "avgpool", 255, CorrelationDistance),
                metric("SwAV", slots::SWAV_RESNET50, "avgpool", 224, CorrelationDistance),
            ],
            weights: vec![
                (slots::ALEXNET.into(), "torchvision AlexNet_Weights.IMAGENET1K_V1".into()),
                (slots::INCEPTION_V3.into(), "torchvision Inception_V3_Weights.IMAGENET1K_V1".into()),
                (slots::EFFICIENTNET_B1.into(), "torchvision EfficientNet_B1_Weights.IMAGENET1K_V2".into()),
                (slots::SWAV_RESNET50.into(), "facebookresearch/swav swav_800ep_pretrain".into()),
                (slots::CLIP.into(), "OpenAI CLIP ViT-L/14 (MindEye runs it in float16 on CUDA)".into()),
            ],
        }
    }

    /// Looks a protocol up by name: `brain-diffuser` (also `bd`) or `mindeye` (also `me`).
    pub fn by_name(name: &str) -> Result<Self, MetricsError> {
        match name.to_ascii_lowercase().as_str() {
            "brain-diffuser" | "brain_diffuser" | "bd" => Ok(Self::brain_diffuser()),
            "mindeye" | "me" => Ok(Self::mindeye()),
            other => Err(MetricsError::Invalid {
                what: "protocol".into(),
                message: format!("unknown protocol {other:?}; expected \"brain-diffuser\" or \"mindeye\""),
            }),
        }
    }
}
