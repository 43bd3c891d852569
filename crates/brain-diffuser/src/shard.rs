//! Splitting work over machines: `--shard K/N` gives the K-th of N contiguous parts of a list of
//! items, so several GPUs or a SLURM array job (`--shard $((SLURM_ARRAY_TASK_ID+1))/$SLURM_ARRAY_TASK_COUNT`)
//! each take a part, and their outputs, named by item, merge without coordination.

use std::fmt;
use std::ops::Range;
use std::str::FromStr;

/// The K-th (1-based) of N parts of a work list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    index: usize,
    count: usize,
}

impl Shard {
    /// The whole list as one part.
    pub const WHOLE: Shard = Shard { index: 1, count: 1 };

    /// Part `index` (1-based) of `count`.
    pub fn new(index: usize, count: usize) -> Result<Self, String> {
        if count == 0 || index == 0 || index > count {
            return Err(format!("shard {index}/{count}: expected K/N with 1 <= K <= N"));
        }
        Ok(Self { index, count })
    }

    /// The items of a list of `len` this shard takes: contiguous, sizes differing by at most one,
    /// together covering every item exactly once.
    ///
    /// Part `k` ends at `floor(k * len / N)`, computed exactly in 128 bits for every `K/N` and `len`.
    pub fn range(&self, len: usize) -> Range<usize> {
        // k <= N and len both fit in 64 bits, so k * len fits in 128; the quotient is at most len.
        let part = |k: usize| {
            let end = (k as u128 * len as u128) / self.count as u128;
            usize::try_from(end).unwrap_or(len)
        };
        part(self.index - 1)..part(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (k, n) = text.split_once('/').ok_or_else(|| format!("shard '{text}': expected K/N, e.g. 2/8"))?;
        let parse = |s: &str| {
            s.trim().parse::<usize>().map_err(|_| {
                format!("shard '{text}': '{s}' is not a whole number from 1 to {}; expected K/N, e.g. 2/8", usize::MAX)
            })
        };
        Shard::new(parse(k)?, parse(n)?)
    }
}

impl fmt::Display for Shard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_item_exactly_once_and_balance() {
        for len in [0usize, 1, 7, 982, 8859] {
            for count in 1..=9 {
                let ranges: Vec<_> = (1..=count).map(|k| Shard::new(k, count).unwrap().range(len)).collect();
                assert_eq!(ranges.first().unwrap().start, 0);
                assert_eq!(ranges.last().unwrap().end, len);
                for pair in ranges.windows(2) {
                    assert_eq!(pair[0].end, pair[1].start, "gap or overlap for len {len}, {count} shards");
                }
                let sizes: Vec<_> = ranges.iter().map(|r| r.len()).collect();
                let (min, max) = (sizes.iter().min().unwrap(), sizes.iter().max().unwrap());
                assert!(max - min <= 1, "unbalanced {sizes:?}");
            }
        }
    }

    #[test]
    fn parses_and_rejects() {
        assert_eq!("3/8".parse::<Shard>(), Ok(Shard::new(3, 8).unwrap()));
        assert_eq!("3/8".parse::<Shard>().unwrap().to_string(), "3/8");
        for bad in ["0/4", "5/4", "1/0", "2", "a/4", "1/b"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad} accepted");
        }
        assert_eq!(Shard::WHOLE.range(10), 0..10);
        let huge = format!("1/{}0", usize::MAX);
        let err = huge.parse::<Shard>().unwrap_err();
        assert!(err.contains("not a whole number") && err.contains("K/N"), "{err}");
    }

    #[test]
    fn the_largest_shards_do_not_overflow() {
        let max = usize::MAX;
        let last = Shard::new(max, max).unwrap();
        assert_eq!(last.range(max), max - 1..max);
        assert_eq!(last.range(0), 0..0);
        // (N - 1) * 982 / N = 981.99...: the last of N > 982 parts takes the last item.
        assert_eq!(last.range(982), 981..982);
        assert_eq!(Shard::new(max - 1, max).unwrap().range(982), 981..981);
        assert_eq!(Shard::new(1, max).unwrap().range(max), 0..1);
        assert_eq!(Shard::new(max / 2, max).unwrap().range(max), max / 2 - 1..max / 2);
        assert_eq!(Shard::new(2, 2).unwrap().range(max), max / 2..max);
    }

    use proptest::prelude::*;

    /// A shard of any size and a list of any length: (K, N, len).
    fn any_shard() -> impl Strategy<Value = (usize, usize, usize)> {
        let count = prop_oneof![1..=16usize, 1..=usize::MAX, Just(usize::MAX)];
        let len = prop_oneof![0..=100usize, any::<usize>(), Just(usize::MAX)];
        (count, len).prop_flat_map(|(n, len)| (1..=n, Just(n), Just(len)))
    }

    proptest! {
        /// Every part has floor(len/N) or ceil(len/N) items, the part before it ends where it starts,
        /// the first starts at 0 and the last ends at len (so the parts tile the list).
        #[test]
        fn any_shard_of_any_list_is_balanced_and_contiguous((k, n, len) in any_shard()) {
            let range = Shard::new(k, n).unwrap().range(len);
            prop_assert!(range.start <= range.end && range.end <= len, "{k}/{n} of {len}: {range:?}");
            let (small, big) = (len / n, len / n + usize::from(len % n != 0));
            prop_assert!(range.len() == small || range.len() == big, "{k}/{n} of {len}: {} items", range.len());
            if k > 1 {
                prop_assert_eq!(Shard::new(k - 1, n).unwrap().range(len).end, range.start);
            } else {
                prop_assert_eq!(range.start, 0);
            }
            if k < n {
                prop_assert_eq!(Shard::new(k + 1, n).unwrap().range(len).start, range.end);
            } else {
                prop_assert_eq!(range.end, len);
            }
        }

        /// For a handful of parts, their sizes add up to the list's length.
        #[test]
        fn small_shardings_cover_every_item_once(n in 1..=64usize, len in any::<usize>()) {
            let mut total = 0usize;
            let mut next = 0usize;
            for k in 1..=n {
                let range = Shard::new(k, n).unwrap().range(len);
                prop_assert_eq!(range.start, next);
                next = range.end;
                total = total.checked_add(range.len()).expect("sizes sum to len <= usize::MAX");
            }
            prop_assert_eq!(total, len);
        }

        /// Parsing never panics and accepts exactly the K/N with 1 <= K <= N.
        #[test]
        fn parsing_any_text_never_panics(text in ".{0,40}", k in any::<u64>(), n in any::<u64>()) {
            let _ = text.parse::<Shard>();
            let parsed = format!("{k}/{n}").parse::<Shard>();
            prop_assert_eq!(parsed.is_ok(), k >= 1 && k <= n, "{}/{}: {:?}", k, n, parsed);
        }
    }
}
