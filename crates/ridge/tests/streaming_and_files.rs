//! Targets streamed from numpy-written `.npy` files and python-written `.safetensors`, block
//! invariance, weights in blocks, and saved models.

mod common;

use common::{Fixture, fixture_path, relative_error};
use ndarray::{Array2, s};
use ridge::{
    AlphaGrid, AlphaPolicy, AlphaScope, Criterion, FitOptions, NpyTargets, ProblemOptions, ReadAhead, RidgeError,
    RidgeModel, RidgeProblem, SafetensorsTargets, Streaming, TargetSource,
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
        // Rows from the C-order file are its contiguous direction, from the Fortran-order file
        // one segment per column; columns the other way round.
        // Reading inline or on the reader thread does not change a value.
        for streaming in [Streaming::Auto, Streaming::Rows, Streaming::Columns] {
            for block_cols in [1, 3, 1000] {
                let mut by_mode = Vec::new();
                for read_ahead in [ReadAhead::Auto, ReadAhead::Always, ReadAhead::Never] {
                    let options = FitOptions { block_cols, streaming, read_ahead };
                    let fit = problem.fit_predict(&mut src, &AlphaPolicy::Fixed(alpha), &[&test], &options).unwrap();
                    let e = relative_error(&fit.predictions[0], &fx.matrix(want));
                    assert!(e < 1e-4, "{file}, {streaming:?}, block {block_cols}, {read_ahead:?}: rel. error {e:e}");
                    by_mode.push(fit.predictions[0].clone());
                }
                assert!(by_mode.windows(2).all(|w| w[0] == w[1]), "{file}, {streaming:?}, block {block_cols}");
            }
        }
    }
}

/// A source that only knows columns, to exercise the trait's default row reads.
struct ColumnsOnly(Array2<f32>);

impl TargetSource for ColumnsOnly {
    fn n_rows(&self) -> usize {
        self.0.nrows()
    }
    fn n_cols(&self) -> usize {
        self.0.ncols()
    }
    fn read_columns(&mut self, cols: std::ops::Range<usize>, out: &mut [f32]) -> ridge::Result<()> {
        self.0.view().read_columns(cols, out)
    }
    fn describe(&self) -> String {
        "columns-only targets".into()
    }
}

#[test]
fn every_source_reads_rows_as_the_values_numpy_wrote() {
    // Exact: row reads copy the stored values (f64 rounded to f32), no arithmetic.
    let want_f8 = ndarray_npy::read_npy::<_, Array2<f64>>(fixture_path("stream_targets_fortran_f8.npy")).unwrap();
    // The C-order file is 3-d: axes after the first flatten into targets in C order.
    let f4 = ndarray_npy::read_npy::<_, ndarray::ArrayD<f32>>(fixture_path("stream_targets_c_f4.npy")).unwrap();
    let n = f4.shape()[0];
    let want_f4 = Array2::from_shape_vec((n, f4.len() / n), f4.as_standard_layout().iter().copied().collect()).unwrap();
    let (fx, _) = stream_problem();
    let st = fx.matrix_f32("y3_f32");
    let mut sources: Vec<(Box<dyn TargetSource>, Array2<f32>, bool)> = vec![
        (Box::new(NpyTargets::open(fixture_path("stream_targets_c_f4.npy")).unwrap()), want_f4.clone(), true),
        (
            Box::new(NpyTargets::open(fixture_path("stream_targets_fortran_f8.npy")).unwrap()),
            want_f8.mapv(|v| v as f32),
            false,
        ),
        (Box::new(SafetensorsTargets::open(fixture_path("stream.safetensors"), "y3_f32").unwrap()), st.clone(), true),
        (Box::new(ColumnsOnly(want_f4.clone())), want_f4.clone(), false),
    ];
    for (src, want, contiguous) in &mut sources {
        let (n, d) = want.dim();
        assert_eq!(src.rows_are_contiguous(), *contiguous, "{}", src.describe());
        for (rows, cols) in [(0..n, 0..d), (1..n - 2, 1..d), (n / 2..n / 2 + 1, 0..1), (3..3, 0..d)] {
            let mut out = vec![0f32; rows.len() * cols.len()];
            src.read_rows(rows.clone(), cols.clone(), &mut out).unwrap();
            let got = Array2::from_shape_vec((rows.len(), cols.len()), out).unwrap();
            assert_eq!(
                got,
                want.slice(s![rows.clone(), cols.clone()]),
                "{} rows {rows:?} cols {cols:?}",
                src.describe()
            );
        }
        assert!(matches!(src.read_rows(0..n + 1, 0..1, &mut vec![0f32; n + 1]), Err(RidgeError::Invalid(_))));
        assert!(matches!(src.read_rows(0..2, 0..2, &mut [0f32; 3]), Err(RidgeError::Shape { .. })));
    }
}

#[test]
fn weight_operators_give_the_spectral_weights() {
    // One or two alphas: one f32 weight operator per alpha; three: the f64 eigendecomposition.
    // Both are exact ridge in exact arithmetic, so they agree to f32 rounding.
    for name in ["sklearn_kernel_intercept", "sklearn_primal_intercept", "sklearn_kernel_no_intercept"] {
        let fx = Fixture::load(name);
        let options =
            ProblemOptions { fit_intercept: fx.flag("fit_intercept"), form: None, ..ProblemOptions::default() };
        let y = fx.matrix_f32("y");
        let alphas = fx.vector("alphas");
        let per_target: Vec<f64> = (0..y.ncols()).map(|j| alphas[j % 2]).collect();
        let collect = |problem: &RidgeProblem| {
            let (mut coef, mut icpt) = (Array2::<f32>::zeros((y.ncols(), problem.n_features())), vec![0f32; y.ncols()]);
            problem
                .weights_by_block(&mut y.view(), &per_target, 3, |b| {
                    let rows = b.first_target..b.first_target + b.coef.nrows();
                    coef.slice_mut(s![rows.clone(), ..]).assign(&b.coef);
                    icpt[rows].copy_from_slice(b.intercept);
                    Ok(())
                })
                .unwrap();
            (coef, icpt)
        };
        let problem = RidgeProblem::new(fx.matrix_f32("x").view(), options.clone()).unwrap();
        let (op_coef, op_icpt) = collect(&problem);
        problem.precompute_spectrum().unwrap();
        let (sp_coef, sp_icpt) = collect(&problem);
        let scale = sp_coef.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = op_coef.iter().zip(&sp_coef).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-5 * scale, "{name}: weights differ by {worst:e} of {scale:e}");
        let iscale = sp_icpt.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
        let worst = op_icpt.iter().zip(&sp_icpt).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= 1e-5 * iscale.max(scale), "{name}: intercepts differ by {worst:e}");
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
    let reference = problem
        .fit_predict(&mut y.view(), &policy, &[&test], &FitOptions { block_cols: 1000, ..FitOptions::default() })
        .unwrap();
    for block_cols in [1, 2, 5] {
        // block < d: the group spans several blocks, so this is the two-pass route.
        let fit = problem
            .fit_predict(&mut y.view(), &policy, &[&test], &FitOptions { block_cols, ..FitOptions::default() })
            .unwrap();
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
