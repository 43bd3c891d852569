//! How a run seed becomes the seed of each image and of each target group: the one rule every
//! caller uses (the workflow's image steps, a downstream stage, a test).
//!
//! - The configuration holds one run seed per random step (`[seeds]`): `vdvae_targets` (VDVAE
//!   posterior samples drawn by `extract`), `vdvae_decode` (stage 1: VDVAE prior and pixel
//!   sampling) and `diffusion` (stage 2: the img2img start noise).
//! - Generation: image `i` of an image set (its row in the predicted features, or the ROI
//!   index of the ROI-optimal images) gets the seed [`item_seed`]`(run_seed, i)`. The caller
//!   derives these seeds, here and nowhere else, and hands them to [`crate::Generator::generate`],
//!   one per item; a generator draws every random number of item `k` from `seeds[k]` alone (its
//!   own stream: ChaCha8 for VDVAE, libtorch's generator for Versatile Diffusion), and never
//!   derives seeds again. An image therefore depends only on its condition, the run seed and its
//!   index: never on the batch, the shard, or where an interrupted run resumed.
//! - Encoding: [`crate::Encoder::encode_at`] gets the run seed with the encoder and the index of
//!   the first item; item `first + j` draws from stream `first + j` of the run seed (VDVAE's
//!   posterior samples), so features do not depend on chunking either.
//! - Fitting: a regressor that draws random numbers (a downstream MLP's initialisation and
//!   mini-batches) draws those of `group` from [`group_seed`]`(its seed, group)`, so that a
//!   group's fit does not depend on which other groups are fitted, or in which order.
//!
//! The rule's name, [`ITEM_SEED_RULE`], goes into every image folder's settings record: images
//! made under another rule are refused as stale instead of mixed with new ones.

use std::ops::Range;

/// The name of the per-image seed rule, recorded with the images it made.
pub const ITEM_SEED_RULE: &str = "splitmix64(seed ^ index * 0x9E3779B97F4A7C15)";

/// The seed of item `index` of a set generated from `run_seed`: the SplitMix64 finaliser of
/// `run_seed ^ index * 0x9E3779B97F4A7C15`, so that neighbouring indices and neighbouring run
/// seeds give unrelated seeds.
pub fn item_seed(run_seed: u64, index: usize) -> u64 {
    splitmix64_mix(run_seed ^ (index as u64).wrapping_mul(SPLITMIX64_GAMMA))
}

/// SplitMix64's increment and output function (the `stable-hash` crate's): the crate's seeded
/// draws all go through it.
pub use stable_hash::{SPLITMIX64_GAMMA, splitmix64_mix};

/// The seed of target group `group` for a stage seeded with `seed`: SplitMix64's output function
/// applied after each byte of the group's name is folded in (`z = mix(z ^ byte)`, from `z = seed`),
/// so that the seed depends on the group's name alone, not on its position among the groups.
pub fn group_seed(seed: u64, group: &crate::TargetGroup) -> u64 {
    group.name().bytes().fold(seed, |z, byte| splitmix64_mix(z ^ u64::from(byte)))
}

/// The seeds of items `indices` of a set generated from `run_seed` ([`item_seed`] of each).
pub fn item_seeds(run_seed: u64, indices: Range<usize>) -> Vec<u64> {
    indices.map(|i| item_seed(run_seed, i)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SplitMix64 reference values (Vigna's `splitmix64.c`: the first outputs of the
    /// generator seeded with 0 are the finaliser applied to k * 0x9E3779B97F4A7C15, k = 1, 2, 3),
    /// which [`item_seed`] gives for run seed 0 and indices 1, 2, 3.
    #[test]
    fn item_seeds_are_splitmix64_outputs() {
        assert_eq!(item_seeds(0, 1..4), vec![0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
        assert_eq!(item_seeds(7, 5..8), (5..8).map(|i| item_seed(7, i)).collect::<Vec<_>>());
        assert_ne!(item_seed(1, 0), item_seed(0, 1));
    }

    /// The fold of the rule, written out for a one-letter and a two-letter name.
    #[test]
    fn group_seeds_fold_the_name_bytes() {
        let group = |name| crate::TargetGroup::new(name).unwrap();
        assert_eq!(group_seed(5, &group("a")), splitmix64_mix(5 ^ 0x61));
        assert_eq!(group_seed(5, &group("ab")), splitmix64_mix(splitmix64_mix(5 ^ 0x61) ^ 0x62));
        assert_ne!(group_seed(5, &crate::TargetGroup::CLIP_TEXT), group_seed(5, &crate::TargetGroup::CLIP_VISION));
    }
}
