//! # metrics
//!
//! The eight scores by which NSD reconstructions are compared: PixCorr and SSIM on pixels; two-way
//! identification with AlexNet (layers 2 and 5), Inception v3 and CLIP features; correlation distance
//! with EfficientNet-B1 and SwAV features. The feature networks load torchvision's weights; both
//! published protocols (Brain-Diffuser's and MindEye's) are named configurations.
//!
//! - [`pixels`]: libtorch bilinear resize, scikit-image grey conversion (Pillow-exact resizing is
//!   the `pil-resample` crate's).
//! - [`low_level`]: PixCorr ([`low_level::pearson`]) and the 2-D and column-wise SSIM.
//! - [`high_level`]: two-way identification and correlation distance over feature matrices, and
//!   MindEye's image and brain retrieval over embeddings ([`high_level::retrieval`]).
//! - [`networks`]: AlexNet, Inception v3, EfficientNet-B1 and ResNet-50 with torchvision's names,
//!   checkpoint loading, and the [`FeatureExtractor`] trait through which CLIP is plugged in.
//! - [`protocol`] and [`evaluate`]: the two protocols and the evaluation of image folders.

mod error;
pub mod evaluate;
pub mod high_level;
pub mod low_level;
pub mod networks;
pub mod pixels;
pub mod protocol;

pub use error::MetricsError;
pub use evaluate::{
    EvaluationReport, Extractors, ImagePairs, MetricRow, ShuffledControl, evaluate, evaluate_folders, load_pairs,
    shuffled_control,
};
pub use networks::{FeatureExtractor, Normalization, TorchvisionExtractor, TorchvisionNetwork};
pub use protocol::Protocol;
