//! The flat latent vector of the reference: the `z` of the first N decoder blocks, each
//! `(zdim, r, r)` tensor flattened in C order (channel, then row, then column) and concatenated
//! in block order. For ImageNet-64 and N = 31 that is 91,168 values per image.

use tch::{Device, Kind, Tensor};

use crate::error::VdvaeError;

/// Shapes and offsets of the per-block latents inside one flat latent vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LatentLayout {
    shapes: Vec<[i64; 3]>,
    offsets: Vec<usize>,
    dim: usize,
}

impl LatentLayout {
    /// A layout from the `(channels, height, width)` of each block's latent, in block order.
    pub fn new(shapes: Vec<[i64; 3]>) -> Self {
        let mut offsets = Vec::with_capacity(shapes.len());
        let mut dim = 0usize;
        for s in &shapes {
            offsets.push(dim);
            dim += (s[0] * s[1] * s[2]) as usize;
        }
        LatentLayout { shapes, offsets, dim }
    }

    /// Number of decoder blocks covered.
    pub fn n_blocks(&self) -> usize {
        self.shapes.len()
    }

    /// Values per image.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// `(channels, height, width)` of block `i`'s latent.
    pub fn shape(&self, i: usize) -> [i64; 3] {
        self.shapes[i]
    }

    /// Offset of block `i`'s latent inside the flat vector.
    pub fn offset(&self, i: usize) -> usize {
        self.offsets[i]
    }

    /// Flattens per-block latents `[B, c, h, w]` into `B` rows of [`dim`](Self::dim) values
    /// (row-major, one row per image).
    pub fn flatten(&self, blocks: &[Tensor]) -> Result<Vec<f32>, VdvaeError> {
        if blocks.len() != self.shapes.len() {
            return Err(VdvaeError::Invalid {
                what: "latents".into(),
                message: format!("{} block tensors given, layout has {}", blocks.len(), self.shapes.len()),
            });
        }
        let batch = blocks.first().map(|t| t.size()[0]).unwrap_or(0);
        let mut rows = Vec::with_capacity(blocks.len());
        for (i, (t, s)) in blocks.iter().zip(&self.shapes).enumerate() {
            let expected = [batch, s[0], s[1], s[2]];
            if t.size() != expected {
                return Err(VdvaeError::Invalid {
                    what: format!("latent of block {i}"),
                    message: format!("shape {:?}, expected {expected:?}", t.size()),
                });
            }
            rows.push(t.to_device(Device::Cpu).to_kind(Kind::Float).reshape([batch, -1]));
        }
        let flat = Tensor::cat(&rows, 1).contiguous();
        Ok(Vec::<f32>::try_from(flat.reshape([-1]))?)
    }

    /// Splits `n` rows of flat latents into per-block tensors `[n, c, h, w]` of `kind` on `device`.
    pub fn unflatten(&self, values: &[f32], n: usize, device: Device, kind: Kind) -> Result<Vec<Tensor>, VdvaeError> {
        if values.len() != n * self.dim {
            return Err(VdvaeError::Invalid {
                what: "latents".into(),
                message: format!(
                    "{} values for {n} images, expected {} x {} = {}",
                    values.len(),
                    n,
                    self.dim,
                    n * self.dim
                ),
            });
        }
        let all = Tensor::from_slice(values).reshape([n as i64, self.dim as i64]);
        Ok(self
            .shapes
            .iter()
            .zip(&self.offsets)
            .map(|(s, &o)| {
                all.narrow(1, o as i64, s[0] * s[1] * s[2])
                    .reshape([n as i64, s[0], s[1], s[2]])
                    .to_device(device)
                    .to_kind(kind)
            })
            .collect())
    }
}

/// Latent vectors of a batch of images: `n_images` rows of `layout.dim()` values.
#[derive(Debug, Clone, PartialEq)]
pub struct Latents {
    /// Number of decoder blocks whose latents the rows hold.
    pub n_blocks: usize,
    /// Values per image.
    pub dim: usize,
    /// Row-major values, `n_images * dim`.
    pub values: Vec<f32>,
}

impl Latents {
    /// Number of images (rows).
    pub fn n_images(&self) -> usize {
        self.values.len().checked_div(self.dim).unwrap_or(0)
    }

    /// The latent vector of image `i`.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::VdvaeConfig;

    #[test]
    fn imagenet64_offsets_are_the_reference_ones() {
        let l = VdvaeConfig::imagenet64().latent_layout(31).unwrap();
        assert_eq!((l.offset(0), l.offset(1)), (0, 16));
        for k in 0..4 {
            assert_eq!(l.offset(2 + k), 32 + 256 * k);
        }
        for k in 0..8 {
            assert_eq!(l.offset(6 + k), 1056 + 1024 * k);
        }
        for k in 0..16 {
            assert_eq!(l.offset(14 + k), 9248 + 4096 * k);
        }
        assert_eq!(l.offset(30), 74_784);
        assert_eq!(l.dim(), 91_168);
    }

    #[test]
    fn flatten_is_c_order_and_inverts_unflatten() {
        let l = LatentLayout::new(vec![[2, 1, 1], [1, 2, 2]]);
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let blocks = l.unflatten(&values, 2, Device::Cpu, Kind::Float).unwrap();
        // Image 1, block 1 holds values 8..12 laid out (c, h, w).
        assert_eq!(blocks[1].double_value(&[1, 0, 1, 0]), 10.0);
        assert_eq!(blocks[0].double_value(&[0, 1, 0, 0]), 1.0);
        assert_eq!(l.flatten(&blocks).unwrap(), values);
        assert!(l.unflatten(&values[1..], 2, Device::Cpu, Kind::Float).is_err());
    }
}
