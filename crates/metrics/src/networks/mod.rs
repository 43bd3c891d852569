//! Feature networks and the [`FeatureExtractor`] abstraction through which `evaluate` uses them.
//!
//! The four torchvision networks live here ([`TorchvisionExtractor`]); CLIP lives in another crate
//! and is plugged in by implementing [`FeatureExtractor`] for it (the pipeline crate does that), so
//! this crate never depends on it.

pub mod alexnet;
pub mod checkpoint;
pub mod efficientnet;
pub mod inception;
pub mod synthetic;

use std::path::Path;

use ndarray::{Array2, ArrayView4};
use tch::{Device, Kind, Tensor, nn};

use crate::MetricsError;
use alexnet::AlexNetFeatures;
use efficientnet::EfficientNetB1;
use inception::InceptionV3;

/// Per-channel mean and standard deviation applied to RGB values in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Normalization {
    /// Channel means (R, G, B).
    pub mean: [f32; 3],
    /// Channel standard deviations (R, G, B).
    pub std: [f32; 3],
}

impl Normalization {
    /// torchvision's ImageNet statistics.
    pub const IMAGENET: Normalization = Normalization { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] };
    /// OpenAI CLIP's statistics.
    pub const CLIP: Normalization = Normalization {
        mean: [0.481_454_66, 0.457_827_5, 0.408_210_73],
        std: [0.268_629_54, 0.261_302_6, 0.275_777_1],
    };
}

/// An image feature network as the metrics see it: normalised images in, one flattened feature
/// matrix per named output out.
///
/// Implement this to plug in a network from another crate (CLIP ViT-L/14 for the "CLIP" column).
/// Resizing is done by the caller according to the protocol; the extractor only normalises
/// (it declares how) and runs the network.
pub trait FeatureExtractor {
    /// A stable, human-readable name, e.g. `"alexnet"` or `"clip-vit-l14"`.
    fn name(&self) -> &str;
    /// How RGB values in [0, 1] must be normalised before [`FeatureExtractor::extract`].
    fn normalization(&self) -> Normalization;
    /// Names of the feature outputs, in the order `extract` returns them (e.g. `["features.4", "features.11"]`).
    fn outputs(&self) -> Vec<String>;
    /// Features of a normalised `[n, 3, h, w]` batch: one `[n, d]` row-per-image matrix per output.
    fn extract(&self, batch: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError>;
}

/// The torchvision networks the NSD metrics use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TorchvisionNetwork {
    /// `alexnet` (AlexNet(2) = `features.4`, AlexNet(5) = `features.11`).
    AlexNet,
    /// `inception_v3` with `transform_input` (Inception = `avgpool`).
    InceptionV3,
    /// `efficientnet_b1` (EffNet-B = `avgpool`).
    EfficientNetB1,
    /// `resnet50` with SwAV weights (SwAV = `avgpool`).
    SwavResNet50,
}

impl TorchvisionNetwork {
    /// All four, in report order.
    pub const ALL: [TorchvisionNetwork; 4] = [
        TorchvisionNetwork::AlexNet,
        TorchvisionNetwork::InceptionV3,
        TorchvisionNetwork::EfficientNetB1,
        TorchvisionNetwork::SwavResNet50,
    ];

    /// Stable name used in reports and command-line flags.
    pub fn name(self) -> &'static str {
        match self {
            TorchvisionNetwork::AlexNet => "alexnet",
            TorchvisionNetwork::InceptionV3 => "inception_v3",
            TorchvisionNetwork::EfficientNetB1 => "efficientnet_b1",
            TorchvisionNetwork::SwavResNet50 => "swav_resnet50",
        }
    }

    /// Output names in the order the network returns them.
    pub fn outputs(self) -> &'static [&'static str] {
        match self {
            TorchvisionNetwork::AlexNet => &alexnet::ALEXNET_OUTPUTS,
            TorchvisionNetwork::InceptionV3 => &inception::INCEPTION_OUTPUTS,
            TorchvisionNetwork::EfficientNetB1 => &efficientnet::EFFICIENTNET_OUTPUTS,
            TorchvisionNetwork::SwavResNet50 => &["avgpool"],
        }
    }
}

enum Model {
    AlexNet(Box<AlexNetFeatures>),
    Inception(Box<InceptionV3>),
    EfficientNet(Box<EfficientNetB1>),
    ResNet(Box<dyn nn::ModuleT + Send>),
}

/// One of the torchvision networks with its weights, ready to extract features.
pub struct TorchvisionExtractor {
    network: TorchvisionNetwork,
    vs: nn::VarStore,
    model: Model,
}

impl std::fmt::Debug for TorchvisionExtractor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TorchvisionExtractor")
            .field("network", &self.network)
            .field("device", &self.vs.device())
            .finish()
    }
}

impl TorchvisionExtractor {
    /// Builds the network with untrained (default-initialised) parameters on `device`.
    pub fn new(network: TorchvisionNetwork, device: Device) -> Self {
        let vs = nn::VarStore::new(device);
        let root = vs.root();
        let model = match network {
            TorchvisionNetwork::AlexNet => Model::AlexNet(Box::new(AlexNetFeatures::new(&root))),
            TorchvisionNetwork::InceptionV3 => Model::Inception(Box::new(InceptionV3::new(&root, true))),
            TorchvisionNetwork::EfficientNetB1 => Model::EfficientNet(Box::new(EfficientNetB1::new(&root))),
            TorchvisionNetwork::SwavResNet50 => {
                Model::ResNet(Box::new(tch::vision::resnet::resnet50_no_final_layer(&root)))
            }
        };
        TorchvisionExtractor { network, vs, model }
    }

    /// Builds the network and loads its weights from a torchvision `.pth` (zip format), a SwAV
    /// checkpoint, or a `.safetensors` conversion of either.
    pub fn load(network: TorchvisionNetwork, path: &Path, device: Device) -> Result<Self, MetricsError> {
        let extractor = Self::new(network, device);
        let state = checkpoint::read_state_dict(path)?;
        let unused = checkpoint::copy_into(&extractor.vs, &state, path)?;
        tracing::info!(network = network.name(), path = %path.display(), ignored = unused.len(), "loaded weights");
        tracing::debug!(?unused, "checkpoint entries not used by the network");
        Ok(extractor)
    }

    /// Builds the network with the deterministic synthetic weights of [`synthetic`].
    pub fn with_synthetic_weights(network: TorchvisionNetwork, device: Device) -> Result<Self, MetricsError> {
        let extractor = Self::new(network, device);
        synthetic::fill_var_store(&extractor.vs)?;
        Ok(extractor)
    }

    /// Writes the weights (torchvision names) to a `.safetensors` file, e.g. to convert a
    /// checkpoint once or to make test files.
    pub fn save_weights(&self, path: &Path) -> Result<(), MetricsError> {
        Ok(self.vs.save(path)?)
    }

    /// Which network this is.
    pub fn network(&self) -> TorchvisionNetwork {
        self.network
    }

    /// Parameter names and shapes, sorted by name (what a checkpoint must provide).
    pub fn parameter_shapes(&self) -> Vec<(String, Vec<i64>)> {
        let mut v: Vec<_> = self.vs.variables().into_iter().map(|(k, t)| (k, t.size())).collect();
        v.sort();
        v
    }

    /// Runs the network on a normalised float NCHW tensor; returns one tensor per output, unflattened.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, MetricsError> {
        let x = x.f_to_device(self.vs.device())?.f_to_kind(Kind::Float)?;
        tch::no_grad(|| match &self.model {
            Model::AlexNet(m) => m.forward(&x),
            Model::Inception(m) => m.forward(&x),
            Model::EfficientNet(m) => m.forward(&x),
            Model::ResNet(m) => Ok(vec![m.forward_t(&x, false)]),
        })
    }
}

/// Copies an `[n, ...]` tensor to a row-per-image float32 matrix.
pub(crate) fn tensor_to_rows(t: &Tensor) -> Result<Array2<f32>, MetricsError> {
    let n = t.size().first().copied().unwrap_or(0);
    let flat = t.f_to_device(Device::Cpu)?.f_to_kind(Kind::Float)?.f_reshape([n, -1])?.f_contiguous()?;
    let d = flat.size()[1];
    let values = Vec::<f32>::try_from(flat.f_flatten(0, -1)?)?;
    Array2::from_shape_vec((n as usize, d as usize), values)
        .map_err(|e| MetricsError::Invalid { what: "feature tensor".into(), message: e.to_string() })
}

/// Copies an `[n, c, h, w]` array into a float32 tensor.
pub(crate) fn array_to_tensor(batch: ArrayView4<f32>) -> Tensor {
    let shape: Vec<i64> = batch.shape().iter().map(|&s| s as i64).collect();
    let data = batch.as_standard_layout();
    Tensor::from_slice(data.as_slice().unwrap_or(&[])).view(shape.as_slice())
}

impl FeatureExtractor for TorchvisionExtractor {
    fn name(&self) -> &str {
        self.network.name()
    }

    fn normalization(&self) -> Normalization {
        Normalization::IMAGENET
    }

    fn outputs(&self) -> Vec<String> {
        self.network.outputs().iter().map(|s| s.to_string()).collect()
    }

    fn extract(&self, batch: ArrayView4<f32>) -> Result<Vec<Array2<f32>>, MetricsError> {
        if batch.shape()[1] != 3 {
            return Err(MetricsError::Invalid {
                what: format!("{} input", self.name()),
                message: format!("expected [n, 3, h, w], got {:?}", batch.shape()),
            });
        }
        self.forward(&array_to_tensor(batch))?.iter().map(tensor_to_rows).collect()
    }
}
