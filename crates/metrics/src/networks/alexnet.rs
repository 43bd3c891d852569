//! AlexNet's convolutional trunk (`torchvision.models.alexnet().features`), exposing the outputs of
//! `features.4` (ReLU after conv2) and `features.11` (ReLU after conv5) that AlexNet(2) and
//! AlexNet(5) score. tch's built-in AlexNet fuses ReLU and pooling into closures, so those
//! activations are unreachable there; this module rebuilds the 13-layer stack with the same names.

use tch::{Tensor, nn};

use crate::MetricsError;

/// torchvision `alexnet().features`, up to `features.11`.
#[derive(Debug)]
pub struct AlexNetFeatures {
    conv0: nn::Conv2D,
    conv3: nn::Conv2D,
    conv6: nn::Conv2D,
    conv8: nn::Conv2D,
    conv10: nn::Conv2D,
}

/// Output names, in the order [`AlexNetFeatures::forward`] returns them.
pub const ALEXNET_OUTPUTS: [&str; 2] = ["features.4", "features.11"];

impl AlexNetFeatures {
    /// Registers `features.{0,3,6,8,10}.{weight,bias}` under `p`.
    pub fn new(p: &nn::Path) -> Self {
        let f = p / "features";
        let conv = |name: &str, i, o, k, stride, padding| {
            nn::conv2d(&f / name, i, o, k, nn::ConvConfig { stride, padding, ..Default::default() })
        };
        AlexNetFeatures {
            conv0: conv("0", 3, 64, 11, 4, 2),
            conv3: conv("3", 64, 192, 5, 1, 2),
            conv6: conv("6", 192, 384, 3, 1, 1),
            conv8: conv("8", 384, 256, 3, 1, 1),
            conv10: conv("10", 256, 256, 3, 1, 1),
        }
    }

    /// Returns `[features.4, features.11]` for an ImageNet-normalised NCHW batch.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, MetricsError> {
        let pool = |t: &Tensor| t.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false);
        let f4 = x.apply(&self.conv0).f_relu()?;
        let f4 = pool(&f4)?.apply(&self.conv3).f_relu()?;
        let f11 = pool(&f4)?.apply(&self.conv6).f_relu()?.apply(&self.conv8).f_relu()?.apply(&self.conv10).f_relu()?;
        Ok(vec![f4, f11])
    }
}
