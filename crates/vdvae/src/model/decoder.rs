//! The top-down decoder: 75 (for ImageNet-64) `DecBlock`s, each with a posterior net `enc`, a
//! prior net `prior` (which also yields a feature shortcut), `z_proj` and a residual `resnet`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor, nn};

use super::layers::{Block, BlockSpec, Conv, ConvInit, WeightInit};
use crate::config::VdvaeConfig;
use crate::error::VdvaeError;
use crate::noise::{GaussianDraw, NoiseSource};

/// How the posterior latent of a block is taken. In configuration files (serde):
/// `"posterior-sample"` or `"posterior-mean"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum PosteriorDraw {
    /// `z = qm + exp(qv) * eps`, what brain-diffuser extracts (faithful).
    #[default]
    #[serde(rename = "posterior-sample")]
    Sample,
    /// `z = qm`, deterministic (improvement option).
    #[serde(rename = "posterior-mean")]
    Mean,
}

/// The result of the posterior pass over the first blocks of the decoder.
#[derive(Debug)]
pub struct PosteriorPass {
    /// `z` of each block run, `[B, zdim, r, r]`.
    pub z: Vec<Tensor>,
    /// Analytic KL(q || p) of each block run (empty unless requested).
    pub kl: Vec<Tensor>,
    /// The decoder output after gain and bias, when every block was run.
    pub px_z: Option<Tensor>,
}

#[derive(Debug)]
struct DecBlock {
    res: i64,
    mixin: Option<i64>,
    width: i64,
    zdim: i64,
    enc: Block,
    prior: Block,
    z_proj: Conv,
    resnet: Block,
}

/// Where the latent of a block comes from in a top-down (generative) pass.
enum PriorLatent<'a> {
    Given(&'a Tensor),
    Drawn { eps: Option<Tensor>, log_temperature: Option<f64> },
}

fn to_model(t: Tensor, like: &Tensor) -> Tensor {
    t.to_device(like.device()).to_kind(like.kind())
}

impl DecBlock {
    fn new(
        p: nn::Path,
        res: i64,
        mixin: Option<i64>,
        config: &VdvaeConfig,
        n_blocks: usize,
        init: WeightInit,
    ) -> Result<Self, VdvaeError> {
        let width = config.width_at(res)?;
        let mid = config.bottleneck(width);
        let zdim = config.zdim;
        let scale = (1.0 / n_blocks as f64).sqrt();
        let spec = |in_dim, out_dim, residual| BlockSpec { in_dim, mid, out_dim, res, residual, down_rate: None };
        Ok(DecBlock {
            res,
            mixin,
            width,
            zdim,
            enc: Block::new(&p / "enc", spec(2 * width, 2 * zdim, false), init, ConvInit::plain(init)),
            prior: Block::new(
                &p / "prior",
                spec(width, 2 * zdim + width, false),
                init,
                ConvInit { init, scale: 1.0, zero: true },
            ),
            z_proj: Conv::new(&p / "z_proj", zdim, width, 1, ConvInit { init, scale, zero: false }),
            resnet: Block::new(&p / "resnet", spec(width, width, true), init, ConvInit { init, scale, zero: false }),
        })
    }

    /// The block input: the state at its resolution (or zeros), repeated to the batch, plus the
    /// nearest-upsampled mix-in state.
    fn input(&self, xs: &BTreeMap<i64, Tensor>, batch: i64, like: &Tensor) -> Tensor {
        let x = match xs.get(&self.res) {
            Some(x) if x.size()[0] != batch => x.repeat([batch, 1, 1, 1]),
            Some(x) => x.shallow_clone(),
            None => Tensor::zeros([batch, self.width, self.res, self.res], (like.kind(), like.device())),
        };
        // Out of place: `x` may share storage with a stored state or with `bias_xs`.
        match self.mixin {
            // Validated at build time: the mix-in state exists and has at least `width` channels.
            Some(m) => x + xs[&m].narrow(1, 0, self.width).upsample_nearest2d([self.res, self.res], None, None),
            None => x,
        }
    }

    /// Splits the prior net's output into (pm, pv, xpp).
    fn prior_split(&self, x: &Tensor) -> (Tensor, Tensor, Tensor) {
        let feats = self.prior.forward(x);
        (
            feats.narrow(1, 0, self.zdim),
            feats.narrow(1, self.zdim, self.zdim),
            feats.narrow(1, 2 * self.zdim, self.width),
        )
    }

    fn finish(&self, x: Tensor, z: &Tensor, xs: &mut BTreeMap<i64, Tensor>) {
        let x = x + self.z_proj.forward(z);
        xs.insert(self.res, self.resnet.forward(&x));
    }
}

/// `decoder.*` of the state dict.
#[derive(Debug)]
pub(crate) struct Decoder {
    blocks: Vec<DecBlock>,
    bias_xs: Vec<(i64, Tensor)>,
    gain: Tensor,
    bias: Tensor,
    out_conv: Conv,
    image_size: i64,
}

impl Decoder {
    pub fn new(p: nn::Path, config: &VdvaeConfig, init: WeightInit) -> Result<Self, VdvaeError> {
        let specs = config.decoder_blocks()?;
        let blocks_path = &p / "dec_blocks";
        let blocks = specs
            .iter()
            .enumerate()
            .map(|(i, s)| DecBlock::new(&blocks_path / i, s.res, s.mixin, config, specs.len(), init))
            .collect::<Result<Vec<_>, _>>()?;
        let bias_path = &p / "bias_xs";
        let bias_xs = config
            .bias_resolutions()?
            .into_iter()
            .enumerate()
            .map(|(i, r)| Ok((r, bias_path.zeros(&i.to_string(), &[1, config.width_at(r)?, r, r]))))
            .collect::<Result<Vec<_>, VdvaeError>>()?;
        Ok(Decoder {
            blocks,
            bias_xs,
            gain: p.ones("gain", &[1, config.width, 1, 1]),
            bias: p.zeros("bias", &[1, config.width, 1, 1]),
            out_conv: Conv::new(
                &p / "out_net" / "out_conv",
                config.width,
                config.num_mixtures * 10,
                1,
                ConvInit::plain(init),
            ),
            image_size: config.image_size,
        })
    }

    pub fn n_blocks(&self) -> usize {
        self.blocks.len()
    }

    fn final_fn(&self, x: &Tensor) -> Tensor {
        x * &self.gain + &self.bias
    }

    /// The posterior (inference) pass over the first `n_blocks` blocks, given encoder activations.
    /// Blocks after `n_blocks` cannot change the latents of earlier blocks, so they are skipped
    /// unless all blocks are requested (then `px_z` is returned too).
    pub fn posterior(
        &self,
        activations: &BTreeMap<i64, Tensor>,
        n_blocks: usize,
        draw: PosteriorDraw,
        noise: &mut dyn NoiseSource,
        want_kl: bool,
    ) -> Result<PosteriorPass, VdvaeError> {
        let mut xs: BTreeMap<i64, Tensor> = self.bias_xs.iter().map(|(r, t)| (*r, t.shallow_clone())).collect();
        let mut pass = PosteriorPass { z: Vec::new(), kl: Vec::new(), px_z: None };
        for (i, block) in self.blocks.iter().take(n_blocks).enumerate() {
            let acts = activations.get(&block.res).ok_or_else(|| VdvaeError::Invalid {
                what: "encoder activations".into(),
                message: format!("no activation at resolution {} for decoder block {i}", block.res),
            })?;
            let batch = acts.size()[0];
            let x = block.input(&xs, batch, acts);
            let q = block.enc.forward(&Tensor::cat(&[&x, acts], 1));
            let (qm, qv) = (q.narrow(1, 0, block.zdim), q.narrow(1, block.zdim, block.zdim));
            let (pm, pv, xpp) = block.prior_split(&x);
            let x = x + xpp;
            let z = match draw {
                PosteriorDraw::Sample => {
                    let eps = to_model(noise.gaussian(GaussianDraw::Posterior, i, &qm.size())?, &qm);
                    qv.exp() * eps + &qm
                }
                PosteriorDraw::Mean => qm.shallow_clone(),
            };
            if want_kl {
                // gaussian_analytical_kl(qm, pm, qv, pv); qv and pv are log standard deviations.
                let kl = ((&pv - 0.5) - &qv) + (qv.exp().square() + (&qm - &pm).square()) * 0.5 / pv.exp().square();
                pass.kl.push(kl);
            }
            block.finish(x, &z, &mut xs);
            pass.z.push(z);
        }
        if n_blocks >= self.blocks.len() {
            pass.px_z = Some(self.final_fn(&xs[&self.image_size]));
        }
        Ok(pass)
    }

    /// The generative pass for `n` images: blocks `0..latents.len()` take the given latents,
    /// the rest draw from the prior with its standard deviation multiplied by `temperature`
    /// (0 gives the prior mean). Returns the decoder output after gain and bias.
    pub fn generate(
        &self,
        n: i64,
        latents: &[Tensor],
        temperature: f64,
        noise: &mut dyn NoiseSource,
    ) -> Result<Tensor, VdvaeError> {
        let mut xs: BTreeMap<i64, Tensor> = self.bias_xs.iter().map(|(r, t)| (*r, t.repeat([n, 1, 1, 1]))).collect();
        let like = self.gain.shallow_clone();
        for (i, block) in self.blocks.iter().enumerate() {
            let x = block.input(&xs, n, &like);
            let (pm, pv, xpp) = block.prior_split(&x);
            let x = x + xpp;
            let latent = match latents.get(i) {
                Some(z) => PriorLatent::Given(z),
                None if temperature == 0.0 => PriorLatent::Drawn { eps: None, log_temperature: None },
                None => PriorLatent::Drawn {
                    eps: Some(to_model(noise.gaussian(GaussianDraw::Prior, i, &pm.size())?, &pm)),
                    // t = 1 (brain-diffuser passes t=None) leaves pv untouched.
                    log_temperature: (temperature != 1.0).then(|| temperature.ln()),
                },
            };
            let z = match latent {
                PriorLatent::Given(z) => {
                    if z.size() != pm.size() {
                        return Err(VdvaeError::Invalid {
                            what: format!("latent of decoder block {i}"),
                            message: format!("shape {:?}, expected {:?}", z.size(), pm.size()),
                        });
                    }
                    to_model(z.shallow_clone(), &pm)
                }
                PriorLatent::Drawn { eps: None, .. } => pm,
                PriorLatent::Drawn { eps: Some(eps), log_temperature } => {
                    let pv = match log_temperature {
                        Some(lt) => pv + (lt as f32) as f64,
                        None => pv,
                    };
                    pv.exp() * eps + pm
                }
            };
            block.finish(x, &z, &mut xs);
        }
        Ok(self.final_fn(&xs[&self.image_size]))
    }

    /// The mixture-of-logistics parameters `[B, H, W, 10 * num_mixtures]` (NHWC) of `px_z`, as f32.
    pub fn output_params(&self, px_z: &Tensor) -> Tensor {
        self.out_conv.forward(px_z).permute([0, 2, 3, 1]).to_kind(Kind::Float)
    }
}
