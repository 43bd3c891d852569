//! Hyper-parameters of a VDVAE and the block-string grammar that lays out its blocks.
//!
//! The grammar is the one of the reference `parse_layer_string`: comma-separated tokens,
//! `RxN` = N plain blocks at resolution R, `RdK` = one encoder block at R followed by an average
//! pool by K, `RmM` = one decoder block at R that first adds the nearest-upsampled decoder state of
//! resolution M, and a bare `R` = one plain block. [`VdvaeConfig::validate`] checks that a
//! configuration describes a network the reference code could run (resolutions reachable, widths
//! compatible), so that every configuration accepted here builds.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::VdvaeError;

/// Input normalisation applied to uint8 pixel values: `(x + shift) * scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalisation {
    /// Added to the raw pixel value (0..=255), e.g. -115.92961967 for ImageNet-64.
    pub shift: f64,
    /// Multiplies the shifted value, e.g. 1/69.37404 for ImageNet-64.
    pub scale: f64,
}

impl Normalisation {
    /// The ImageNet-64 statistics used by the official code and by brain-diffuser.
    pub const IMAGENET64: Normalisation = Normalisation { shift: -115.929_619_67, scale: 1.0 / 69.374_04 };
}

/// The hyper-parameters that determine the VDVAE architecture (names as in the reference `hps`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VdvaeConfig {
    /// Channel width of every resolution without a custom width.
    pub width: i64,
    /// Channels of each latent variable `z`.
    pub zdim: i64,
    /// Bottleneck width of every block = `int(width * bottleneck_multiple)`.
    pub bottleneck_multiple: f64,
    /// Encoder block string, e.g. `64x11,64d2,...`.
    pub enc_blocks: String,
    /// Decoder block string, e.g. `1x2,4m1,...`.
    pub dec_blocks: String,
    /// Side of the square input and output images.
    pub image_size: i64,
    /// Components of the discretised mixture of logistics.
    pub num_mixtures: i64,
    /// Decoder resolutions up to this value get a learned `bias_xs` input.
    #[serde(default = "default_no_bias_above")]
    pub no_bias_above: i64,
    /// Per-resolution widths `res:width,...`; empty means `width` everywhere.
    #[serde(default)]
    pub custom_width_str: String,
    /// Input normalisation (not part of the reference `hps`; ImageNet-64 by default).
    #[serde(default = "default_normalisation")]
    pub normalisation: Normalisation,
}

fn default_no_bias_above() -> i64 {
    64
}

fn default_normalisation() -> Normalisation {
    Normalisation::IMAGENET64
}

/// One encoder block: the resolution it runs at and an optional average-pool factor after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncoderBlockSpec {
    /// Spatial resolution of the block's input.
    pub res: i64,
    /// Average-pool factor applied after the residual add (`RdK` tokens).
    pub down_rate: Option<i64>,
}

/// One decoder block: its resolution and the coarser resolution it mixes in, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecoderBlockSpec {
    /// Spatial resolution of the block.
    pub res: i64,
    /// Resolution whose decoder state is nearest-upsampled and added first (`RmM` tokens).
    pub mixin: Option<i64>,
}

/// Which of the two block strings a token belongs to (they accept different suffixes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockString {
    /// `enc_blocks`: tokens `RxN`, `RdK`, `R`.
    Encoder,
    /// `dec_blocks`: tokens `RxN`, `RmM`, `R`.
    Decoder,
}

fn invalid(what: &str, message: String) -> VdvaeError {
    VdvaeError::Invalid { what: what.to_string(), message }
}

fn parse_positive(token: &str, part: &str, what: &str) -> Result<i64, VdvaeError> {
    match part.trim().parse::<i64>() {
        Ok(v) if v > 0 => Ok(v),
        _ => Err(invalid(what, format!("token {token:?}: {part:?} is not a positive integer"))),
    }
}

/// Parses a block string into `(resolution, modifier)` pairs, one per block, in order.
///
/// The modifier is the down-sampling rate for encoder strings and the mix-in resolution for
/// decoder strings. Errors name the offending token.
pub fn parse_block_string(s: &str, kind: BlockString) -> Result<Vec<(i64, Option<i64>)>, VdvaeError> {
    let what = match kind {
        BlockString::Encoder => "enc_blocks",
        BlockString::Decoder => "dec_blocks",
    };
    if s.trim().is_empty() {
        return Err(invalid(what, "the block string is empty".into()));
    }
    let mut layers = Vec::new();
    for token in s.split(',') {
        let token = token.trim();
        if let Some((res, count)) = token.split_once('x') {
            let res = parse_positive(token, res, what)?;
            let count = parse_positive(token, count, what)?;
            layers.extend((0..count).map(|_| (res, None)));
        } else if let Some((res, mixin)) = token.split_once('m') {
            if kind == BlockString::Encoder {
                return Err(invalid(what, format!("token {token:?}: mix-in (`m`) is decoder-only")));
            }
            layers.push((parse_positive(token, res, what)?, Some(parse_positive(token, mixin, what)?)));
        } else if let Some((res, rate)) = token.split_once('d') {
            if kind == BlockString::Decoder {
                return Err(invalid(what, format!("token {token:?}: down-sampling (`d`) is encoder-only")));
            }
            layers.push((parse_positive(token, res, what)?, Some(parse_positive(token, rate, what)?)));
        } else {
            layers.push((parse_positive(token, token, what)?, None));
        }
    }
    Ok(layers)
}

impl VdvaeConfig {
    /// The ImageNet-64 model behind `imagenet64-iter-1600000-model-ema.th` (125,005,860 parameters).
    pub fn imagenet64() -> Self {
        VdvaeConfig {
            width: 512,
            zdim: 16,
            bottleneck_multiple: 0.25,
            enc_blocks: "64x11,64d2,32x20,32d2,16x9,16d2,8x8,8d2,4x7,4d4,1x5".into(),
            dec_blocks: "1x2,4m1,4x3,8m4,8x7,16m8,16x15,32m16,32x31,64m32,64x12".into(),
            image_size: 64,
            num_mixtures: 10,
            no_bias_above: 64,
            custom_width_str: String::new(),
            normalisation: Normalisation::IMAGENET64,
        }
    }

    /// Reads the reference `hps` JSON object (as stored in fixture metadata); missing optional
    /// fields take the reference defaults, unknown fields are ignored.
    pub fn from_hps_json(hps: &str) -> Result<Self, VdvaeError> {
        let config: VdvaeConfig =
            serde_json::from_str(hps).map_err(|e| invalid("hps JSON", format!("{e} (in {hps:?})")))?;
        config.validate()?;
        Ok(config)
    }

    /// The encoder blocks in order.
    pub fn encoder_blocks(&self) -> Result<Vec<EncoderBlockSpec>, VdvaeError> {
        Ok(parse_block_string(&self.enc_blocks, BlockString::Encoder)?
            .into_iter()
            .map(|(res, down_rate)| EncoderBlockSpec { res, down_rate })
            .collect())
    }

    /// The decoder blocks in order (block index = position, top-down from coarse to fine).
    pub fn decoder_blocks(&self) -> Result<Vec<DecoderBlockSpec>, VdvaeError> {
        Ok(parse_block_string(&self.dec_blocks, BlockString::Decoder)?
            .into_iter()
            .map(|(res, mixin)| DecoderBlockSpec { res, mixin })
            .collect())
    }

    /// Channel width per resolution (`custom_width_str` overrides of `width`).
    pub fn widths(&self) -> Result<BTreeMap<i64, i64>, VdvaeError> {
        let mut map = BTreeMap::new();
        for token in self.custom_width_str.split(',').filter(|t| !t.trim().is_empty()) {
            let (res, width) = token
                .split_once(':')
                .ok_or_else(|| invalid("custom_width_str", format!("token {token:?} is not `res:width`")))?;
            map.insert(
                parse_positive(token, res, "custom_width_str")?,
                parse_positive(token, width, "custom_width_str")?,
            );
        }
        Ok(map)
    }

    /// Channel width used at resolution `res`.
    pub fn width_at(&self, res: i64) -> Result<i64, VdvaeError> {
        Ok(self.widths()?.get(&res).copied().unwrap_or(self.width))
    }

    /// Bottleneck width of blocks whose outer width is `width` (`int(width * bottleneck_multiple)`).
    pub fn bottleneck(&self, width: i64) -> i64 {
        (width as f64 * self.bottleneck_multiple) as i64
    }

    /// The decoder resolutions that get a `bias_xs` entry, in the order of `decoder.bias_xs.{i}`.
    pub fn bias_resolutions(&self) -> Result<Vec<i64>, VdvaeError> {
        let mut res: Vec<i64> = self.decoder_blocks()?.iter().map(|b| b.res).collect();
        res.sort_unstable();
        res.dedup();
        Ok(res.into_iter().filter(|&r| r <= self.no_bias_above).collect())
    }

    /// Checks that the configuration describes a network the reference code could run.
    ///
    /// Resolutions of encoder blocks must follow from `image_size` and the down-sampling rates;
    /// every decoder resolution must have an encoder activation; mix-in sources must exist and
    /// divide the block's resolution; widths must be compatible where channels are sliced or padded.
    pub fn validate(&self) -> Result<(), VdvaeError> {
        for (name, v) in [
            ("width", self.width),
            ("zdim", self.zdim),
            ("image_size", self.image_size),
            ("num_mixtures", self.num_mixtures),
        ] {
            if v <= 0 {
                return Err(invalid(name, format!("must be positive, got {v}")));
            }
        }
        if !(self.normalisation.scale.is_finite() && self.normalisation.shift.is_finite()) {
            return Err(invalid("normalisation", format!("{:?} is not finite", self.normalisation)));
        }
        let widths = self.widths()?;
        let width_at = |r: i64| widths.get(&r).copied().unwrap_or(self.width);
        for (&r, &w) in widths.iter() {
            if self.bottleneck(w) <= 0 {
                return Err(invalid(
                    "custom_width_str",
                    format!("width {w} at resolution {r} has an empty bottleneck"),
                ));
            }
        }
        if self.bottleneck(self.width) <= 0 {
            return Err(invalid(
                "bottleneck_multiple",
                format!("int({} * {}) is not positive", self.width, self.bottleneck_multiple),
            ));
        }
        if width_at(self.image_size) != self.width {
            return Err(invalid(
                "custom_width_str",
                format!(
                    "the image resolution {} must keep width {} (in_conv and gain/bias use it)",
                    self.image_size, self.width
                ),
            ));
        }

        // Encoder: walk the resolutions.
        let mut current = self.image_size;
        let mut activations = vec![current];
        for (i, block) in self.encoder_blocks()?.iter().enumerate() {
            if block.res != current {
                return Err(invalid(
                    "enc_blocks",
                    format!("block {i} is declared at resolution {} but its input is {current}x{current}", block.res),
                ));
            }
            if let Some(d) = block.down_rate {
                if current % d != 0 {
                    return Err(invalid("enc_blocks", format!("block {i}: {current} is not divisible by {d}")));
                }
                let next = current / d;
                if width_at(next) < width_at(current) {
                    return Err(invalid(
                        "custom_width_str",
                        format!(
                            "encoder block {i} pads {} channels to width {} of resolution {next}",
                            width_at(current),
                            width_at(next)
                        ),
                    ));
                }
                current = next;
            }
            activations.push(current);
        }

        // Decoder: every block needs an activation; mix-ins need an existing state.
        let bias = self.bias_resolutions()?;
        let mut states: Vec<i64> = bias.clone();
        let blocks = self.decoder_blocks()?;
        for (i, block) in blocks.iter().enumerate() {
            if !activations.contains(&block.res) {
                return Err(invalid(
                    "dec_blocks",
                    format!("block {i} runs at resolution {} but the encoder produces only {activations:?}", block.res),
                ));
            }
            if let Some(m) = block.mixin {
                if !states.contains(&m) {
                    return Err(invalid(
                        "dec_blocks",
                        format!("block {i} mixes in resolution {m}, which has no state yet"),
                    ));
                }
                if m > block.res || block.res % m != 0 {
                    return Err(invalid("dec_blocks", format!("block {i}: mix-in {m} does not divide {}", block.res)));
                }
                if width_at(m) < width_at(block.res) {
                    return Err(invalid(
                        "custom_width_str",
                        format!(
                            "decoder block {i} takes {} channels from resolution {m}, which has {}",
                            width_at(block.res),
                            width_at(m)
                        ),
                    ));
                }
            }
            states.push(block.res);
        }
        if !states.contains(&self.image_size) {
            return Err(invalid("dec_blocks", format!("no decoder state at the image resolution {}", self.image_size)));
        }
        Ok(())
    }

    /// Every parameter of the model, name and shape, in module order, computed from the
    /// configuration alone (nothing is allocated). This is what a checkpoint must contain.
    pub fn parameter_shapes(&self) -> Result<Vec<(String, Vec<i64>)>, VdvaeError> {
        self.validate()?;
        let mut out = Vec::new();
        let conv = |out: &mut Vec<(String, Vec<i64>)>, name: String, i: i64, o: i64, k: i64| {
            out.push((format!("{name}.weight"), vec![o, i, k, k]));
            out.push((format!("{name}.bias"), vec![o]));
        };
        let block = |out: &mut Vec<(String, Vec<i64>)>, name: String, i: i64, m: i64, o: i64, res: i64| {
            let k = if res > 2 { 3 } else { 1 };
            conv(out, format!("{name}.c1"), i, m, 1);
            conv(out, format!("{name}.c2"), m, m, k);
            conv(out, format!("{name}.c3"), m, m, k);
            conv(out, format!("{name}.c4"), m, o, 1);
        };
        conv(&mut out, "encoder.in_conv".into(), 3, self.width, 3);
        for (i, b) in self.encoder_blocks()?.iter().enumerate() {
            let w = self.width_at(b.res)?;
            block(&mut out, format!("encoder.enc_blocks.{i}"), w, self.bottleneck(w), w, b.res);
        }
        for (i, b) in self.decoder_blocks()?.iter().enumerate() {
            let w = self.width_at(b.res)?;
            let m = self.bottleneck(w);
            let p = format!("decoder.dec_blocks.{i}");
            block(&mut out, format!("{p}.enc"), 2 * w, m, 2 * self.zdim, b.res);
            block(&mut out, format!("{p}.prior"), w, m, 2 * self.zdim + w, b.res);
            conv(&mut out, format!("{p}.z_proj"), self.zdim, w, 1);
            block(&mut out, format!("{p}.resnet"), w, m, w, b.res);
        }
        for (i, r) in self.bias_resolutions()?.iter().enumerate() {
            out.push((format!("decoder.bias_xs.{i}"), vec![1, self.width_at(*r)?, *r, *r]));
        }
        conv(&mut out, "decoder.out_net.out_conv".into(), self.width, self.num_mixtures * 10, 1);
        out.push(("decoder.gain".into(), vec![1, self.width, 1, 1]));
        out.push(("decoder.bias".into(), vec![1, self.width, 1, 1]));
        Ok(out)
    }

    /// Shapes `(zdim, res, res)` of the latents of the first `n_blocks` decoder blocks.
    pub fn latent_layout(&self, n_blocks: usize) -> Result<crate::LatentLayout, VdvaeError> {
        let blocks = self.decoder_blocks()?;
        if n_blocks == 0 || n_blocks > blocks.len() {
            return Err(invalid(
                "n_blocks",
                format!("{n_blocks} latent blocks requested; the decoder has {}", blocks.len()),
            ));
        }
        Ok(crate::LatentLayout::new(blocks[..n_blocks].iter().map(|b| [self.zdim, b.res, b.res]).collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grammar_expands_counts_and_keeps_modifiers() {
        let enc = parse_block_string("16x2,16d2,8,4d4", BlockString::Encoder).unwrap();
        assert_eq!(enc, vec![(16, None), (16, None), (16, Some(2)), (8, None), (4, Some(4))]);
        let dec = parse_block_string("1x2,4m1", BlockString::Decoder).unwrap();
        assert_eq!(dec, vec![(1, None), (1, None), (4, Some(1))]);
    }

    #[test]
    fn grammar_rejects_bad_tokens_by_name() {
        for (s, kind) in [
            ("16x", BlockString::Encoder),
            ("a", BlockString::Encoder),
            ("4m1", BlockString::Encoder),
            ("4d2", BlockString::Decoder),
            ("", BlockString::Decoder),
            ("-4", BlockString::Decoder),
        ] {
            let err = parse_block_string(s, kind).unwrap_err().to_string();
            assert!(err.contains("blocks"), "{s}: {err}");
        }
    }

    #[test]
    fn imagenet64_layout_matches_the_reference_description() {
        let c = VdvaeConfig::imagenet64();
        c.validate().unwrap();
        let enc = c.encoder_blocks().unwrap();
        let dec = c.decoder_blocks().unwrap();
        assert_eq!((enc.len(), dec.len()), (65, 75));
        let down: Vec<usize> = enc.iter().enumerate().filter(|(_, b)| b.down_rate.is_some()).map(|(i, _)| i).collect();
        assert_eq!(down, vec![11, 32, 42, 51, 59]);
        assert_eq!(dec[30], DecoderBlockSpec { res: 32, mixin: Some(16) });
        assert_eq!(dec[62], DecoderBlockSpec { res: 64, mixin: Some(32) });
        assert_eq!(c.bias_resolutions().unwrap(), vec![1, 4, 8, 16, 32, 64]);
        assert_eq!(c.latent_layout(31).unwrap().dim(), 91_168);
        assert_eq!(c.latent_layout(75).unwrap().dim(), 1_451_040);
    }

    #[test]
    fn invalid_configs_are_rejected_with_the_reason() {
        let mut c = VdvaeConfig::imagenet64();
        c.enc_blocks = "64x2,32x2".into();
        assert!(c.validate().unwrap_err().to_string().contains("block 2"));
        let mut c = VdvaeConfig::imagenet64();
        c.dec_blocks = "1x2,4m2,64".into();
        assert!(c.validate().unwrap_err().to_string().contains("mixes in resolution 2"));
        let mut c = VdvaeConfig::imagenet64();
        c.dec_blocks = "1x2,2".into();
        assert!(c.validate().unwrap_err().to_string().contains("resolution 2"));
        let mut c = VdvaeConfig::imagenet64();
        c.no_bias_above = 32;
        c.dec_blocks = "1x2,4m1,4x3,8m4,16m8,32m16".into();
        assert!(c.validate().unwrap_err().to_string().contains("image resolution 64"));
    }

    #[test]
    fn hps_json_round_trip_with_reference_defaults() {
        let c = VdvaeConfig::from_hps_json(
            r#"{"width": 16, "zdim": 4, "bottleneck_multiple": 0.25, "enc_blocks": "16x2,16d2,8x2,8d2,4x2,4d4,1x2",
                "dec_blocks": "1x2,4m1,4x1,8m4,8x2,16m8,16x2", "image_size": 16, "num_mixtures": 3, "extra": 1}"#,
        )
        .unwrap();
        assert_eq!((c.width, c.zdim, c.no_bias_above, c.custom_width_str.as_str()), (16, 4, 64, ""));
        assert!(VdvaeConfig::from_hps_json(r#"{"width": 16}"#).is_err());
    }
}
