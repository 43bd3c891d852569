//! Targets streamed from numpy-written `.npy` files and python-written `.safetensors`, block
//! invariance, weights in blocks, and saved models.

mod common;

use common::{Fixture, fixture_path, relative_error};
use ndarray::{Array2, s};
use ridge::{
    AlphaGrid, AlphaPolicy, AlphaScope, Criterion, FitOptions, NpyTargets, ProblemOptions, RidgeError, RidgeModel,
    RidgeProblem, SafetensorsTargets, TargetSource,
};

fn stream_problem() -> (Fixture, RidgeProblem) {
    let fx = Fixture::load("stream");
    let problem = RidgeProblem::new(fx.matrix_f32("x").view(), ProblemOptions::default()).unwrap();
    (fx, problem)
}

#[test]
fn numpy_written_npy_targets_stream_to_sklearn_predictions() {
    let (fx, problem) = stream_problem();
    let test = problem.evaluation_set(fx.matrix_f32("x_test").view()).unwrap();
    let alpha = fx.vector("alpha")[0];
    for (file, want) in [("stream_targets_c_f4.npy", "pred_c_f4"), ("stream_targets_fortran_f8.npy", "pred_fortran_f8")]
    {
        let mut src = NpyTargets::open(fixture_path(file)).unwrap();
        assert_eq!(src.n_rows(), problem.n_samples());
        for block_cols in [1, 3, 1000] {
            let fit = problem
                .fit_predict(&mut src, &AlphaPolicy::Fixed(alpha), &[&test], &FitOptions { block_cols })
                .unwrap();
            let e = relative_error(&fit.predictions[0], &fx.matrix(want));
            assert!(e < 1e-4, "{file}, block {block_cols}: rel. error {e:e}");
        }
    }
}

#[test]
fn safetensors_targets_stream_in_blocks_like_in_memory_targets() {
    let (fx, problem) = stream_problem();
    // The fixture file itself was written by safetensors.numpy; its "y3_f32" tensor is float32.
    let mut src = SafetensorsTargets::open(fixture_path("stream.safetensors"), "y3_f32").unwrap();
    assert_eq!((src.n_rows(), src.n_cols()), (problem.n_samples(), 12));
    let mut buf = vec![0f32; problem.n_samples() * 4];
    src.read_columns(5..9, &mut buf).unwrap();
    let y = fx.matrix("y3_f32");
    // Exact: streaming copies the stored f32 values, no arithmetic.
    for k in 0..4 {
        for i in 0..problem.n_samples() {
            assert_eq!(buf[k * problem.n_samples() + i], y[[i, 5 + k]] as f32);
        }
    }
    // Requests outside the source are errors, not panics.
    let mut buf3 = vec![0f32; problem.n_samples() * 3];
    assert!(matches!(src.read_columns(10..13, &mut buf3), Err(RidgeError::Invalid(_))));
    assert!(matches!(src.read_columns(0..2, &mut buf3), Err(RidgeError::Shape { .. })));
    let y32 = fx.matrix_f32("y3_f32");
    assert!(matches!(
        y32.view().read_columns(11..13, &mut buf[..problem.n_samples() * 2]),
        Err(RidgeError::Invalid(_))
    ));
    match SafetensorsTargets::open(fixture_path("stream.safetensors"), "missing") {
        Err(RidgeError::File { message, .. }) => assert!(message.contains("y3_f32")),
        other => panic!("expected File error, got {:?}", other.err()),
    }
}

#[test]
fn results_do_not_depend_on_block_size() {
    let fx = Fixture::load("loo_kernel_intercept");
    let problem = RidgeProblem::new(fx.matrix_f32("x").view(), ProblemOptions::default()).unwrap();
    let test = problem.evaluation_set(fx.matrix_f32("x").slice(s![..5, ..])).unwrap();
    let y = fx.matrix_f32("y");
    let policy = AlphaPolicy::Grid(AlphaGrid {
        alphas: fx.vector("alphas").to_vec(),
        criterion: Criterion::Gcv,
        scope: AlphaScope::PerGroup,
    });
    let reference = problem.fit_predict(&mut y.view(), &policy, &[&test], &FitOptions { block_cols: 1000 }).unwrap();
    for block_cols in [1, 2, 5] {
        // block < d: the group spans several blocks, so this is the two-pass route.
        let fit = problem.fit_predict(&mut y.view(), &policy, &[&test], &FitOptions { block_cols }).unwrap();
        // Exact choice: both routes' f64 GCV scores agree to ~1e-12, the best alpha leads by >1e-4.
        assert_eq!(fit.alphas, reference.alphas);
        let diff = (&fit.predictions[0] - &reference.predictions[0]).mapv(f32::abs);
        assert!(diff.iter().all(|&d| d <= 1e-5), "block {block_cols}");
    }
}

#[test]
fn weights_in_blocks_assemble_the_model_and_model_survives_save_load() {
    let fx = Fixture::load("sklearn_kernel_intercept");
    let problem = RidgeProblem::new(fx.matrix_f32("x").view(), ProblemOptions::default()).unwrap();
    let y = fx.matrix_f32("y");
    let alpha = fx.vector("alphas")[1];
    let model = RidgeModel::fit(&problem, &mut y.view(), &AlphaPolicy::Fixed(alpha), &FitOptions::default()).unwrap();
    let mut seen = 0;
    // Blocks of 4 targets against the model's own blocks: the matrix products have other widths,
    // and the SIMD kernels (AVX2 or AVX-512 tiles) may split them differently, so a target's
    // weights agree to f32 rounding (1e-6 of the largest weight), not necessarily bit for bit.
    let scale =
        model.coef().fold(0f32, |m, v| m.max(v.abs())).max(model.intercept().iter().fold(0f32, |m, v| m.max(v.abs())));
    let close = |a: f32, b: f32| (a - b).abs() <= 1e-6 * scale;
    problem
        .weights_by_block(&mut y.view(), &vec![alpha; y.ncols()], 4, |block| {
            let b = block.coef.nrows();
            assert!(b <= 4);
            let rows = block.first_target..block.first_target + b;
            let coef = model.coef();
            let want = coef.slice(s![rows.clone(), ..]);
            assert_eq!(block.coef.dim(), want.dim());
            assert!(block.coef.iter().zip(want.iter()).all(|(&a, &w)| close(a, w)), "weights of targets {rows:?}");
            let want = &model.intercept()[rows.clone()];
            assert!(block.intercept.iter().zip(want).all(|(&a, &w)| close(a, w)), "intercepts of {rows:?}");
            seen += b;
            Ok(())
        })
        .unwrap();
    assert_eq!(seen, y.ncols());

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    model.save(&path).unwrap();
    let loaded = RidgeModel::load(&path).unwrap();
    // Exact: saving and loading copy the f32/f64 values, no arithmetic.
    assert_eq!(loaded, model);
    // The file is plain safetensors: names, dtypes and shapes as documented for numpy users.
    let bytes = std::fs::read(&path).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("coef").unwrap().shape(), &[y.ncols(), problem.n_features()]);
    assert_eq!(st.tensor("coef").unwrap().dtype(), safetensors::Dtype::F32);
    assert_eq!(st.tensor("alpha").unwrap().dtype(), safetensors::Dtype::F64);
    let e = relative_error(&loaded.predict(fx.matrix_f32("x_test").view()).unwrap(), &fx.matrix("pred_1"));
    assert!(e < 1e-4, "prediction after load: {e:e}");
    assert!(matches!(RidgeModel::load(dir.path().join("absent.safetensors")), Err(RidgeError::File { .. })));
}

#[test]
fn unsupported_npy_files_are_rejected_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ints.npy");
    ndarray_npy::write_npy(&path, &Array2::<i32>::zeros((3, 2))).unwrap();
    match NpyTargets::open(&path) {
        Err(RidgeError::File { message, .. }) => assert!(message.contains("dtype"), "{message}"),
        other => panic!("expected File error, got {:?}", other.err()),
    }
    let truncated = dir.path().join("short.npy");
    let mut bytes = std::fs::read(fixture_path("stream_targets_c_f4.npy")).unwrap();
    bytes.truncate(bytes.len() - 4);
    std::fs::write(&truncated, bytes).unwrap();
    assert!(matches!(NpyTargets::open(&truncated), Err(RidgeError::File { .. })));
}

#[test]
fn model_written_by_numpy_loads_and_predicts() {
    let model = RidgeModel::load(fixture_path("numpy_model.safetensors")).unwrap();
    let fx = Fixture::load("numpy_model_expected");
    let e = relative_error(&model.predict(fx.matrix_f32("x_test").view()).unwrap(), &fx.matrix("pred"));
    assert!(e < 1e-5, "rel. error {e:e}");
    assert!(model.alphas().iter().all(|&a| a == 10.0));
}
