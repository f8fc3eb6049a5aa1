//! Call nabla's SGEMM directly, compare it with the naive triple loop, and
//! print the largest error and the speed.
//!
//! ```sh
//! cargo run --release --example sgemm                 # 512 x 512 x 512
//! cargo run --release --example sgemm -- 300 200 100  # M K N
//! ```
//!
//! `sgemm` computes `C = alpha op(A) op(B) + beta C` on row-major slices:
//! `op(A)` is `m x k`, `op(B)` is `k x n`, and `lda`, `ldb`, `ldc` are the
//! stored row lengths, so a transposed operand or a sub-matrix of a larger
//! one is read in place. Bad arguments are errors, never panics.

use nabla::gemm::{sgemm, KernelChoice, Transpose};
use nabla::Rng;
use std::error::Error;
use std::time::Instant;

fn main() {
    if let Err(e) = run() {
        eprintln!("sgemm: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|s| s.parse().map_err(|_| format!("'{s}' is not a size (usage: sgemm [M K N])")))
        .collect::<Result<_, _>>()?;
    let (m, k, n) = match args[..] {
        [] => (512, 512, 512),
        [m, k, n] if m > 0 && k > 0 && n > 0 => (m, k, n),
        _ => return Err("give three positive sizes M K N, or none".into()),
    };
    // Bounds, so a typo cannot ask for terabytes or a day of naive loops.
    let fits = |x: usize, y: usize, max: usize| x.checked_mul(y).is_some_and(|p| p <= max);
    if !(fits(m, k, 1 << 26) && fits(k, n, 1 << 26) && fits(m, n, 1 << 26) && fits(m * n, k, 1 << 34)) {
        return Err(format!("{m} x {k} x {n} is too large: at most 2^26 elements a matrix, 2^34 m*n*k").into());
    }
    // What `Auto` runs: NABLA_GEMM_KERNEL if set and available, else the fastest.
    let available: Vec<&str> = KernelChoice::available().iter().map(|k| k.name()).collect();
    let forced = std::env::var("NABLA_GEMM_KERNEL").ok().filter(|k| available.contains(&k.as_str()));
    let kernel = forced.as_deref().or(available.last().copied()).unwrap_or("portable");
    println!("C[{m}x{n}] = A[{m}x{k}] B[{k}x{n}], microkernel: {kernel} (available: {})", available.join(", "));

    let mut rng = Rng::new(1);
    let a: Vec<f32> = (0..m * k).map(|_| rng.uniform() - 0.5).collect();
    let b: Vec<f32> = (0..k * n).map(|_| rng.uniform() - 0.5).collect();

    // C = A B: alpha 1, beta 0 (C is only written), every operand dense.
    let mut c = vec![f32::NAN; m * n];
    sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n)?;
    let naive = naive_product(&a, &b, m, k, n);
    println!("A B: max |error| vs the naive f64 product = {:.2e}", max_error(&c, &naive));

    // The same product from A^T stored k x m: only the flag and lda change.
    let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
    let mut c2 = vec![0.0; m * n];
    sgemm(Transpose::Yes, Transpose::No, m, n, k, 1.0, &at, m, &b, n, 0.0, &mut c2, n)?;
    println!("A stored transposed (ta = Yes): max |error| = {:.2e}", max_error(&c2, &naive));

    // Speed: repeat for about half a second and report the best run.
    let flops = 2.0 * (m * n * k) as f64;
    let (mut best, start) = (f64::INFINITY, Instant::now());
    while start.elapsed().as_secs_f64() < 0.5 {
        let t = Instant::now();
        sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("speed: {:.1} GFLOP/s (best of the runs in 0.5 s, {:.3} ms each)", flops / best / 1e9, best * 1e3);

    // A slice too short for the shape it claims is an error, not a panic.
    let err = sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a[1..], k, &b, n, 0.0, &mut c, n).unwrap_err();
    println!("a short A is refused: {err}");
    Ok(())
}

/// The definition of the product, accumulated in f64.
fn naive_product(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; m * n];
    for i in 0..m {
        for p in 0..k {
            let aip = a[i * k + p] as f64;
            for j in 0..n {
                c[i * n + j] += aip * b[p * n + j] as f64;
            }
        }
    }
    c
}

/// The largest absolute difference; infinite if any value is NaN (which
/// `f64::max` would otherwise drop).
fn max_error(c: &[f32], exact: &[f64]) -> f64 {
    let diff = |(&x, &e): (&f32, &f64)| (x as f64 - e).abs();
    c.iter().zip(exact).map(diff).fold(0.0, |m, d| if d.is_nan() { f64::INFINITY } else { m.max(d) })
}
