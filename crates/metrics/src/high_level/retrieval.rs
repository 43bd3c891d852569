//! Image and brain retrieval, as MindEye defines them (Scotti et al. 2023, and MindEye2's Table 1,
//! where Brain-Diffuser scores 18.8 % / 26.3 %).
//!
//! For each of `repeats` draws, `candidates` test items are chosen at random without replacement.
//! Within them, every predicted embedding (from the brain) is compared with every true embedding
//! (from the image) by cosine similarity of the flattened, L2-normalised rows. **Image retrieval**
//! counts the predicted embeddings whose most similar true embedding is their own (brain -> image,
//! MindEye's `fwd`); **brain retrieval** counts the true embeddings whose most similar predicted
//! embedding is their own (image -> brain, `bwd`). Both are top-1 fractions (chance
//! `1 / candidates`), averaged over the draws.
//!
//! The draws are seeded (ChaCha8, `rand::seq::index::sample`): the same seed gives the same
//! candidates on every machine, and the seed is recorded in [`RetrievalScores`]. They are not
//! numpy's draws, so a score equals MindEye's in expectation, not draw for draw. A tie with the own
//! item, or a NaN similarity, counts as a miss (as for two-way identification).

use ndarray::{ArrayView2, Axis};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::cosine_similarity;
use crate::MetricsError;

/// How retrieval is scored: MindEye's 300 candidates and 30 draws ([`RetrievalOptions::MINDEYE`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetrievalOptions {
    /// Items per draw (the true item among them).
    pub candidates: usize,
    /// Draws averaged.
    pub repeats: usize,
    /// Seed of the draws.
    pub seed: u64,
}

impl RetrievalOptions {
    /// MindEye's protocol: top-1 among 300 random candidates, averaged over 30 draws (seed 0).
    pub const MINDEYE: RetrievalOptions = RetrievalOptions { candidates: 300, repeats: 30, seed: 0 };
}

/// Image and brain retrieval of a set of predicted embeddings, with how they were scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetrievalScores {
    /// Brain -> image top-1 fraction.
    pub image: f64,
    /// Image -> brain top-1 fraction.
    pub brain: f64,
    /// The items the candidates were drawn from.
    pub items: usize,
    /// The options scored with (candidates, draws, seed).
    pub options: RetrievalOptions,
}

/// The candidate sets of every draw: `options.repeats` sets of `options.candidates` distinct
/// indices below `items`. Fewer items than candidates, fewer than 2 candidates or no draw is an
/// error naming the numbers.
pub fn candidate_sets(items: usize, options: &RetrievalOptions) -> Result<Vec<Vec<usize>>, MetricsError> {
    let invalid = |message: String| MetricsError::Invalid { what: "retrieval".into(), message };
    if options.candidates < 2 || options.candidates > items {
        return Err(invalid(format!(
            "{} candidates per draw from {items} items: expected 2 to {items}",
            options.candidates
        )));
    }
    if options.repeats == 0 {
        return Err(invalid("0 draws: expected at least 1".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    Ok((0..options.repeats).map(|_| rand::seq::index::sample(&mut rng, items, options.candidates).into_vec()).collect())
}

/// Retrieval from the similarity matrix `s[i, j] = cos(predicted i, true j)` of all items.
pub fn retrieval_from_similarity(
    s: ArrayView2<f64>,
    options: &RetrievalOptions,
) -> Result<RetrievalScores, MetricsError> {
    let items = s.nrows();
    if s.ncols() != items {
        return Err(MetricsError::Invalid {
            what: "retrieval".into(),
            message: format!("a square similarity matrix expected, got {:?}", s.dim()),
        });
    }
    let (mut image, mut brain) = (0usize, 0usize);
    let sets = candidate_sets(items, options)?;
    for set in &sets {
        for &i in set {
            // `own` must beat every other candidate (a tie or NaN is a miss).
            let own = s[[i, i]];
            let others = || set.iter().filter(move |&&j| j != i);
            image += usize::from(others().all(|&j| s[[i, j]] < own));
            brain += usize::from(others().all(|&j| s[[j, i]] < own));
        }
    }
    let trials = (options.candidates * options.repeats) as f64;
    Ok(RetrievalScores { image: image as f64 / trials, brain: brain as f64 / trials, items, options: *options })
}

/// Image and brain retrieval of `predicted` embeddings against the `truth` (one flattened
/// embedding per row, the same items in the same order).
pub fn retrieval(
    truth: ArrayView2<f32>,
    predicted: ArrayView2<f32>,
    options: &RetrievalOptions,
) -> Result<RetrievalScores, MetricsError> {
    let s = cosine_similarity(predicted, truth)?;
    debug_assert_eq!(s.len_of(Axis(0)), truth.nrows());
    retrieval_from_similarity(s.view(), options)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    /// Rows of a seeded pseudo-random matrix (a small LCG: the values only need to be varied).
    fn matrix(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        Array2::from_shape_fn((rows, cols), |_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 33) as f32 / (1u64 << 31) as f32) - 0.5
        })
    }

    /// The definition written out: per draw, per item, the cosine of every pair computed in f64
    /// from the rows, and the argmax taken by comparing with every other candidate.
    fn brute_force(truth: &Array2<f32>, predicted: &Array2<f32>, options: &RetrievalOptions) -> (f64, f64) {
        let cos = |a: ndarray::ArrayView1<f32>, b: ndarray::ArrayView1<f32>| {
            let dot: f64 = a.iter().zip(b).map(|(&x, &y)| f64::from(x) * f64::from(y)).sum();
            let na: f64 = a.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>().sqrt();
            dot / (na * nb)
        };
        let (mut image, mut brain) = (0, 0);
        for set in candidate_sets(truth.nrows(), options).unwrap() {
            for &i in &set {
                let best_image = set
                    .iter()
                    .copied()
                    .max_by(|&a, &b| {
                        cos(predicted.row(i), truth.row(a)).total_cmp(&cos(predicted.row(i), truth.row(b)))
                    })
                    .unwrap();
                let best_brain = set
                    .iter()
                    .copied()
                    .max_by(|&a, &b| {
                        cos(predicted.row(a), truth.row(i)).total_cmp(&cos(predicted.row(b), truth.row(i)))
                    })
                    .unwrap();
                image += usize::from(best_image == i);
                brain += usize::from(best_brain == i);
            }
        }
        let trials = (options.candidates * options.repeats) as f64;
        (image as f64 / trials, brain as f64 / trials)
    }

    #[test]
    fn scores_equal_the_brute_force_definition() {
        let truth = matrix(60, 24, 1);
        // Predictions: the truth plus noise, so that some items are retrieved and some are not.
        let predicted = &truth + &(matrix(60, 24, 2) * 1.6f32);
        let options = RetrievalOptions { candidates: 25, repeats: 7, seed: 11 };
        let got = retrieval(truth.view(), predicted.view(), &options).unwrap();
        let (image, brain) = brute_force(&truth, &predicted, &options);
        assert_eq!((got.image, got.brain), (image, brain));
        assert!(got.image > 0.1 && got.image < 0.95, "a discriminating case: {got:?}");
        assert_ne!(got.image, got.brain, "the two directions are different scores: {got:?}");
        assert_eq!((got.items, got.options), (60, options));
    }

    #[test]
    fn closed_forms_perfect_swapped_and_seeded() {
        let truth = matrix(40, 8, 3);
        let options = RetrievalOptions { candidates: 10, repeats: 5, seed: 4 };
        let perfect = retrieval(truth.view(), truth.view(), &options).unwrap();
        assert_eq!((perfect.image, perfect.brain), (1.0, 1.0));
        // Each prediction is another item's truth (a shift by one) and every item is a candidate:
        // the other item always wins, nothing is retrieved.
        let shifted = Array2::from_shape_fn(truth.dim(), |(i, j)| truth[[(i + 1) % 40, j]]);
        let all = RetrievalOptions { candidates: 40, ..options };
        let none = retrieval(truth.view(), shifted.view(), &all).unwrap();
        assert_eq!((none.image, none.brain), (0.0, 0.0));
        // Same seed, same draws; another seed, other draws.
        assert_eq!(candidate_sets(40, &options).unwrap(), candidate_sets(40, &options).unwrap());
        assert_ne!(
            candidate_sets(40, &options).unwrap(),
            candidate_sets(40, &RetrievalOptions { seed: 5, ..options }).unwrap()
        );
        for set in candidate_sets(40, &options).unwrap() {
            let mut sorted = set.clone();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), 10, "distinct candidates: {set:?}");
        }
    }

    #[test]
    fn impossible_options_are_errors_naming_the_numbers() {
        let err = candidate_sets(40, &RetrievalOptions::MINDEYE).unwrap_err().to_string();
        assert!(err.contains("300 candidates per draw from 40 items"), "{err}");
        let err = candidate_sets(40, &RetrievalOptions { candidates: 10, repeats: 0, seed: 0 }).unwrap_err();
        assert!(err.to_string().contains("0 draws"), "{err}");
    }
}
