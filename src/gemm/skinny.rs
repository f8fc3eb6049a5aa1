//! Products with a tiny dimension (the 10 classes of MNIST, the 6 actors of
//! the faces data), where a general GEMM spends its time packing:
//!
//! - `x_wt`: `Z = X W^T` for row-major `X [rows, k]` and `W [out, k]`, as dot
//!   products along k, which is contiguous in both operands, so nothing is
//!   packed or transposed and X streams through once in memory order;
//! - `dt_x`: `G += D^T X` for `D [rows, out]`, as rank-one updates of `G
//!   [out, k]` held in registers a few vectors of k at a time.
//!
//! Both are written once over a [`Lane`] and instantiated per instruction
//! set and per `out` (1..=12), like the GEMM microkernels.

use super::lane::Lane;
use super::KernelChoice;

/// The largest `out` every instruction set takes (see [`max_out`]).
pub const MAX_OUT: usize = 12;

// Index loops keep the register blocking visible.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn x_wt_body<L: Lane, const OUT: usize, const ROWS: usize>(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    z: &mut [f32],
) {
    let width = L::WIDTH;
    let body = k / width * width;
    let (xp, wp) = (x.as_ptr(), w.as_ptr());
    let mut r = 0;
    while r < rows {
        let take = ROWS.min(rows - r);
        let mut acc = [[L::zero(); OUT]; ROWS];
        let mut c = 0;
        while c < body {
            // The next rows are the next bytes of X: ask for them early, so
            // the stream from memory overlaps the arithmetic.
            L::prefetch(xp.add(((r + ROWS + ROWS) * k + c).min(rows * k - 1)));
            L::prefetch(xp.add(((r + ROWS + ROWS + 1) * k + c).min(rows * k - 1)));
            let xv: [L; ROWS] = std::array::from_fn(|q| L::load(xp.add((r + q.min(take - 1)) * k + c)));
            for j in 0..OUT {
                let wv = L::load(wp.add(j * k + c));
                for q in 0..ROWS {
                    acc[q][j] = acc[q][j].fma(xv[q], wv);
                }
            }
            c += width;
        }
        for q in 0..take {
            let xr = &x[(r + q) * k..(r + q + 1) * k];
            for j in 0..OUT {
                let tail: f32 = (body..k).map(|i| xr[i] * w[j * k + i]).sum();
                z[(r + q) * OUT + j] = acc[q][j].reduce_sum() + tail;
            }
        }
        r += ROWS;
    }
}

#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn dt_x_body<L: Lane, const OUT: usize, const CHUNKS: usize>(
    d: &[f32],
    rows: usize,
    x: &[f32],
    k: usize,
    g: &mut [f32],
) {
    let width = L::WIDTH;
    let step = width * CHUNKS;
    let body = k / step * step;
    let (xp, gp, dp) = (x.as_ptr(), g.as_mut_ptr(), d.as_ptr());
    let mut c = 0;
    while c < body {
        let mut acc: [[L; CHUNKS]; OUT] =
            std::array::from_fn(|j| std::array::from_fn(|h| L::load(gp.add(j * k + c + h * width))));
        for r in 0..rows {
            let xv: [L; CHUNKS] = std::array::from_fn(|h| L::load(xp.add(r * k + c + h * width)));
            for j in 0..OUT {
                let dv = L::splat(*dp.add(r * OUT + j));
                for h in 0..CHUNKS {
                    acc[j][h] = acc[j][h].fma(dv, xv[h]);
                }
            }
        }
        for (j, a) in acc.iter().enumerate() {
            for (h, v) in a.iter().enumerate() {
                v.store(gp.add(j * k + c + h * width));
            }
        }
        c += step;
    }
    for r in 0..rows {
        for j in 0..OUT {
            let dv = d[r * OUT + j];
            for i in body..k {
                g[j * k + i] += dv * x[r * k + i];
            }
        }
    }
}

/// Instantiate a kernel for each `out` (with the register block that fits
/// the instruction set's registers) behind one dispatching function.
macro_rules! by_out {
    ($name:ident, $body:ident, $lane:ty, [$($feature:literal),*], $($block:literal => [$($n:literal)*]),*; ($($arg:ident: $ty:ty),*)) => {
        $(#[target_feature(enable = $feature)])*
        unsafe fn $name(out: usize, $($arg: $ty),*) {
            by_out!(@dispatch out, $body, $lane, ($($arg),*), $($block => [$($n)*]),*)
        }
    };
    (@dispatch $out:ident, $body:ident, $lane:ty, $args:tt, $($block:literal => [$($n:literal)*]),*) => {
        match $out {
            $($($n => $body::<$lane, $n, $block> $args,)*)*
            _ => unreachable!("out <= max_out is checked by the caller"),
        }
    };
}

by_out!(x_wt_portable, x_wt_body, wide::f32x8, [], 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
by_out!(dt_x_portable, dt_x_body, wide::f32x8, [], 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (d: &[f32], rows: usize, x: &[f32], k: usize, g: &mut [f32]));
#[cfg(target_arch = "x86_64")]
by_out!(x_wt_avx2, x_wt_body, super::lane::Avx2, ["avx2,fma"], 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
#[cfg(target_arch = "x86_64")]
by_out!(dt_x_avx2, dt_x_body, super::lane::Avx2, ["avx2,fma"], 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (d: &[f32], rows: usize, x: &[f32], k: usize, g: &mut [f32]));
// 32 zmm registers: up to 14 outputs, two rows (or two vectors of k) at a
// time; up to 30, one.
// x_wt stops at 14 outputs: beyond, each step walks more rows of W than L1
// holds ways for (rows 4 KiB apart, as with 1024 inputs, share one L1 set),
// and the packed GEMM is faster.
#[cfg(target_arch = "x86_64")]
by_out!(x_wt_avx512, x_wt_body, super::lane::Avx512, ["avx512f"], 2 => [1 2 3 4 5 6 7 8 9 10 11 12 13 14];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
#[cfg(target_arch = "x86_64")]
by_out!(dt_x_avx512, dt_x_body, super::lane::Avx512, ["avx512f"],
    2 => [1 2 3 4 5 6 7 8 9 10 11 12 13 14], 1 => [15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30];
    (d: &[f32], rows: usize, x: &[f32], k: usize, g: &mut [f32]));

/// The largest `out` [`x_wt`] takes with `kernel`.
pub fn x_wt_max_out(kernel: KernelChoice) -> usize {
    match kernel.resolve() {
        KernelChoice::Avx512 => 14,
        _ => 12,
    }
}

/// The largest `out` [`dt_x`] takes with `kernel` (registers bound it).
pub fn dt_x_max_out(kernel: KernelChoice) -> usize {
    match kernel.resolve() {
        KernelChoice::Avx512 => 30,
        _ => 12,
    }
}

fn check(what: &str, len: usize, need: usize) {
    assert!(len >= need, "{what}: {len} values, {need} needed");
}

/// `z [rows, out] = x [rows, k] * w [out, k]^T`, for `1 <= out <= x_wt_max_out`.
/// Panics on short slices or a bad `out` (callers are internal and check).
pub fn x_wt(kernel: KernelChoice, x: &[f32], rows: usize, k: usize, w: &[f32], out: usize, z: &mut [f32]) {
    assert!((1..=x_wt_max_out(kernel)).contains(&out));
    check("x", x.len(), rows * k);
    check("w", w.len(), out * k);
    check("z", z.len(), rows * out);
    // Safety: sizes checked above; the CPU features by `resolve`.
    unsafe {
        match kernel.resolve() {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => x_wt_avx512(out, x, rows, k, w, z),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => x_wt_avx2(out, x, rows, k, w, z),
            _ => x_wt_portable(out, x, rows, k, w, z),
        }
    }
}

/// `g [out, k] += d [rows, out]^T * x [rows, k]`, for `1 <= out <= dt_x_max_out`.
pub fn dt_x(kernel: KernelChoice, d: &[f32], rows: usize, out: usize, x: &[f32], k: usize, g: &mut [f32]) {
    assert!((1..=dt_x_max_out(kernel)).contains(&out));
    check("d", d.len(), rows * out);
    check("x", x.len(), rows * k);
    check("g", g.len(), out * k);
    // Safety: as in `x_wt`.
    unsafe {
        match kernel.resolve() {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => dt_x_avx512(out, d, rows, x, k, g),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => dt_x_avx2(out, d, rows, x, k, g),
            _ => dt_x_portable(out, d, rows, x, k, g),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::reference::sgemm_naive;
    use crate::gemm::Transpose;
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::tensor::Rng::new(seed);
        (0..n).map(|_| r.uniform() * 2.0 - 1.0).collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn match_the_naive_product(rows in 0usize..9, k in 0usize..70, out in 1usize..=30, seed in any::<u64>()) {
            let (x, w, d) = (values(rows * k, seed), values(out * k, seed ^ 1), values(rows * out, seed ^ 2));
            let g0 = values(out * k, seed ^ 3);
            let mut z_want = vec![0.0; rows * out];
            sgemm_naive(Transpose::No, Transpose::Yes, rows, out, k, 1.0, &x, k.max(1), &w, k.max(1), 0.0, &mut z_want, out);
            let mut g_want = g0.clone();
            sgemm_naive(Transpose::Yes, Transpose::No, out, k, rows, 1.0, &d, out, &x, k.max(1), 1.0, &mut g_want, k.max(1));
            for kernel in KernelChoice::available() {
                let mut z = z_want.clone();
                if out <= x_wt_max_out(kernel) {
                    z.fill(f32::NAN);
                    x_wt(kernel, &x, rows, k, &w, out, &mut z);
                }
                let mut g = g_want.clone();
                if out <= dt_x_max_out(kernel) {
                    g.copy_from_slice(&g0);
                    dt_x(kernel, &d, rows, out, &x, k, &mut g);
                }
                for (a, b) in z.iter().zip(&z_want).chain(g.iter().zip(&g_want)) {
                    prop_assert!((a - b).abs() <= 1e-5 * (k as f32 + rows as f32 + 1.0), "{kernel:?}: {a} vs {b}");
                }
            }
        }
    }
}
