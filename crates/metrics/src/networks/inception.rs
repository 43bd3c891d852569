//! Inception v3 as torchvision builds it (`inception_v3(weights=IMAGENET1K_V1)`), up to the 2048-d
//! `avgpool` output, with torchvision's `transform_input` re-normalisation that pretrained weights
//! switch on. tch's built-in `inception::v3` has the same parameter names but neither stops at the
//! pool nor applies `transform_input`, hence this port. `AuxLogits` and `fc` are not built (their
//! checkpoint entries are ignored).

use tch::{Tensor, nn};

use crate::MetricsError;

/// `BasicConv2d`: convolution without bias, batch norm (eps 0.001), ReLU.
#[derive(Debug)]
struct BasicConv2d {
    conv: nn::Conv2D,
    bn: nn::BatchNorm,
}

impl BasicConv2d {
    fn new(p: nn::Path, c_in: i64, c_out: i64, kernel: [i64; 2], stride: i64, padding: [i64; 2]) -> Self {
        let config =
            nn::ConvConfigND::<[i64; 2]> { stride: [stride, stride], padding, bias: false, ..Default::default() };
        let conv = nn::conv(&p / "conv", c_in, c_out, kernel, config);
        let bn = nn::batch_norm2d(&p / "bn", c_out, nn::BatchNormConfig { eps: 0.001, ..Default::default() });
        BasicConv2d { conv, bn }
    }

    fn square(p: nn::Path, c_in: i64, c_out: i64, k: i64, stride: i64, pad: i64) -> Self {
        Self::new(p, c_in, c_out, [k, k], stride, [pad, pad])
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        Ok(x.apply(&self.conv).apply_t(&self.bn, false).f_relu()?)
    }
}

fn max_pool(x: &Tensor) -> Result<Tensor, MetricsError> {
    Ok(x.f_max_pool2d([3, 3], [2, 2], [0, 0], [1, 1], false)?)
}

fn avg_pool(x: &Tensor) -> Result<Tensor, MetricsError> {
    Ok(x.f_avg_pool2d([3, 3], [1, 1], [1, 1], false, true, None)?)
}

fn cat(parts: &[Tensor]) -> Result<Tensor, MetricsError> {
    Ok(Tensor::f_cat(parts, 1)?)
}

#[derive(Debug)]
struct InceptionA {
    b1x1: BasicConv2d,
    b5x5_1: BasicConv2d,
    b5x5_2: BasicConv2d,
    b3x3dbl_1: BasicConv2d,
    b3x3dbl_2: BasicConv2d,
    b3x3dbl_3: BasicConv2d,
    pool: BasicConv2d,
}

impl InceptionA {
    fn new(p: nn::Path, c_in: i64, pool_features: i64) -> Self {
        InceptionA {
            b1x1: BasicConv2d::square(&p / "branch1x1", c_in, 64, 1, 1, 0),
            b5x5_1: BasicConv2d::square(&p / "branch5x5_1", c_in, 48, 1, 1, 0),
            b5x5_2: BasicConv2d::square(&p / "branch5x5_2", 48, 64, 5, 1, 2),
            b3x3dbl_1: BasicConv2d::square(&p / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            b3x3dbl_2: BasicConv2d::square(&p / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            b3x3dbl_3: BasicConv2d::square(&p / "branch3x3dbl_3", 96, 96, 3, 1, 1),
            pool: BasicConv2d::square(&p / "branch_pool", c_in, pool_features, 1, 1, 0),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let b1 = self.b1x1.forward(x)?;
        let b5 = self.b5x5_2.forward(&self.b5x5_1.forward(x)?)?;
        let b3 = self.b3x3dbl_3.forward(&self.b3x3dbl_2.forward(&self.b3x3dbl_1.forward(x)?)?)?;
        let bp = self.pool.forward(&avg_pool(x)?)?;
        cat(&[b1, b5, b3, bp])
    }
}

#[derive(Debug)]
struct InceptionB {
    b3x3: BasicConv2d,
    b3x3dbl_1: BasicConv2d,
    b3x3dbl_2: BasicConv2d,
    b3x3dbl_3: BasicConv2d,
}

impl InceptionB {
    fn new(p: nn::Path, c_in: i64) -> Self {
        InceptionB {
            b3x3: BasicConv2d::square(&p / "branch3x3", c_in, 384, 3, 2, 0),
            b3x3dbl_1: BasicConv2d::square(&p / "branch3x3dbl_1", c_in, 64, 1, 1, 0),
            b3x3dbl_2: BasicConv2d::square(&p / "branch3x3dbl_2", 64, 96, 3, 1, 1),
            b3x3dbl_3: BasicConv2d::square(&p / "branch3x3dbl_3", 96, 96, 3, 2, 0),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let b3 = self.b3x3.forward(x)?;
        let bd = self.b3x3dbl_3.forward(&self.b3x3dbl_2.forward(&self.b3x3dbl_1.forward(x)?)?)?;
        cat(&[b3, bd, max_pool(x)?])
    }
}

#[derive(Debug)]
struct InceptionC {
    b1x1: BasicConv2d,
    b7x7: [BasicConv2d; 3],
    b7x7dbl: [BasicConv2d; 5],
    pool: BasicConv2d,
}

impl InceptionC {
    fn new(p: nn::Path, c_in: i64, c7: i64) -> Self {
        let row = |name: &str, i, o| BasicConv2d::new(&p / name, i, o, [1, 7], 1, [0, 3]);
        let col = |name: &str, i, o| BasicConv2d::new(&p / name, i, o, [7, 1], 1, [3, 0]);
        InceptionC {
            b1x1: BasicConv2d::square(&p / "branch1x1", c_in, 192, 1, 1, 0),
            b7x7: [
                BasicConv2d::square(&p / "branch7x7_1", c_in, c7, 1, 1, 0),
                row("branch7x7_2", c7, c7),
                col("branch7x7_3", c7, 192),
            ],
            b7x7dbl: [
                BasicConv2d::square(&p / "branch7x7dbl_1", c_in, c7, 1, 1, 0),
                col("branch7x7dbl_2", c7, c7),
                row("branch7x7dbl_3", c7, c7),
                col("branch7x7dbl_4", c7, c7),
                row("branch7x7dbl_5", c7, 192),
            ],
            pool: BasicConv2d::square(&p / "branch_pool", c_in, 192, 1, 1, 0),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let chain = |layers: &[BasicConv2d]| -> Result<Tensor, MetricsError> {
            let mut t = layers[0].forward(x)?;
            for layer in &layers[1..] {
                t = layer.forward(&t)?;
            }
            Ok(t)
        };
        let b1 = self.b1x1.forward(x)?;
        let b7 = chain(&self.b7x7)?;
        let bd = chain(&self.b7x7dbl)?;
        let bp = self.pool.forward(&avg_pool(x)?)?;
        cat(&[b1, b7, bd, bp])
    }
}

#[derive(Debug)]
struct InceptionD {
    b3x3_1: BasicConv2d,
    b3x3_2: BasicConv2d,
    b7x7x3: [BasicConv2d; 4],
}

impl InceptionD {
    fn new(p: nn::Path, c_in: i64) -> Self {
        InceptionD {
            b3x3_1: BasicConv2d::square(&p / "branch3x3_1", c_in, 192, 1, 1, 0),
            b3x3_2: BasicConv2d::square(&p / "branch3x3_2", 192, 320, 3, 2, 0),
            b7x7x3: [
                BasicConv2d::square(&p / "branch7x7x3_1", c_in, 192, 1, 1, 0),
                BasicConv2d::new(&p / "branch7x7x3_2", 192, 192, [1, 7], 1, [0, 3]),
                BasicConv2d::new(&p / "branch7x7x3_3", 192, 192, [7, 1], 1, [3, 0]),
                BasicConv2d::square(&p / "branch7x7x3_4", 192, 192, 3, 2, 0),
            ],
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let b3 = self.b3x3_2.forward(&self.b3x3_1.forward(x)?)?;
        let mut b7 = self.b7x7x3[0].forward(x)?;
        for layer in &self.b7x7x3[1..] {
            b7 = layer.forward(&b7)?;
        }
        cat(&[b3, b7, max_pool(x)?])
    }
}

#[derive(Debug)]
struct InceptionE {
    b1x1: BasicConv2d,
    b3x3_1: BasicConv2d,
    b3x3_2a: BasicConv2d,
    b3x3_2b: BasicConv2d,
    b3x3dbl_1: BasicConv2d,
    b3x3dbl_2: BasicConv2d,
    b3x3dbl_3a: BasicConv2d,
    b3x3dbl_3b: BasicConv2d,
    pool: BasicConv2d,
}

impl InceptionE {
    fn new(p: nn::Path, c_in: i64) -> Self {
        let row = |name: &str, i, o| BasicConv2d::new(&p / name, i, o, [1, 3], 1, [0, 1]);
        let col = |name: &str, i, o| BasicConv2d::new(&p / name, i, o, [3, 1], 1, [1, 0]);
        InceptionE {
            b1x1: BasicConv2d::square(&p / "branch1x1", c_in, 320, 1, 1, 0),
            b3x3_1: BasicConv2d::square(&p / "branch3x3_1", c_in, 384, 1, 1, 0),
            b3x3_2a: row("branch3x3_2a", 384, 384),
            b3x3_2b: col("branch3x3_2b", 384, 384),
            b3x3dbl_1: BasicConv2d::square(&p / "branch3x3dbl_1", c_in, 448, 1, 1, 0),
            b3x3dbl_2: BasicConv2d::square(&p / "branch3x3dbl_2", 448, 384, 3, 1, 1),
            b3x3dbl_3a: row("branch3x3dbl_3a", 384, 384),
            b3x3dbl_3b: col("branch3x3dbl_3b", 384, 384),
            pool: BasicConv2d::square(&p / "branch_pool", c_in, 192, 1, 1, 0),
        }
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor, MetricsError> {
        let b1 = self.b1x1.forward(x)?;
        let b3 = self.b3x3_1.forward(x)?;
        let b3 = cat(&[self.b3x3_2a.forward(&b3)?, self.b3x3_2b.forward(&b3)?])?;
        let bd = self.b3x3dbl_2.forward(&self.b3x3dbl_1.forward(x)?)?;
        let bd = cat(&[self.b3x3dbl_3a.forward(&bd)?, self.b3x3dbl_3b.forward(&bd)?])?;
        let bp = self.pool.forward(&avg_pool(x)?)?;
        cat(&[b1, b3, bd, bp])
    }
}

/// torchvision Inception v3 up to `avgpool`.
#[derive(Debug)]
pub struct InceptionV3 {
    stem: [BasicConv2d; 5],
    mixed_5: [InceptionA; 3],
    mixed_6a: InceptionB,
    mixed_6: [InceptionC; 4],
    mixed_7a: InceptionD,
    mixed_7: [InceptionE; 2],
    transform_input: bool,
}

/// Output names, in the order [`InceptionV3::forward`] returns them.
pub const INCEPTION_OUTPUTS: [&str; 1] = ["avgpool"];

impl InceptionV3 {
    /// Registers torchvision's parameter names under `p`. `transform_input` should be `true` for
    /// torchvision's pretrained weights (it is forced on when they are loaded).
    pub fn new(p: &nn::Path, transform_input: bool) -> Self {
        InceptionV3 {
            stem: [
                BasicConv2d::square(p / "Conv2d_1a_3x3", 3, 32, 3, 2, 0),
                BasicConv2d::square(p / "Conv2d_2a_3x3", 32, 32, 3, 1, 0),
                BasicConv2d::square(p / "Conv2d_2b_3x3", 32, 64, 3, 1, 1),
                BasicConv2d::square(p / "Conv2d_3b_1x1", 64, 80, 1, 1, 0),
                BasicConv2d::square(p / "Conv2d_4a_3x3", 80, 192, 3, 1, 0),
            ],
            mixed_5: [
                InceptionA::new(p / "Mixed_5b", 192, 32),
                InceptionA::new(p / "Mixed_5c", 256, 64),
                InceptionA::new(p / "Mixed_5d", 288, 64),
            ],
            mixed_6a: InceptionB::new(p / "Mixed_6a", 288),
            mixed_6: [
                InceptionC::new(p / "Mixed_6b", 768, 128),
                InceptionC::new(p / "Mixed_6c", 768, 160),
                InceptionC::new(p / "Mixed_6d", 768, 160),
                InceptionC::new(p / "Mixed_6e", 768, 192),
            ],
            mixed_7a: InceptionD::new(p / "Mixed_7a", 768),
            mixed_7: [InceptionE::new(p / "Mixed_7b", 1280), InceptionE::new(p / "Mixed_7c", 2048)],
            transform_input,
        }
    }

    /// torchvision's `_transform_input`: maps ImageNet-normalised channels to (x_raw - 0.5) / 0.5.
    fn transform(x: &Tensor) -> Result<Tensor, MetricsError> {
        const MEAN: [f64; 3] = [0.485, 0.456, 0.406];
        const STD: [f64; 3] = [0.229, 0.224, 0.225];
        let channels = (0..3)
            .map(|c| Ok(x.f_select(1, c as i64)?.f_unsqueeze(1)? * (STD[c] / 0.5) + (MEAN[c] - 0.5) / 0.5))
            .collect::<Result<Vec<_>, MetricsError>>()?;
        cat(&channels)
    }

    /// Returns `[avgpool]` (N x 2048 x 1 x 1) for an ImageNet-normalised NCHW batch.
    pub fn forward(&self, x: &Tensor) -> Result<Vec<Tensor>, MetricsError> {
        let mut t = if self.transform_input { Self::transform(x)? } else { x.shallow_clone() };
        t = self.stem[0].forward(&t)?;
        t = self.stem[1].forward(&t)?;
        t = self.stem[2].forward(&t)?;
        t = max_pool(&t)?;
        t = self.stem[3].forward(&t)?;
        t = self.stem[4].forward(&t)?;
        t = max_pool(&t)?;
        for block in &self.mixed_5 {
            t = block.forward(&t)?;
        }
        t = self.mixed_6a.forward(&t)?;
        for block in &self.mixed_6 {
            t = block.forward(&t)?;
        }
        t = self.mixed_7a.forward(&t)?;
        for block in &self.mixed_7 {
            t = block.forward(&t)?;
        }
        Ok(vec![t.f_adaptive_avg_pool2d([1, 1])?])
    }
}
