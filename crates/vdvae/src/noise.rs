//! Where the random draws of VDVAE come from: a seed, or tensors given explicitly (parity tests).
//!
//! The reference draws from torch's global generator without a seed. Here every draw is either
//! explicit or comes from a seeded ChaCha8 stream per image (stream = position in the batch), made
//! on the CPU so that the same seed gives the same numbers on every device and precision.

use std::collections::HashMap;

use rand::distr::Uniform;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use tch::{Device, Tensor};

use crate::error::VdvaeError;

/// The pass of the decoder a Gaussian draw belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GaussianDraw {
    /// `eps` of the posterior sample `z = qm + exp(qv) * eps` of a decoder block.
    Posterior,
    /// `eps` of the prior sample `z = pm + exp(pv) * t * eps` of a decoder block.
    Prior,
}

/// The uniform draws of the mixture-of-logistics sampler, each in `[1e-5, 1 - 1e-5)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UniformDraw {
    /// Gumbel-max choice of the mixture component, shape `[B, H, W, num_mixtures]`.
    MixtureChoice,
    /// Logistic noise of the chosen component, shape `[B, H, W, 3]`.
    Logistic,
}

/// A source of the random numbers the model consumes, called in a fixed order.
pub trait NoiseSource {
    /// Standard normal noise of `shape` (`[B, zdim, r, r]`) for decoder block `block`.
    fn gaussian(&mut self, draw: GaussianDraw, block: usize, shape: &[i64]) -> Result<Tensor, VdvaeError>;
    /// Uniform noise in `[1e-5, 1 - 1e-5)` of `shape` for the output sampler.
    fn uniform(&mut self, draw: UniformDraw, shape: &[i64]) -> Result<Tensor, VdvaeError>;
}

/// Seeded noise: image `j` of the batch draws from ChaCha8 stream `j` of `seed`, block by block,
/// each tensor in C order. Draws for image `j` do not depend on the batch size.
#[derive(Debug, Clone)]
pub struct SeededNoise {
    rngs: Vec<ChaCha8Rng>,
}

impl SeededNoise {
    /// Noise for a batch of `batch` images from `seed` (streams `0..batch`).
    pub fn new(seed: u64, batch: usize) -> Self {
        Self::for_images(seed, 0, batch)
    }

    /// Noise for images `first..first + count` of a longer sequence drawn from `seed`, so that
    /// splitting a sequence into batches does not change any image's draws.
    pub fn for_images(seed: u64, first: usize, count: usize) -> Self {
        let rngs = (first..first + count)
            .map(|j| {
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                rng.set_stream(j as u64);
                rng
            })
            .collect();
        SeededNoise { rngs }
    }

    /// Noise for a batch whose image `j` draws from its own seed `seeds[j]` (ChaCha8 stream 0 of
    /// it): for callers that derive one seed per image, so that each image's draws depend on its
    /// seed alone, whatever else is in the batch.
    pub fn per_image(seeds: &[u64]) -> Self {
        SeededNoise { rngs: seeds.iter().map(|&seed| ChaCha8Rng::seed_from_u64(seed)).collect() }
    }

    fn fill(&mut self, shape: &[i64], sample: impl Fn(&mut ChaCha8Rng) -> f32 + Sync) -> Result<Tensor, VdvaeError> {
        let batch = shape.first().copied().unwrap_or(0) as usize;
        if batch != self.rngs.len() {
            return Err(VdvaeError::Invalid {
                what: "noise shape".into(),
                message: format!("{shape:?} for a batch of {} images", self.rngs.len()),
            });
        }
        let per_image: usize = shape[1..].iter().map(|&d| d as usize).product();
        let mut data = vec![0f32; batch * per_image];
        if per_image > 0 {
            data.par_chunks_mut(per_image)
                .zip(self.rngs.par_iter_mut())
                .for_each(|(chunk, rng)| chunk.iter_mut().for_each(|v| *v = sample(rng)));
        }
        Ok(Tensor::from_slice(&data).reshape(shape))
    }
}

impl NoiseSource for SeededNoise {
    fn gaussian(&mut self, _draw: GaussianDraw, _block: usize, shape: &[i64]) -> Result<Tensor, VdvaeError> {
        self.fill(shape, |rng| rng.sample(StandardNormal))
    }

    fn uniform(&mut self, _draw: UniformDraw, shape: &[i64]) -> Result<Tensor, VdvaeError> {
        let range = Uniform::new(1e-5f32, 1.0 - 1e-5)
            .map_err(|e| VdvaeError::Invalid { what: "uniform range".into(), message: e.to_string() })?;
        self.fill(shape, move |rng| rng.sample(range))
    }
}

/// Noise given tensor by tensor, e.g. the draws recorded by the reference implementation.
#[derive(Debug, Default)]
pub struct ExplicitNoise {
    gaussians: HashMap<(GaussianDraw, usize), Tensor>,
    uniforms: HashMap<UniformDraw, Tensor>,
}

impl ExplicitNoise {
    /// No draws yet; add them with [`with_gaussian`](Self::with_gaussian) and
    /// [`with_uniform`](Self::with_uniform).
    pub fn new() -> Self {
        Self::default()
    }

    /// Uses `eps` for the `draw` of decoder block `block`.
    pub fn with_gaussian(mut self, draw: GaussianDraw, block: usize, eps: Tensor) -> Self {
        self.gaussians.insert((draw, block), eps);
        self
    }

    /// Uses `u` for the output sampler's `draw`.
    pub fn with_uniform(mut self, draw: UniformDraw, u: Tensor) -> Self {
        self.uniforms.insert(draw, u);
        self
    }
}

fn checked(t: &Tensor, shape: &[i64], what: String) -> Result<Tensor, VdvaeError> {
    if t.size() != shape {
        return Err(VdvaeError::Invalid {
            what,
            message: format!("given noise has shape {:?}, the model needs {shape:?}", t.size()),
        });
    }
    Ok(t.to_device(Device::Cpu).shallow_clone())
}

impl NoiseSource for ExplicitNoise {
    fn gaussian(&mut self, draw: GaussianDraw, block: usize, shape: &[i64]) -> Result<Tensor, VdvaeError> {
        let what = format!("{draw:?} noise of decoder block {block}");
        match self.gaussians.get(&(draw, block)) {
            Some(t) => checked(t, shape, what),
            None => Err(VdvaeError::Invalid { what, message: "was not given".into() }),
        }
    }

    fn uniform(&mut self, draw: UniformDraw, shape: &[i64]) -> Result<Tensor, VdvaeError> {
        let what = format!("{draw:?} uniform noise");
        match self.uniforms.get(&draw) {
            Some(t) => checked(t, shape, what),
            None => Err(VdvaeError::Invalid { what, message: "was not given".into() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_noise_is_reproducible_per_image_and_in_range() {
        let mut a = SeededNoise::new(7, 2);
        let mut b = SeededNoise::new(7, 3);
        let ta = a.gaussian(GaussianDraw::Posterior, 0, &[2, 4, 3, 3]).unwrap();
        let tb = b.gaussian(GaussianDraw::Posterior, 0, &[3, 4, 3, 3]).unwrap();
        assert_eq!(ta, tb.narrow(0, 0, 2));
        assert_ne!(ta.get(0), ta.get(1));
        let u = a.uniform(UniformDraw::Logistic, &[2, 50, 50, 3]).unwrap();
        assert!(u.min().double_value(&[]) >= 1e-5 && u.max().double_value(&[]) < 1.0 - 1e-5);
        let n = a.gaussian(GaussianDraw::Prior, 1, &[2, 100, 50, 10]).unwrap();
        assert!(n.mean(tch::Kind::Float).double_value(&[]).abs() < 0.02);
        assert!((n.std(true).double_value(&[]) - 1.0).abs() < 0.02);
        assert!(a.gaussian(GaussianDraw::Prior, 1, &[3, 1, 1, 1]).is_err());
    }

    #[test]
    fn explicit_noise_checks_presence_and_shape() {
        let mut e = ExplicitNoise::new().with_gaussian(
            GaussianDraw::Prior,
            4,
            Tensor::zeros([2, 4, 8, 8], (tch::Kind::Float, Device::Cpu)),
        );
        assert!(e.gaussian(GaussianDraw::Prior, 4, &[2, 4, 8, 8]).is_ok());
        assert!(e.gaussian(GaussianDraw::Prior, 4, &[2, 4, 4, 4]).unwrap_err().to_string().contains("block 4"));
        assert!(e.gaussian(GaussianDraw::Posterior, 4, &[2, 4, 8, 8]).is_err());
        assert!(e.uniform(UniformDraw::Logistic, &[1]).is_err());
    }
}
