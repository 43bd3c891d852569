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
    pub fn range(&self, len: usize) -> Range<usize> {
        let part = |k: usize| k * len / self.count;
        part(self.index - 1)..part(self.index)
    }
}

impl FromStr for Shard {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (k, n) = text.split_once('/').ok_or_else(|| format!("shard '{text}': expected K/N, e.g. 2/8"))?;
        let parse = |s: &str| s.trim().parse::<usize>().map_err(|_| format!("shard '{text}': '{s}' is not a number"));
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
    }
}
