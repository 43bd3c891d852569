//! How a run seed becomes the seed of each image: the one rule every composition uses (the
//! workflow's image steps, the in-memory [`crate::Pipeline`], a downstream caller).
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
}
