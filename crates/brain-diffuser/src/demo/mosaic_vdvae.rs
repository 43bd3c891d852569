//! A tiny VDVAE whose encoder inverts its decoder, built by hand (no training): the demo's stage 1
//! then has a known answer (issue 17). A random VDVAE does not (docs/vdvae.md: its posterior means
//! are ~1e-3 and carry nothing of the image).
//!
//! The construction, on the demo's configuration ([`super::tiny_models::tiny_vdvae_config`]):
//! every pre-activation that matters is shifted by [`OFFSET`], where the reference's exact GELU is
//! the identity to 1e-9, so the network is linear on the images it makes.
//!
//! - **Encoder**: `in_conv` copies the normalised RGB into channels 0..3 (+ [`OFFSET`]); every
//!   encoder block's last conv is zero, so blocks are identities and the "d" blocks average-pool:
//!   the activation at resolution `r` is the image averaged over `r x r` cells.
//! - **Decoder**: the state starts at [`OFFSET`] (`bias_xs` of the lowest resolution). Each latent
//!   block's posterior computes the residual `activation - state` (`enc.c1`), passes it through
//!   (`c2`, `c3`: centre taps) and maps it to latents with the pseudo-inverse of a seeded 3 x zdim
//!   colour-mixing matrix `M` (`c4`), with a log sigma of [`POSTERIOR_LOG_SIGMA`] (its samples are
//!   its means); `z_proj` adds `gain * M z` back. Of the `K` latent blocks at one resolution, the
//!   `k`-th explains `1 / (K - k)` of the residual it sees, so the blocks share it evenly and the
//!   last leaves none. The priors, the resnets and every later block's `z_proj` are zero, so the
//!   blocks after the latent ones (and the prior temperature) change nothing.
//! - **Output**: every mixture component has the same mean, the state mapped back to pixels, and
//!   a log scale at the sampler's floor (-7: noise of 0.1 grey level), so a sampled image is the
//!   mode to within a grey level.
//!
//! Decoding latents therefore paints a mosaic of `c x c` colour cells, `c` the resolution of the
//! last latent block (4x4 cells for the demo's 4 latent blocks), and encoding a mosaic recovers
//! latents that decode to the same mosaic: `decode(encode(decode(z))) = decode(z)` up to the
//! input resize and a grey level (measured by `cargo run --example tiny_vdvae_round_trip`).

use std::collections::HashMap;

use tch::{Device, Tensor};
use vdvae::{Vdvae, VdvaeConfig, VdvaeError, WeightInit};

/// Added to every pre-activation on the linear path: GELU(x) = x Phi(x), and the path's values
/// stay within OFFSET +- 3.7 normalised units (pixels span -1.67..2.0), where Phi > 1 - 2e-10.
pub(crate) const OFFSET: f64 = 10.0;
/// Gain of each latent block's `z_proj` (`gain * M z`): unit-variance latents in the 4 latent
/// blocks give cells of about 0.6 normalised units (40 grey levels), rarely clipped.
pub(crate) const LATENT_GAIN: f64 = 0.25;
/// Posterior log sigma: exp(-10) = 4.5e-5, so the posterior samples (the reference's regression
/// targets) equal the posterior means to that precision.
pub(crate) const POSTERIOR_LOG_SIGMA: f64 = -10.0;
/// Output mixture log scale, at the reference sampler's clamp: exp(-7) = 9e-4 in [-1, 1].
pub(crate) const OUTPUT_LOG_SCALE: f64 = -7.0;

fn invalid(message: String) -> VdvaeError {
    VdvaeError::Invalid { what: "mosaic VDVAE".into(), message }
}

/// A parameter of the model being built, filled in place.
struct Param {
    shape: Vec<i64>,
    values: Vec<f32>,
}

impl Param {
    fn zeros(shape: Vec<i64>) -> Self {
        let n = shape.iter().product::<i64>() as usize;
        Param { shape, values: vec![0.0; n] }
    }

    /// Sets the centre tap `[out, input]` of a conv kernel `[out, in, k, k]`.
    fn tap(&mut self, out: usize, input: usize, value: f64) {
        let [_, n_in, kh, kw] = [0, 1, 2, 3].map(|d| self.shape.get(d).copied().unwrap_or(1) as usize);
        self.values[((out * n_in + input) * kh + kh / 2) * kw + kw / 2] = value as f32;
    }

    /// Sets channel `channel` of a bias `[out]` or of a state `[1, width, r, r]` (every position).
    fn channel(&mut self, channel: usize, value: f64) {
        let plane = self.shape.get(2..).map_or(1, |s| s.iter().product::<i64>() as usize);
        self.values[channel * plane..(channel + 1) * plane].fill(value as f32);
    }
}

/// The parameters being set, zero until set, by name.
struct Params<'a> {
    variables: &'a HashMap<String, Tensor>,
    values: HashMap<String, Param>,
}

impl Params<'_> {
    fn get(&mut self, name: String) -> Result<&mut Param, VdvaeError> {
        let shape =
            self.variables.get(&name).ok_or_else(|| invalid(format!("the model has no parameter {name}")))?.size();
        Ok(self.values.entry(name).or_insert_with(|| Param::zeros(shape)))
    }
}

/// Inverse of a 3x3 matrix by cofactors (`None` if singular).
fn inverse3(a: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let c = |r: usize, k: usize| {
        let (r1, r2, k1, k2) = ((r + 1) % 3, (r + 2) % 3, (k + 1) % 3, (k + 2) % 3);
        a[r1][k1] * a[r2][k2] - a[r1][k2] * a[r2][k1]
    };
    let det = a[0][0] * c(0, 0) + a[0][1] * c(0, 1) + a[0][2] * c(0, 2);
    if det.abs() < 1e-9 {
        return None;
    }
    let mut inv = [[0.0; 3]; 3];
    for (i, row) in inv.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = c(j, i) / det;
        }
    }
    Some(inv)
}

/// The colour-mixing matrix `M` (3 x zdim) by columns, and its pseudo-inverse (zdim x 3) by rows.
struct Mixing {
    columns: Vec<[f64; 3]>,
    pinv_rows: Vec<[f64; 3]>,
}

/// The colour-mixing matrix `M = [I | extra]` (3 x zdim) and its pseudo-inverse `M^T (M M^T)^-1`
/// (zdim x 3); `extra` holds the seeded columns beyond the first three, row-major (3 x (zdim - 3)).
fn mixing(zdim: usize, extra: &[f64]) -> Option<Mixing> {
    // Columns of M.
    let columns: Vec<[f64; 3]> = (0..zdim)
        .map(|j| match j {
            0..3 => {
                let mut e = [0.0; 3];
                e[j] = 1.0;
                e
            }
            _ => [0, 1, 2].map(|c| extra[c * (zdim - 3) + (j - 3)]),
        })
        .collect();
    let mut gram = [[0.0; 3]; 3];
    for col in &columns {
        for (r, row) in gram.iter_mut().enumerate() {
            for (k, v) in row.iter_mut().enumerate() {
                *v += col[r] * col[k];
            }
        }
    }
    let inv = inverse3(gram)?;
    // Row j of the pseudo-inverse: column j of M times (M M^T)^-1.
    let pinv_rows = columns.iter().map(|col| [0, 1, 2].map(|c| (0..3).map(|r| col[r] * inv[r][c]).sum())).collect();
    Some(Mixing { columns, pinv_rows })
}

/// Builds the mosaic VDVAE of `config` whose first `latent_blocks` decoder blocks carry the image;
/// `extra_mixing` seeds the colour-mixing columns beyond the first three (`3 * (zdim - 3)` values,
/// row-major). Refuses configurations the construction does not cover (fewer than 3 latent or
/// bottleneck channels, latent blocks that do not start at the lowest resolution or go down).
pub(crate) fn build(config: &VdvaeConfig, latent_blocks: usize, extra_mixing: &[f64]) -> Result<Vdvae, VdvaeError> {
    let zdim = config.zdim as usize;
    let blocks = config.decoder_blocks()?;
    let lowest = config.bias_resolutions()?.first().copied();
    let latent = blocks
        .get(..latent_blocks)
        .ok_or_else(|| invalid(format!("{latent_blocks} latent blocks asked for; the decoder has {}", blocks.len())))?;
    if zdim < 3 || extra_mixing.len() != 3 * (zdim - 3) {
        return Err(invalid(format!(
            "zdim {zdim} with {} mixing values: needs zdim >= 3 and 3 * (zdim - 3) values",
            extra_mixing.len()
        )));
    }
    // Each new resolution must take the state from the one before (a mix-in), else it is lost.
    let carried = |w: &[vdvae::DecoderBlockSpec]| w[1].res == w[0].res || w[1].mixin == Some(w[0].res);
    if latent.first().map(|b| b.res) != lowest || !latent.windows(2).all(carried) {
        return Err(invalid(format!(
            "latent blocks {:?} (resolution, mix-in): they must start at the lowest resolution ({lowest:?}) \
             and each new resolution must mix in the previous one",
            latent.iter().map(|b| (b.res, b.mixin)).collect::<Vec<_>>()
        )));
    }
    let Mixing { columns: mix, pinv_rows: unmix } =
        mixing(zdim, extra_mixing).ok_or_else(|| invalid("the seeded colour-mixing matrix is singular".into()))?;
    let model = Vdvae::new(config, Device::Cpu, WeightInit::Zeros)?;
    let variables = model.var_store().variables();
    let mut params = Params { variables: &variables, values: HashMap::new() };
    for b in latent {
        if config.bottleneck(config.width_at(b.res)?) < 3 {
            return Err(invalid(format!("the bottleneck at resolution {} is narrower than 3 channels", b.res)));
        }
    }

    // Encoder: RGB into channels 0..3, offset; identity blocks (their c4 stays zero).
    for c in 0..3 {
        params.get("encoder.in_conv.weight".into())?.tap(c, c, 1.0);
        params.get("encoder.in_conv.bias".into())?.channel(c, OFFSET);
        params.get("decoder.bias_xs.0".into())?.channel(c, OFFSET);
    }
    // Latent blocks: residual -> latents -> back into the state.
    for (i, b) in latent.iter().enumerate() {
        let width = config.width_at(b.res)? as usize;
        let same = latent.iter().filter(|o| o.res == b.res).count();
        let before = latent[..i].iter().filter(|o| o.res == b.res).count();
        let share = 1.0 / (LATENT_GAIN * (same - before) as f64);
        let p = |part: &str| format!("decoder.dec_blocks.{i}.{part}");
        for c in 0..3 {
            // enc.c1 reads cat([state, activation]): activation - state + OFFSET.
            params.get(p("enc.c1.weight"))?.tap(c, width + c, 1.0);
            params.get(p("enc.c1.weight"))?.tap(c, c, -1.0);
            params.get(p("enc.c1.bias"))?.channel(c, OFFSET);
            params.get(p("enc.c2.weight"))?.tap(c, c, 1.0);
            params.get(p("enc.c3.weight"))?.tap(c, c, 1.0);
        }
        for (j, row) in unmix.iter().enumerate() {
            for (c, &u) in row.iter().enumerate() {
                params.get(p("enc.c4.weight"))?.tap(j, c, share * u);
            }
            params.get(p("enc.c4.bias"))?.channel(j, -share * OFFSET * row.iter().sum::<f64>());
            params.get(p("enc.c4.bias"))?.channel(zdim + j, POSTERIOR_LOG_SIGMA);
        }
        for (j, col) in mix.iter().enumerate() {
            for (c, &m) in col.iter().enumerate() {
                params.get(p("z_proj.weight"))?.tap(c, j, LATENT_GAIN * m);
            }
        }
    }
    // Output: the mean of every mixture component is the state mapped back to [-1, 1] (+ half a
    // grey level, since the reference truncates); equal logits; no colour coupling.
    let m = config.num_mixtures as usize;
    let norm = config.normalisation;
    let per_unit = 1.0 / (127.5 * norm.scale);
    let mean_bias = -OFFSET * per_unit + (0.5 - norm.shift) / 127.5 - 1.0;
    for c in 0..3 {
        for j in 0..m {
            let mean = m + c * 3 * m + j;
            params.get("decoder.out_net.out_conv.weight".into())?.tap(mean, c, per_unit);
            params.get("decoder.out_net.out_conv.bias".into())?.channel(mean, mean_bias);
            params.get("decoder.out_net.out_conv.bias".into())?.channel(mean + m, OUTPUT_LOG_SCALE);
        }
    }

    tch::no_grad(|| {
        for (name, p) in &params.values {
            let mut var = variables[name].shallow_clone();
            var.copy_(&Tensor::from_slice(&p.values).reshape(p.shape.as_slice()).to_kind(var.kind()));
        }
    });
    Ok(model)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::demo::tiny_models::{seeded_uniform, tiny_vdvae_config};
    use vdvae::{DecodeOptions, EncodeOptions, Latents, OutputDraw, PosteriorDraw};

    /// The property the demo rests on, through the reference's own draws (posterior samples as
    /// targets, prior temperature 1, sampled output): decode(encode(decode(z))) = decode(z) to
    /// within the output's noise (one grey level), for latents of unit variance.
    #[test]
    fn decoding_the_encoded_mosaics_gives_them_back() {
        let config = tiny_vdvae_config();
        let model = build(&config, 4, &[0.4, -0.3, 0.8]).unwrap();
        let (n, dim) = (12, config.latent_layout(4).unwrap().dim());
        let z = seeded_uniform(5, "latents", n * dim).into_iter().map(|u| (u * 3f64.sqrt()) as f32).collect();
        let latents = Latents { n_blocks: 4, dim, values: z };
        let mode = DecodeOptions { temperature: 0.0, output: OutputDraw::Mode, seed: 0, batch_size: n };
        let images = model.decode(&latents, &mode).unwrap();
        let encode = EncodeOptions { n_blocks: 4, posterior: PosteriorDraw::Sample, seed: 3, batch_size: 5 };
        let encoded = model.encode(&images, &encode).unwrap();
        let again =
            model.decode(&encoded, &DecodeOptions { seed: 7, batch_size: n, ..DecodeOptions::default() }).unwrap();
        let mut values = Vec::new();
        for (i, (a, b)) in images.iter().zip(&again).enumerate() {
            for (x, y, pa) in a.enumerate_pixels() {
                let pb = b.get_pixel(x, y);
                assert!(pa.0.iter().zip(pb.0).all(|(&u, v)| u.abs_diff(v) <= 1), "image {i} ({x}, {y}): {pa:?} {pb:?}");
                // A mosaic of 4x4-pixel cells.
                assert_eq!(pa, a.get_pixel(x / 4 * 4, y / 4 * 4), "image {i} ({x}, {y}) differs from its cell");
            }
            values.extend(a.as_raw().iter().map(|&v| f64::from(v)));
        }
        let mean = values.iter().sum::<f64>() / values.len() as f64;
        let sd = (values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / values.len() as f64).sqrt();
        assert!(sd > 20.0 && (80.0..150.0).contains(&mean), "pixel mean {mean}, sd {sd}: not a visible mosaic");
    }

    #[test]
    fn configurations_outside_the_construction_are_refused() {
        let config = tiny_vdvae_config();
        let err = build(&config, 11, &[0.0; 3]).unwrap_err().to_string();
        assert!(err.contains("11 latent blocks") && err.contains("has 10"), "{err}");
        let err = build(&config, 4, &[0.0; 2]).unwrap_err().to_string();
        assert!(err.contains("3 * (zdim - 3)"), "{err}");
        let skip = VdvaeConfig { dec_blocks: "1x2,4x1,8m4,8x2,16m8,16x2".into(), ..config };
        let err = build(&skip, 3, &[0.0; 3]).unwrap_err().to_string();
        assert!(err.contains("mix in the previous"), "{err}");
    }

    #[test]
    fn the_mixing_pseudo_inverse_is_a_right_inverse() {
        let Mixing { columns: mix, pinv_rows: unmix } = mixing(5, &[0.3, -0.7, 0.2, 0.9, -0.4, 0.1]).unwrap();
        for r in 0..3 {
            for c in 0..3 {
                let product: f64 = mix.iter().zip(&unmix).map(|(col, row)| col[r] * row[c]).sum();
                assert!((product - f64::from(r == c)).abs() < 1e-12, "(M M+)[{r}][{c}] = {product}");
            }
        }
    }
}
