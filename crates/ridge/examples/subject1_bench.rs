//! Our side of the subject-1 ridge benchmark (driven by `tools/ridge/bench_subject1.py`, which
//! writes the synthetic inputs, runs the scikit-learn and himalaya references and prints the
//! comparison table).
//!
//! Reads from `--workdir`: `x_train.npy` (n x p, f32), `x_test.npy` (m x p, f32) and the target
//! files `y_vdvae.npy`, `y_clipv.npy`, `y_clipt.npy` (n x ..., f32; streamed in column blocks).
//! Fits the three groups on one shared problem with the reference alphas, writes
//! `ours_pred_<group>.npy` (m x d, f32) and `ours_timings.json`, and prints a summary with the
//! f32 GEMM floor (executed flops / the f32 GEMM rate measured in the same run).
//!
//! `--weights` instead computes every weight of the three regressions in blocks
//! (`RidgeProblem::weights_by_block`, as `brain-diffuser weights-roi` does) and their per-voxel
//! L1 norms (`ours_l1_<group>.npy`), and reports the achieved GFLOP/s against the floor of the
//! `2 p n d` weight products.
//!
//! ```text
//! cargo run --release -p ridge --example subject1_bench -- --workdir /tmp/ridge-bench
//! cargo run --release -p ridge --example subject1_bench -- --workdir /tmp/ridge-bench --weights
//! ```

use ndarray::Array2;
use ridge::{AlphaPolicy, FitOptions, GramPrecision, NpyTargets, ProblemOptions, RidgeProblem, TargetSource};
use std::path::{Path, PathBuf};
use std::time::Instant;

type AnyResult<T> = Result<T, Box<dyn std::error::Error>>;

struct Args {
    workdir: PathBuf,
    block_cols: usize,
    groups: Vec<(String, f64)>,
    weights: bool,
    weight_block: usize,
    /// With `--weights`: the weights of the first this many targets of each group are written
    /// to `ours_coef_<group>.npy` (and intercepts to `ours_intercept_<group>.npy`) for checking.
    coef_check: usize,
    /// `--gram f32|f64`: the Gram matrix's arithmetic (f32 by default, as the workflow uses for
    /// fixed alphas).
    gram: GramPrecision,
}

fn parse_args() -> AnyResult<Args> {
    let mut args = Args {
        workdir: PathBuf::from("/tmp/ridge-bench"),
        block_cols: FitOptions::default().block_cols,
        groups: vec![("vdvae".into(), 50_000.0), ("clipv".into(), 60_000.0), ("clipt".into(), 100_000.0)],
        weights: false,
        weight_block: 4096,
        coef_check: 0,
        gram: GramPrecision::F32,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--weights" {
            args.weights = true;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--weight-block" => args.weight_block = value.parse()?,
            "--coef-check" => args.coef_check = value.parse()?,
            "--gram" => {
                args.gram = match value.as_str() {
                    "f32" => GramPrecision::F32,
                    "f64" => GramPrecision::F64,
                    other => return Err(format!("--gram takes f32 or f64, not {other}").into()),
                }
            }
            "--workdir" => args.workdir = PathBuf::from(value),
            "--block-cols" => args.block_cols = value.parse()?,
            "--groups" => {
                // name=alpha,name=alpha
                args.groups = value
                    .split(',')
                    .map(|g| {
                        let (name, alpha) = g.split_once('=').ok_or("expected name=alpha")?;
                        Ok((name.to_string(), alpha.parse::<f64>()?))
                    })
                    .collect::<AnyResult<_>>()?;
            }
            other => return Err(format!("unknown flag {other}").into()),
        }
    }
    Ok(args)
}

/// Best-of-three GFLOP/s of a square faer GEMM, the machine's attainable rate for our kernels.
fn gemm_rate<T: faer::traits::ComplexField + Copy>(size: usize, one: T, zero: T) -> f64 {
    let a = faer::Mat::<T>::from_fn(size, size, |i, j| if (i + j) % 3 == 0 { one } else { zero });
    let b = a.clone();
    let mut c = faer::Mat::<T>::zeros(size, size);
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let t = Instant::now();
        faer::linalg::matmul::matmul(
            c.as_mut(),
            faer::Accum::Replace,
            a.as_ref(),
            b.as_ref(),
            one,
            faer::Par::rayon(0),
        );
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (size as f64).powi(3) / best / 1e9
}

/// The f32 GEMM rate the floor is taken at: the best of square GEMMs of 2,048 and 4,096 (the
/// larger is the machine's best case, so the floor is never flattering).
fn f32_rate() -> f64 {
    gemm_rate::<f32>(2048, 1.0, 0.0).max(gemm_rate::<f32>(4096, 1.0, 0.0))
}

fn peak_rss_gib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0 / 1024.0)
}

fn write_npy_atomic(path: &Path, a: &Array2<f32>) -> AnyResult<()> {
    let tmp = path.with_extension("npy.tmp");
    ndarray_npy::write_npy(&tmp, a)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn main() -> AnyResult<()> {
    let args = parse_args()?;
    let dir = &args.workdir;
    // The rate is measured before and after the run; the floor uses the better of the two.
    let rate_before = f32_rate();
    let total = Instant::now();
    let t = Instant::now();
    let x_train: Array2<f32> = ndarray_npy::read_npy(dir.join("x_train.npy"))?;
    let x_test: Array2<f32> = ndarray_npy::read_npy(dir.join("x_test.npy"))?;
    let load_x = t.elapsed().as_secs_f64();
    let (n, p) = x_train.dim();
    let m = x_test.nrows();

    let t = Instant::now();
    let problem = RidgeProblem::new(x_train.view(), ProblemOptions { gram: args.gram, ..ProblemOptions::default() })?;
    let build = t.elapsed().as_secs_f64();
    drop(x_train);
    let used: Vec<String> =
        args.groups.iter().map(|(name, alpha)| format!("{name} {:?}", problem.precision_for(*alpha))).collect();
    println!(
        "ours: n {n}, p {p}: load X {load_x:.2} s, problem (centring, {:?} Gram) {build:.2} s; factorised with: {}",
        args.gram,
        used.join(", ")
    );
    if args.weights {
        return weights(&args, &problem, build, rate_before, total);
    }
    let t = Instant::now();
    let test = problem.evaluation_set(x_test.view())?;
    let eval = t.elapsed().as_secs_f64();
    let (nf, pf, mf) = (n as f64, p as f64, m as f64);
    // Nominal flops: one Gram triangle, the test cross-kernel, per alpha a Cholesky and two
    // triangular solves with m right-hand sides, then 2 m n per target.
    let mut flops = nf * nf * pf + 2.0 * mf * pf * nf;
    let mut groups_json = Vec::new();
    let mut fit_seconds = 0.0;
    for (name, alpha) in &args.groups {
        let path = dir.join(format!("y_{name}.npy"));
        let mut source = NpyTargets::open(&path)?;
        let d = source.n_cols();
        let t = Instant::now();
        let fit = problem.fit_predict(
            &mut source,
            &AlphaPolicy::Fixed(*alpha),
            &[&test],
            &FitOptions { block_cols: args.block_cols, ..FitOptions::default() },
        )?;
        let secs = t.elapsed().as_secs_f64();
        fit_seconds += secs;
        flops += nf.powi(3) / 3.0 + 2.0 * mf * nf * nf + 2.0 * mf * nf * d as f64;
        write_npy_atomic(&dir.join(format!("ours_pred_{name}.npy")), &fit.predictions[0])?;
        let ft = fit.timings;
        println!(
            "ours: {name:>6}: {d:>7} targets, alpha {alpha}: {secs:.2} s (operator {:.2} s, read {:.2} s, GEMM \
             {:.2} s = {:.1} GFLOP/s)",
            ft.operators_s,
            ft.read_s,
            ft.predict_s,
            2.0 * mf * nf * d as f64 / ft.predict_s / 1e9
        );
        groups_json.push(format!("\"{name}\": {{\"targets\": {d}, \"alpha\": {alpha}, \"seconds\": {secs:.4}}}"));
    }
    let compute = build + eval + fit_seconds;
    let total_s = total.elapsed().as_secs_f64();
    let rss = peak_rss_gib().unwrap_or(f64::NAN);
    let rate32 = rate_before.max(f32_rate());
    let rate64 = gemm_rate::<f64>(2048, 1.0, 0.0);
    let achieved = flops / compute / 1e9;
    let floor = flops / rate32 / 1e9;
    println!(
        "ours: n {n}, p {p}, m {m}: load X {load_x:.2} s, problem (Gram) {build:.2} s, test kernel {eval:.2} s, \
         fits {fit_seconds:.2} s, compute {compute:.2} s, total {total_s:.2} s, peak RSS {rss:.2} GiB"
    );
    println!(
        "ours: {:.1} GFLOP, {achieved:.1} GFLOP/s; faer GEMM f32 {rate32:.1} GFLOP/s, f64 {rate64:.1} GFLOP/s; \
         f32 GEMM floor {floor:.1} s, compute / floor = {:.2}",
        flops / 1e9,
        compute / floor
    );
    let json = format!(
        "{{\"n\": {n}, \"p\": {p}, \"m\": {m}, \"load_x_s\": {load_x:.4}, \"build_s\": {build:.4}, \
         \"eval_s\": {eval:.4}, \"fit_s\": {fit_seconds:.4}, \"compute_s\": {compute:.4}, \
         \"total_s\": {total_s:.4}, \"peak_rss_gib\": {rss:.4}, \"gflop\": {:.3}, \
         \"gflops\": {achieved:.3}, \"gemm_f32_gflops\": {rate32:.3}, \"gemm_f64_gflops\": {rate64:.3}, \
         \"floor_s\": {floor:.4}, \"groups\": {{{}}}}}",
        flops / 1e9,
        groups_json.join(", ")
    );
    let tmp = dir.join("ours_timings.json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, dir.join("ours_timings.json"))?;
    Ok(())
}

/// `--weights`: every weight of the three regressions in blocks, reduced to per-voxel L1 norms.
fn weights(args: &Args, problem: &RidgeProblem, build: f64, rate_before: f64, total: Instant) -> AnyResult<()> {
    let (n, p) = (problem.n_samples(), problem.n_features());
    let (nf, pf) = (n as f64, p as f64);
    let mut product_flops = 0.0;
    let mut seconds = 0.0;
    for (name, alpha) in &args.groups {
        let mut source = NpyTargets::open(args.workdir.join(format!("y_{name}.npy")))?;
        let d = source.n_cols();
        let mut l1 = vec![0f64; p];
        let keep = args.coef_check.min(d);
        let mut coef = Array2::<f32>::zeros((keep, p));
        let mut intercept = vec![0f32; keep];
        let t = Instant::now();
        let parts = problem.weights_by_block(&mut source, &vec![*alpha; d], args.weight_block, |block| {
            for (j, row) in block.coef.rows().into_iter().enumerate() {
                for (sum, w) in l1.iter_mut().zip(row) {
                    *sum += f64::from(w.abs());
                }
                let target = block.first_target + j;
                if target < keep {
                    coef.row_mut(target).assign(&row);
                    intercept[target] = block.intercept[j];
                }
            }
            Ok(())
        })?;
        let secs = t.elapsed().as_secs_f64();
        if keep > 0 {
            write_npy_atomic(&args.workdir.join(format!("ours_coef_{name}.npy")), &coef)?;
            let intercept = Array2::from_shape_vec((1, keep), intercept)?;
            write_npy_atomic(&args.workdir.join(format!("ours_intercept_{name}.npy")), &intercept)?;
        }
        seconds += secs;
        let flops = 2.0 * pf * nf * d as f64;
        product_flops += flops;
        write_npy_atomic_1d(&args.workdir.join(format!("ours_l1_{name}.npy")), l1)?;
        println!(
            "ours weights: {name:>6}: {d:>7} targets, alpha {alpha}: {secs:.1} s, {:.1} GFLOP/s (operator {:.1} s, \
             read {:.1} s, products {:.1} s = {:.1} GFLOP/s, L1 norms {:.1} s)",
            flops / secs / 1e9,
            parts.operators_s,
            parts.read_s,
            parts.product_s,
            flops / parts.product_s / 1e9,
            parts.sink_s
        );
    }
    let rate32 = rate_before.max(f32_rate());
    let floor = product_flops / rate32 / 1e9;
    let rss = peak_rss_gib().unwrap_or(f64::NAN);
    println!(
        "ours weights: {:.1} TFLOP of weight products (2 p n d) in {seconds:.1} s = {:.1} GFLOP/s (plus {build:.1} s \
         for the Gram matrix); faer f32 GEMM {rate32:.1} GFLOP/s, floor {floor:.1} s, weights / floor = {:.2}; \
         total {:.1} s, peak RSS {rss:.2} GiB",
        product_flops / 1e12,
        product_flops / seconds / 1e9,
        seconds / floor,
        total.elapsed().as_secs_f64()
    );
    let json = format!(
        "{{\"n\": {n}, \"p\": {p}, \"build_s\": {build:.4}, \"weights_s\": {seconds:.4}, \
         \"weights_tflop\": {:.4}, \"weights_gflops\": {:.3}, \"gemm_f32_gflops\": {rate32:.3}, \
         \"floor_s\": {floor:.4}, \"peak_rss_gib\": {rss:.4}}}",
        product_flops / 1e12,
        product_flops / seconds / 1e9
    );
    let tmp = args.workdir.join("ours_timings.json.tmp");
    std::fs::write(&tmp, json)?;
    std::fs::rename(&tmp, args.workdir.join("ours_timings.json"))?;
    Ok(())
}

fn write_npy_atomic_1d(path: &Path, values: Vec<f64>) -> AnyResult<()> {
    let tmp = path.with_extension("npy.tmp");
    ndarray_npy::write_npy(&tmp, &ndarray::Array1::from_vec(values))?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}
