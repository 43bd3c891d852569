//! Two tiny integer hashes whose outputs are fixed by their published definitions, so that seeds,
//! synthetic weights and fingerprints written by one build (or by a Python generator) are the same
//! in every other: FNV-1a 64 (Fowler, Noll & Vo) and SplitMix64 (Steele, Lea & Flood 2014;
//! Vigna's `splitmix64.c`).
//!
//! Written out rather than taken from a crate: `std`'s hashers are documented to change between
//! releases, and each function is three lines whose values the tests pin to the published vectors.

/// FNV-1a 64's offset basis: the hash of no bytes.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64's prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// FNV-1a 64 over `bytes`, continuing from `hash` (start from [`FNV_OFFSET`]), so that several
/// pieces hash as their concatenation.
pub fn fnv1a64_continue(hash: u64, bytes: &[u8]) -> u64 {
    bytes.iter().fold(hash, |h, &b| (h ^ u64::from(b)).wrapping_mul(FNV_PRIME))
}

/// FNV-1a 64 of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    fnv1a64_continue(FNV_OFFSET, bytes)
}

/// SplitMix64's increment (the golden ratio in 64 bits).
pub const SPLITMIX64_GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;

/// SplitMix64's output function: a bijection of 64-bit words that scatters neighbouring inputs.
pub fn splitmix64_mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// SplitMix64 output number `index` (0-based) of the generator seeded with `seed`, computed
/// directly (the state after `index + 1` steps is `seed + (index + 1) * gamma`).
pub fn splitmix64(seed: u64, index: u64) -> u64 {
    splitmix64_mix(seed.wrapping_add(index.wrapping_add(1).wrapping_mul(SPLITMIX64_GAMMA)))
}

/// Value number `index` of the SplitMix64 stream `seed`, uniform in [-1, 1) with 53 random bits
/// (the top 53 bits of [`splitmix64`] scaled by 2^-53, doubled, less one: exact in f64).
pub fn symmetric_uniform(seed: u64, index: u64) -> f64 {
    (splitmix64(seed, index) >> 11) as f64 * (1.0 / (1u64 << 53) as f64) * 2.0 - 1.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
        assert_eq!(fnv1a64_continue(fnv1a64(b"foo"), b"bar"), fnv1a64(b"foobar"));
    }

    #[test]
    fn splitmix64_matches_the_reference_generator() {
        // splitmix64.c seeded with 0: its first three outputs.
        let first: Vec<u64> = (0..3).map(|i| splitmix64(0, i)).collect();
        assert_eq!(first, vec![0xE220_A839_7B1D_CDAF, 0x6E78_9E6A_A1B9_65F4, 0x06C4_5D18_8009_454F]);
        // Seeded with 1234567 (the reference program's example seed): outputs 0 and 1.
        assert_eq!(splitmix64(1_234_567, 0), 6_457_827_717_110_365_317);
        assert_eq!(splitmix64(1_234_567, 1), 3_203_168_211_198_807_973);
        // 0xE220A8397B1DCDAF >> 11 = 7_956_156_453_446_585, over 2^53, times 2 (over 2^52), less 1.
        assert_eq!(symmetric_uniform(0, 0), 7_956_156_453_446_585.0 / 4_503_599_627_370_496.0 - 1.0);
    }
}
