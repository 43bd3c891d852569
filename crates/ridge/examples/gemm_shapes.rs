//! faer's f32 GEMM rate on the shapes the ridge fit uses, next to the square GEMM the
//! subject-1 floor is measured with: the row-streamed prediction product
//! `P^T (d x m) += Y^T (d x r) S[:, rows]^T (r x m)` as one call and in chunks of 2,048 rows of
//! `P^T` (what `fit_predict` runs), at NSD subject 1's m = 982 test rows; and the weight product
//! of `weights_by_block`, `W (p x b) = O (p x n) Yc (n x b)` at p = 15,724, n = 8,859, b = 4,096.
//!
//! ```text
//! cargo run --release -p ridge --example gemm_shapes -- [d]   # d defaults to 197,376 (CLIP-Vision)
//! ```

use faer::{Accum, Mat, MatMut, MatRef, Par};
use std::time::Instant;

/// Best-of-two GFLOP/s of `run`.
fn rate(mut run: impl FnMut(), flops: f64) -> f64 {
    let mut best = f64::INFINITY;
    for _ in 0..2 {
        let t = Instant::now();
        run();
        best = best.min(t.elapsed().as_secs_f64());
    }
    flops / best / 1e9
}

fn gemm(dst: MatMut<'_, f32>, lhs: MatRef<'_, f32>, rhs: MatRef<'_, f32>, accum: Accum) {
    faer::linalg::matmul::matmul(dst, accum, lhs, rhs, 1.0f32, Par::rayon(0));
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let d: usize = std::env::args().nth(1).map(|s| s.parse()).transpose()?.unwrap_or(197_376);
    let m = 982usize;
    println!("{:<44} {:>10}", "shape", "GFLOP/s");
    for size in [2048usize, 4096] {
        let a = Mat::<f32>::from_fn(size, size, |i, j| ((i + j) % 3) as f32);
        let mut c = Mat::<f32>::zeros(size, size);
        let g = rate(|| gemm(c.as_mut(), a.as_ref(), a.as_ref(), Accum::Replace), 2.0 * (size as f64).powi(3));
        println!("{:<44} {g:>10.1}", format!("square {size}"));
    }
    let mut pt = Mat::<f32>::zeros(d, m);
    for r in [367usize, 796, 1227] {
        let s = Mat::<f32>::from_fn(m, r, |i, j| ((i * 7 + j * 3) % 11) as f32 * 0.01);
        let yt = Mat::<f32>::from_fn(d, r, |i, j| ((i + 2 * j) % 5) as f32 * 0.1);
        let flops = 2.0 * (d * m * r) as f64;
        let whole = rate(|| gemm(pt.as_mut(), yt.as_ref(), s.transpose(), Accum::Add), flops);
        println!("{:<44} {whole:>10.1}", format!("P^T += Y^T S^T, d {d}, r {r}, one call"));
        for chunk in [1024usize, 2048, 4096] {
            let g = rate(
                || {
                    for start in (0..d).step_by(chunk) {
                        let rows = chunk.min(d - start);
                        gemm(
                            pt.as_mut().subrows_mut(start, rows),
                            yt.as_ref().subrows(start, rows),
                            s.transpose(),
                            Accum::Add,
                        );
                    }
                },
                flops,
            );
            println!("{:<44} {g:>10.1}", format!("  the same in chunks of {chunk} rows"));
        }
    }
    let (p, n, b) = (15_724usize, 8_859usize, 4_096usize);
    let op = Mat::<f32>::from_fn(p, n, |i, j| ((i * 5 + j) % 13) as f32 * 0.01);
    let y_rows = Mat::<f32>::from_fn(b, n, |i, j| ((i + 3 * j) % 7) as f32 * 0.1);
    let mut w = Mat::<f32>::zeros(p, b);
    let flops = 2.0 * (p * n * b) as f64;
    let whole = rate(|| gemm(w.as_mut(), op.as_ref(), y_rows.transpose(), Accum::Replace), flops);
    println!("{:<44} {whole:>10.1}", format!("W = O Yc, {p} x {n} x {b}, one call"));
    let chunked = rate(
        || {
            for start in (0..p).step_by(2048) {
                let rows = 2048.min(p - start);
                gemm(
                    w.as_mut().subrows_mut(start, rows),
                    op.as_ref().subrows(start, rows),
                    y_rows.transpose(),
                    Accum::Replace,
                );
            }
        },
        flops,
    );
    println!("{:<44} {chunked:>10.1}", "  the same in chunks of 2048 rows");
    Ok(())
}
