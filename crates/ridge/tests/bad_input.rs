//! Bad input gives a typed error that says which input is wrong.

use ndarray::{Array2, array};
use ridge::{
    AlphaGrid, AlphaPolicy, AlphaScope, Criterion, FitOptions, ProblemOptions, RidgeError, RidgeProblem, Streaming,
};

fn small() -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((6, 4), |(i, j)| ((i * 7 + j * 3) % 5) as f32 + 0.1 * j as f32);
    let y = Array2::from_shape_fn((6, 3), |(i, j)| (i as f32) * 0.5 - j as f32);
    (x, y)
}

#[test]
fn nan_or_infinity_in_x_is_named() {
    let (mut x, _) = small();
    x[[2, 3]] = f32::NAN;
    match RidgeProblem::new(x.view(), ProblemOptions::default()) {
        Err(RidgeError::NonFinite { what, row: 2, col: 3, .. }) => assert!(what.contains("X")),
        other => panic!("expected NonFinite, got {other:?}"),
    }
    let (mut x, _) = small();
    x[[0, 1]] = f32::INFINITY;
    assert!(matches!(
        RidgeProblem::new(x.view(), ProblemOptions::default()),
        Err(RidgeError::NonFinite { row: 0, col: 1, .. })
    ));
}

#[test]
fn nan_or_infinity_in_targets_is_named_with_its_column() {
    let (x, clean) = small();
    let problem = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    // Block size 1: the bad value sits in a later block (of columns, or of rows: row blocks
    // after the first are checked through their shifted sums), or in the first block of rows;
    // its global row and column and its value are still reported.
    for (bad_row, bad_col) in [(4, 2), (1, 0)] {
        let mut y = clean.clone();
        y[[bad_row, bad_col]] = f32::NEG_INFINITY;
        for streaming in [Streaming::Columns, Streaming::Rows] {
            let options = FitOptions { block_cols: 1, streaming, ..FitOptions::default() };
            match problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(1.0), &[], &options) {
                Err(RidgeError::NonFinite { what, row, col, value }) if (row, col) == (bad_row, bad_col) => {
                    assert!(what.contains("targets"));
                    assert_eq!(value, f64::NEG_INFINITY);
                }
                other => panic!("{streaming:?}: expected NonFinite at ({bad_row}, {bad_col}), got {other:?}"),
            }
        }
    }
    let mut y = clean.clone();
    y[[4, 2]] = f32::NEG_INFINITY;
    // The weights read blocks of their own.
    match problem.weights_by_block(&mut y.view(), &vec![1.0; y.ncols()], 1, |_| Ok(())) {
        Err(RidgeError::NonFinite { row: 4, col: 2, .. }) => {}
        other => panic!("weights: expected NonFinite, got {other:?}"),
    }
    let x_bad = array![[f32::NAN, 0.0, 0.0, 0.0]];
    assert!(matches!(problem.evaluation_set(x_bad.view()), Err(RidgeError::NonFinite { .. })));
}

#[test]
fn mismatched_rows_and_columns_are_shape_errors() {
    let (x, _) = small();
    let problem = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    let y = Array2::<f32>::zeros((5, 2));
    match problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(1.0), &[], &FitOptions::default()) {
        Err(RidgeError::Shape { expected: 6, got: 5, what }) => assert!(what.contains("rows")),
        other => panic!("expected Shape, got {other:?}"),
    }
    let x_test = Array2::<f32>::zeros((2, 5));
    assert!(matches!(problem.evaluation_set(x_test.view()), Err(RidgeError::Shape { expected: 4, got: 5, .. })));
    let (_, y) = small();
    assert!(matches!(
        problem.fit_predict(&mut y.view(), &AlphaPolicy::PerTarget(vec![1.0; 2]), &[], &FitOptions::default()),
        Err(RidgeError::Shape { expected: 3, got: 2, .. })
    ));
}

#[test]
fn non_positive_alpha_is_rejected() {
    let (x, y) = small();
    let problem = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        let r = problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(bad), &[], &FitOptions::default());
        assert!(matches!(r, Err(RidgeError::InvalidAlpha { .. })), "alpha {bad}: {r:?}");
    }
    let grid = AlphaPolicy::Grid(AlphaGrid {
        alphas: vec![1.0, -2.0],
        criterion: Criterion::Gcv,
        scope: AlphaScope::PerTarget,
    });
    match problem.fit_predict(&mut y.view(), &grid, &[], &FitOptions::default()) {
        Err(RidgeError::InvalidAlpha { what, alpha }) => {
            assert_eq!(alpha, -2.0);
            assert!(what.contains("entry 1"));
        }
        other => panic!("expected InvalidAlpha, got {other:?}"),
    }
    let r =
        problem.fit_predict(&mut y.view(), &AlphaPolicy::PerTarget(vec![1.0, 0.0, 1.0]), &[], &FitOptions::default());
    assert!(matches!(r, Err(RidgeError::InvalidAlpha { .. })));
}

#[test]
fn empty_data_is_rejected() {
    let x = Array2::<f32>::zeros((0, 4));
    assert!(matches!(RidgeProblem::new(x.view(), ProblemOptions::default()), Err(RidgeError::Empty { .. })));
    let x = Array2::<f32>::zeros((3, 0));
    assert!(matches!(RidgeProblem::new(x.view(), ProblemOptions::default()), Err(RidgeError::Empty { .. })));
    let (x, _) = small();
    let problem = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    let y = Array2::<f32>::zeros((6, 0));
    assert!(matches!(
        problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(1.0), &[], &FitOptions::default()),
        Err(RidgeError::Empty { .. })
    ));
    let (_, y) = small();
    let grid = AlphaPolicy::Grid(AlphaGrid { alphas: vec![], criterion: Criterion::Gcv, scope: AlphaScope::PerGroup });
    assert!(matches!(
        problem.fit_predict(&mut y.view(), &grid, &[], &FitOptions::default()),
        Err(RidgeError::Empty { .. })
    ));
}

#[test]
fn bad_options_and_foreign_evaluation_sets_are_rejected() {
    let (x, y) = small();
    let problem = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    let other = RidgeProblem::new(x.view(), ProblemOptions::default()).unwrap();
    let foreign = other.evaluation_set(x.view()).unwrap();
    assert!(matches!(
        problem.fit_predict(&mut y.view(), &AlphaPolicy::Fixed(1.0), &[&foreign], &FitOptions::default()),
        Err(RidgeError::Invalid(_))
    ));
    let kfold = |folds| {
        AlphaPolicy::Grid(AlphaGrid {
            alphas: vec![1.0],
            criterion: Criterion::KFold { folds },
            scope: AlphaScope::PerTarget,
        })
    };
    for folds in [1, 7] {
        assert!(matches!(
            problem.fit_predict(&mut y.view(), &kfold(folds), &[], &FitOptions::default()),
            Err(RidgeError::Invalid(_))
        ));
    }
    assert!(matches!(
        problem.fit_predict(
            &mut y.view(),
            &AlphaPolicy::Fixed(1.0),
            &[],
            &FitOptions { block_cols: 0, ..FitOptions::default() }
        ),
        Err(RidgeError::Invalid(_))
    ));
}
