//! The naive triple loop: the definition of the product, for tests and
//! benches to compare against. Accumulates in f64.

use super::Transpose;

/// Same contract as [`super::sgemm`], without checks, the slow obvious way.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_naive(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) {
    let at = |i: usize, p: usize| {
        if ta == Transpose::No {
            a[i * lda + p]
        } else {
            a[p * lda + i]
        }
    };
    let bt = |p: usize, j: usize| {
        if tb == Transpose::No {
            b[p * ldb + j]
        } else {
            b[j * ldb + p]
        }
    };
    for i in 0..m {
        for j in 0..n {
            let dot: f64 = (0..k).map(|p| at(i, p) as f64 * bt(p, j) as f64).sum();
            let prior = if beta == 0.0 { 0.0 } else { beta as f64 * c[i * ldc + j] as f64 };
            c[i * ldc + j] = (alpha as f64 * dot + prior) as f32;
        }
    }
}
