//! # metrics
//!
//! The eight scores by which NSD reconstructions are compared: PixCorr and SSIM on pixels; two-way
//! identification with AlexNet (layers 2 and 5), Inception v3 and CLIP features; correlation distance
//! with EfficientNet-B1 and SwAV features. The feature networks load torchvision's weights; both
//! published protocols (Brain-Diffuser's and MindEye's) are named configurations.

mod error;

pub use error::MetricsError;
