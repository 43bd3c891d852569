//! The primitive layers (linear, convolution, normalisations) as plain weight holders over
//! libtorch's functional ops; parameter names follow PyTorch (`weight`, `bias`).

use tch::Tensor;

use crate::weights::Scope;

/// `y = x W^T + b`, weight `[out, in]`.
pub struct Linear {
    weight: Tensor,
    bias: Option<Tensor>,
}

impl Linear {
    /// A linear layer at `scope`, with or without a bias.
    pub fn new(scope: &Scope, input: i64, output: i64, bias: bool) -> Self {
        Self { weight: scope.tensor("weight", &[output, input]), bias: bias.then(|| scope.tensor("bias", &[output])) }
    }

    /// The kind of the weight.
    pub fn kind(&self) -> tch::Kind {
        self.weight.kind()
    }

    /// Applies the layer over the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, self.bias.as_ref())
    }
}

/// A 2-D convolution with square kernel, stride and symmetric zero padding.
pub struct Conv2d {
    weight: Tensor,
    bias: Tensor,
    stride: i64,
    padding: i64,
}

impl Conv2d {
    /// A convolution `input -> output` channels at `scope`.
    pub fn new(scope: &Scope, input: i64, output: i64, kernel: i64, stride: i64, padding: i64) -> Self {
        Self {
            weight: scope.tensor("weight", &[output, input, kernel, kernel]),
            bias: scope.tensor("bias", &[output]),
            stride,
            padding,
        }
    }

    /// Applies the convolution to an NCHW tensor.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.conv2d(&self.weight, Some(&self.bias), [self.stride; 2], [self.padding; 2], [1, 1], 1)
    }
}

/// Group normalisation with an affine transform.
pub struct GroupNorm {
    weight: Tensor,
    bias: Tensor,
    groups: i64,
    eps: f64,
}

impl GroupNorm {
    /// Normalises `channels` channels in `groups` groups.
    pub fn new(scope: &Scope, groups: i64, channels: i64, eps: f64) -> Self {
        Self { weight: scope.tensor("weight", &[channels]), bias: scope.tensor("bias", &[channels]), groups, eps }
    }

    /// The kind of the weight.
    pub fn kind(&self) -> tch::Kind {
        self.weight.kind()
    }

    /// Applies the normalisation to an `[N, C, ...]` tensor.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.group_norm(self.groups, Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}

/// Layer normalisation over the last dimension with an affine transform.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    size: i64,
    eps: f64,
}

impl LayerNorm {
    /// Normalises a last dimension of `size` values.
    pub fn new(scope: &Scope, size: i64, eps: f64) -> Self {
        Self { weight: scope.tensor("weight", &[size]), bias: scope.tensor("bias", &[size]), size, eps }
    }

    /// Applies the normalisation.
    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.layer_norm([self.size], Some(&self.weight), Some(&self.bias), self.eps, true)
    }
}
