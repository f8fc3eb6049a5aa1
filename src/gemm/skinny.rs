//! Products with a tiny dimension (the 10 classes of MNIST, the 6 actors of
//! the faces data), where a general GEMM spends its time packing:
//!
//! - `x_wt`: `Z = X W^T` for row-major `X [rows, k]` and `W [out, k]`, as dot
//!   products along k, which is contiguous in both operands, so nothing is
//!   packed or transposed and X streams through once in memory order;
//! - `dt_x`: `G += D^T X` for `D [rows, out]`, as rank-one updates of `G
//!   [out, k]` held in registers a few vectors of k at a time.
//!
//! Both are written once over a `Lane` (`lane.rs`) and instantiated per instruction
//! set and per `out` (1..=12), like the GEMM microkernels.

use super::lane::Lane;
use super::{GemmError, KernelChoice};

/// The largest `out` every instruction set takes (see `max_out`).
pub const MAX_OUT: usize = 12;

/// Outputs per pass of [`x_wt_body`]: `out` cut into the fewest passes of at
/// most `max`, as equal as they can be (10 outputs in at most 6: two of 5).
const fn pass_width(out: usize, max: usize) -> usize {
    out.div_ceil(out.div_ceil(max))
}

/// `z = x w^T` on lane `L` (the body of [`x_wt`]): `ROWS` rows of x at a
/// time against `JB` rows of w, the outputs in passes of `JB`.
///
/// Why passes: each step loads one vector of w per output and of x per row,
/// and w (10 x 784 floats, 31 KiB for MNIST) does not stay in a 32 KiB L1
/// while x streams past it, so its loads come from L2. Two rows per w vector
/// halve that traffic; with 16 registers two rows fit only 5 or 6 outputs
/// at a time, so the outputs take turns while the rows (now in L1) are read
/// again.
///
/// # Safety
/// The CPU runs `L`'s instructions; `x` holds at least `rows * k` values, `w`
/// `OUT * k` and `z` `rows * OUT` (the vector loads are unchecked).
// Index loops keep the register blocking visible.
#[inline(always)]
#[allow(clippy::needless_range_loop)]
unsafe fn x_wt_body<L: Lane, const OUT: usize, const ROWS: usize, const JB: usize>(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    z: &mut [f32],
) {
    // SAFETY: each vector load reads WIDTH values at `(row, c)` with
    // `row < rows`, `c + WIDTH <= body <= k` (rows of x; rows `j < OUT` of
    // w, clamped), inside the lengths the caller vouches for; the prefetch
    // address is clamped to the last element of x; the CPU features are the
    // caller's promise.
    unsafe {
        let width = L::WIDTH;
        let body = k / width * width;
        let (xp, wp) = (x.as_ptr(), w.as_ptr());
        let mut r = 0;
        while r < rows {
            let take = ROWS.min(rows - r);
            let mut j0 = 0;
            while j0 < OUT {
                // A last pass narrower than JB repeats the last row of w.
                let wrow: [usize; JB] = std::array::from_fn(|j| (j0 + j).min(OUT - 1) * k);
                let mut acc = [[L::zero(); JB]; ROWS];
                let mut c = 0;
                while c < body {
                    if j0 == 0 {
                        // The next rows are the next bytes of X: ask for them
                        // early, so the stream from memory overlaps the arithmetic.
                        L::prefetch(xp.add(((r + ROWS + ROWS) * k + c).min(rows * k - 1)));
                        L::prefetch(xp.add(((r + ROWS + ROWS + 1) * k + c).min(rows * k - 1)));
                    }
                    let xv: [L; ROWS] = std::array::from_fn(|q| L::load(xp.add((r + q.min(take - 1)) * k + c)));
                    for j in 0..JB {
                        let wv = L::load(wp.add(wrow[j] + c));
                        for q in 0..ROWS {
                            acc[q][j] = acc[q][j].fma(xv[q], wv);
                        }
                    }
                    c += width;
                }
                for q in 0..take {
                    let xr = &x[(r + q) * k..(r + q + 1) * k];
                    for j in 0..JB.min(OUT - j0) {
                        let wr = &w[wrow[j]..wrow[j] + k];
                        let tail: f32 = (body..k).map(|i| xr[i] * wr[i]).sum();
                        z[(r + q) * OUT + j0 + j] = acc[q][j].reduce_sum() + tail;
                    }
                }
                j0 += JB;
            }
            r += ROWS;
        }
    }
}

/// `g += d^T x` on lane `L` (the body of [`dt_x`]): `CHUNKS` vectors of k
/// at a time, the outputs in passes of `JB` (see [`x_wt_body`]); then single
/// vectors while a whole one is left, then single values. The middle step
/// matters with AVX-512: 784 inputs are 24 steps of 32 and 16 more, and
/// those 16 done one value at a time, with g loaded and stored for each,
/// took 40 % of the MNIST step's `dt_x` on an Intel Xeon (family 6 model 207).
///
/// # Safety
/// The CPU runs `L`'s instructions; `d` holds at least `rows * OUT` values,
/// `x` `rows * k` and `g` `OUT * k` (the vector loads and stores are unchecked).
#[inline(always)]
unsafe fn dt_x_body<L: Lane, const OUT: usize, const CHUNKS: usize, const JB: usize>(
    d: &[f32],
    rows: usize,
    x: &[f32],
    k: usize,
    g: &mut [f32],
) {
    // SAFETY: the caller's contract, and `dt_x_columns` is given column
    // ranges that end at or before `k`, in whole steps of its width.
    unsafe {
        let width = L::WIDTH;
        let wide = k / (width * CHUNKS) * (width * CHUNKS);
        dt_x_columns::<L, OUT, CHUNKS, JB>(d, rows, x, k, g, 0, wide);
        let vectors = k / width * width;
        dt_x_columns::<L, OUT, 1, JB>(d, rows, x, k, g, wide, vectors);
        for r in 0..rows {
            for j in 0..OUT {
                let dv = d[r * OUT + j];
                for i in vectors..k {
                    g[j * k + i] += dv * x[r * k + i];
                }
            }
        }
    }
}

/// Columns `c0..c1` of [`dt_x_body`], `c1 - c0` a multiple of `CHUNKS`
/// vectors: g's vectors held in registers while the rows stream past.
///
/// # Safety
/// As for [`dt_x_body`], with `c1 <= k`.
#[inline(always)]
#[allow(clippy::needless_range_loop, clippy::too_many_arguments)]
unsafe fn dt_x_columns<L: Lane, const OUT: usize, const CHUNKS: usize, const JB: usize>(
    d: &[f32],
    rows: usize,
    x: &[f32],
    k: usize,
    g: &mut [f32],
    c0: usize,
    c1: usize,
) {
    // SAFETY: vectors of g and x are read and written at `(row, c + h *
    // WIDTH)` with `c + CHUNKS * WIDTH <= c1 <= k`, rows below OUT (g,
    // clamped) and `rows` (x); d is read at `r * OUT + j`, `r < rows`,
    // `j < OUT`: all inside the lengths the caller vouches for, on the CPU it
    // vouches for.
    unsafe {
        let width = L::WIDTH;
        let step = width * CHUNKS;
        let (xp, gp, dp) = (x.as_ptr(), g.as_mut_ptr(), d.as_ptr());
        let mut c = c0;
        while c < c1 {
            let mut j0 = 0;
            while j0 < OUT {
                // A last pass narrower than JB repeats the last output, unstored.
                let jrow: [usize; JB] = std::array::from_fn(|j| (j0 + j).min(OUT - 1));
                let mut acc: [[L; CHUNKS]; JB] =
                    std::array::from_fn(|j| std::array::from_fn(|h| L::load(gp.add(jrow[j] * k + c + h * width))));
                for r in 0..rows {
                    let xv: [L; CHUNKS] = std::array::from_fn(|h| L::load(xp.add(r * k + c + h * width)));
                    for j in 0..JB {
                        let dv = L::splat(*dp.add(r * OUT + jrow[j]));
                        for h in 0..CHUNKS {
                            acc[j][h] = acc[j][h].fma(dv, xv[h]);
                        }
                    }
                }
                for j in 0..JB.min(OUT - j0) {
                    for h in 0..CHUNKS {
                        acc[j][h].store(gp.add(jrow[j] * k + c + h * width));
                    }
                }
                j0 += JB;
            }
            c += step;
        }
    }
}

/// Instantiate a kernel for each `out` (with the register block that fits
/// the instruction set's registers) behind one dispatching function.
macro_rules! by_out {
    ($name:ident, $body:ident, $lane:ty, [$($feature:literal),*], passes $pass:literal, $($block:literal => [$($n:literal)*]),*; ($($arg:ident: $ty:ty),*)) => {
        /// The body for `out` outputs.
        ///
        /// # Safety
        /// As for the body: the CPU has the features enabled here, and the
        /// slices hold what the body's contract asks for this `out`.
        $(#[target_feature(enable = $feature)])*
        unsafe fn $name(out: usize, $($arg: $ty),*) {
            // SAFETY: forwarded from this function's own contract.
            unsafe { by_out!(@dispatch out, $body, $lane, ($($arg),*), $pass, $($block => [$($n)*]),*) }
        }
    };
    (@dispatch $out:ident, $body:ident, $lane:ty, $args:tt, $pass:literal, $($block:literal => [$($n:literal)*]),*) => {
        match $out {
            $($($n => $body::<$lane, $n, $block, { pass_width($n, $pass) }> $args,)*)*
            _ => unreachable!("out <= max_out is checked by the caller"),
        }
    };
}

by_out!(x_wt_portable, x_wt_body, wide::f32x8, [], passes 12, 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
by_out!(dt_x_portable, dt_x_body, wide::f32x8, [], passes 12, 1 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (d: &[f32], rows: usize, x: &[f32], k: usize, g: &mut [f32]));
// 16 ymm registers: two rows of x (or two vectors of k: a whole cache line
// of each row of x) by at most 6 outputs a pass, 12 accumulators. Against one
// row (or vector) by all the outputs in one pass, on a 2-core Zen 3 (AVX2),
// single thread, MNIST's 60000 x 784 -> 10 in blocks of 144 rows, medians of
// alternating runs: x_wt 26-34 -> 21-24 ms, dt_x streaming from memory 66-84
// -> 31-40 ms; the whole training step 49-65 -> 40-47 ms on a busy machine.
#[cfg(target_arch = "x86_64")]
by_out!(x_wt_avx2, x_wt_body, super::lane::Avx2, ["avx2,fma"], passes 6, 2 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
#[cfg(target_arch = "x86_64")]
by_out!(dt_x_avx2, dt_x_body, super::lane::Avx2, ["avx2,fma"], passes 6, 2 => [1 2 3 4 5 6 7 8 9 10 11 12];
    (d: &[f32], rows: usize, x: &[f32], k: usize, g: &mut [f32]));
// 32 zmm registers: up to 14 outputs, two rows (or two vectors of k) at a
// time; up to 30, one; all outputs in one pass (not measured otherwise: no
// AVX-512 machine since the passes came).
// x_wt stops at 14 outputs: beyond, each step walks more rows of W than L1
// holds ways for (rows 4 KiB apart, as with 1024 inputs, share one L1 set),
// and the packed GEMM is faster.
#[cfg(target_arch = "x86_64")]
by_out!(x_wt_avx512, x_wt_body, super::lane::Avx512, ["avx512f"], passes 14, 2 => [1 2 3 4 5 6 7 8 9 10 11 12 13 14];
    (x: &[f32], rows: usize, k: usize, w: &[f32], z: &mut [f32]));
#[cfg(target_arch = "x86_64")]
by_out!(dt_x_avx512, dt_x_body, super::lane::Avx512, ["avx512f"], passes 30,
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

/// The checks every skinny product makes before its unchecked loops: the
/// kernel runs on this CPU, `out` is one it was instantiated for, and each
/// `(name, slice length, rows, cols)` operand holds `rows * cols` values
/// (computed without wrapping: a wrapped product would let a short slice through).
fn check(
    kernel: KernelChoice,
    out: usize,
    max: usize,
    operands: [(&'static str, usize, usize, usize); 3],
) -> Result<(), GemmError> {
    if !kernel.is_available() {
        return Err(GemmError::KernelUnavailable(kernel.name()));
    }
    if !(1..=max).contains(&out) {
        return Err(GemmError::SkinnyOut { out, max, kernel: kernel.resolve().name() });
    }
    for (operand, len, rows, cols) in operands {
        let needed = rows.checked_mul(cols).ok_or(GemmError::Overflow { operand, rows, cols, ld: cols })?;
        if len < needed {
            return Err(GemmError::TooShort { operand, rows, cols, ld: cols, needed, len });
        }
    }
    Ok(())
}

/// `z [rows, out] = x [rows, k] * w [out, k]^T`, for `1 <= out <= x_wt_max_out`.
/// An error, never a panic or a read out of bounds, for short slices, a bad
/// `out` or a kernel this CPU lacks.
pub fn x_wt(
    kernel: KernelChoice,
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    out: usize,
    z: &mut [f32],
) -> Result<(), GemmError> {
    let max = x_wt_max_out(kernel);
    check(kernel, out, max, [("x", x.len(), rows, k), ("w", w.len(), out, k), ("z", z.len(), rows, out)])?;
    // SAFETY: `check` proved the slice lengths the body needs for this
    // `out` (which `by_out!` instantiated: `out <= max`), and that the CPU
    // runs the kernel `resolve` picks.
    unsafe {
        match kernel.resolve() {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => x_wt_avx512(out, x, rows, k, w, z),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => x_wt_avx2(out, x, rows, k, w, z),
            _ => x_wt_portable(out, x, rows, k, w, z),
        }
    }
    Ok(())
}

/// `g [out, k] += d [rows, out]^T * x [rows, k]`, for `1 <= out <= dt_x_max_out`;
/// errors as for [`x_wt`].
pub fn dt_x(
    kernel: KernelChoice,
    d: &[f32],
    rows: usize,
    out: usize,
    x: &[f32],
    k: usize,
    g: &mut [f32],
) -> Result<(), GemmError> {
    let max = dt_x_max_out(kernel);
    check(kernel, out, max, [("d", d.len(), rows, out), ("x", x.len(), rows, k), ("g", g.len(), out, k)])?;
    // SAFETY: as in `x_wt`.
    unsafe {
        match kernel.resolve() {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => dt_x_avx512(out, d, rows, x, k, g),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => dt_x_avx2(out, d, rows, x, k, g),
            _ => dt_x_portable(out, d, rows, x, k, g),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::reference::sgemm_naive;
    use crate::gemm::Transpose;
    use proptest::prelude::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::rng::Rng::new(seed);
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
                    x_wt(kernel, &x, rows, k, &w, out, &mut z).unwrap();
                }
                let mut g = g_want.clone();
                if out <= dt_x_max_out(kernel) {
                    g.copy_from_slice(&g0);
                    dt_x(kernel, &d, rows, out, &x, k, &mut g).unwrap();
                }
                for (a, b) in z.iter().zip(&z_want).chain(g.iter().zip(&g_want)) {
                    prop_assert!((a - b).abs() <= 1e-5 * (k as f32 + rows as f32 + 1.0), "{kernel:?}: {a} vs {b}");
                }
            }
        }
    }

    /// Bad arguments are errors: a wrapped `rows * k` used to pass the
    /// length checks (and the loops read far past `x`), a kernel the CPU
    /// lacks used to run (SIGILL), a bad `out` used to panic.
    #[test]
    fn bad_arguments_are_errors() {
        let huge = 1usize << (usize::BITS - 1);
        let mut z = vec![0.0f32; 16];
        for kernel in KernelChoice::available() {
            // 2 * 2^63 wraps to 0: x and w "need" nothing.
            let err = x_wt(kernel, &[], 2, huge, &[], 2, &mut z).unwrap_err();
            assert!(matches!(err, GemmError::Overflow { operand: "x", .. }), "{kernel:?}: {err}");
            let err = dt_x(kernel, &[0.0; 4], 2, 2, &[], huge, &mut z).unwrap_err();
            assert!(matches!(err, GemmError::Overflow { operand: "x", .. }), "{kernel:?}: {err}");
            let err = x_wt(kernel, &[0.0; 6], 2, 3, &[0.0; 5], 2, &mut z).unwrap_err();
            assert!(matches!(err, GemmError::TooShort { operand: "w", needed: 6, len: 5, .. }), "{err}");
            let err = dt_x(kernel, &[0.0; 4], 2, 2, &[0.0; 6], 3, &mut z[..5]).unwrap_err();
            assert!(matches!(err, GemmError::TooShort { operand: "g", needed: 6, len: 5, .. }), "{err}");
            for out in [0, x_wt_max_out(kernel) + 1] {
                let err = x_wt(kernel, &[0.0; 64], 1, 1, &[0.0; 64], out, &mut z).unwrap_err();
                assert!(matches!(err, GemmError::SkinnyOut { .. }), "{err}");
            }
            let err = dt_x(kernel, &[0.0; 64], 1, dt_x_max_out(kernel) + 1, &[0.0; 64], 1, &mut [0.0; 64]).unwrap_err();
            assert!(matches!(err, GemmError::SkinnyOut { .. }), "{err}");
        }
        // A kernel this CPU cannot run is refused before any of its code runs.
        for kernel in [KernelChoice::Avx2, KernelChoice::Avx512].into_iter().filter(|k| !k.is_available()) {
            let err = x_wt(kernel, &[1.0; 64], 4, 16, &[1.0; 64], 2, &mut z).unwrap_err();
            assert_eq!(err, GemmError::KernelUnavailable(kernel.name()));
            let err = dt_x(kernel, &[1.0; 8], 4, 2, &[1.0; 64], 16, &mut [0.0; 32]).unwrap_err();
            assert_eq!(err, GemmError::KernelUnavailable(kernel.name()));
        }
    }
}
