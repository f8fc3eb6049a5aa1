//! The filters' gradient of a Winograd convolution, by the same minimal
//! filtering run backwards (Lavin and Gray, section 5).
//!
//! Per tile the forward pass is `Y = Aᵀ [Σ_c U_c ⊙ V_c] A` with `U = G g Gᵀ`.
//! Its adjoint, for an output gradient `dY` (2 x 2 per tile), is
//!
//! ```text
//! dU_c = Σ_tiles (A dY Aᵀ) ⊙ V_c        dg = Gᵀ dU G
//! ```
//!
//! so at each of the a * a positions ξ the sum over tiles is again a matrix
//! product, `dU[ξ] (out x in) = Q[ξ] (out x tiles) · V[ξ]ᵀ (tiles x in)`
//! with `Q = A dY Aᵀ`. For a 13 x 13 layer and 3 x 3 filters that is 784
//! products per filter, channel and image instead of the direct path's 1521.

use super::{
    combine_row, deal, dot, invalid, positions, transform_inputs, Minimal, Segment, SendPtr, Tiles, F3, F5, SKEW,
};
use crate::error::Result;
use crate::gemm::{sgemm, Transpose};
use rayon::prelude::*;

/// The gradient `[oc, c, k, k]` of the convolution of `x [n, c, h, w]`
/// (zero padding `padding`) by `k x k` filters, given the output gradient
/// `dy [n, oc, oh, ow]`. The products run over fixed chunks of images in
/// order, so the bits do not depend on the number of threads.
pub fn filter_gradient(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    k: usize,
    padding: usize,
    dy: &[f32],
    oc: usize,
) -> Result<Vec<f32>> {
    if k != 3 && k != 5 {
        return Err(invalid(format!("no algorithm for {k}x{k} filters")));
    }
    let g = Tiles::new(c, h, w, k, padding)?;
    let product = |dims: &[usize]| dims.iter().try_fold(1usize, |p, &d| p.checked_mul(d));
    // Every buffer below is at most a^2 matrices of max(oc, c) rows by
    // max(oc, c) or a chunk's columns (at most the larger of TILES and one
    // image's tiles): past that, sizes would wrap.
    let (rows, widest) = (oc.max(c), g.per_image().max(<F3 as Minimal<3, 4>>::TILES) + SKEW);
    let (Some(want_x), Some(want_dy), Some(_), Some(_)) = (
        product(&[n, c, h, w]),
        product(&[n, oc, g.oh, g.ow]),
        product(&[positions(k), rows, rows]),
        product(&[positions(k), rows, widest]),
    ) else {
        return Err(invalid(format!("[{n}, {c}, {h}, {w}] by {oc} filters: more values than memory can hold")));
    };
    if x.len() != want_x || dy.len() != want_dy {
        return Err(invalid(format!(
            "{} input and {} output-gradient values for [{n}, {c}, {h}, {w}] by {oc} filters \
             (expected {want_x} and {want_dy})",
            x.len(),
            dy.len()
        )));
    }
    if n == 0 || oc == 0 || c == 0 {
        return Ok(vec![0.0; oc * c * k * k]);
    }
    by_size!(k, gradient_by(x, n, &g, dy, oc))?
}

fn gradient_by<const R: usize, const A: usize, F: Minimal<R, A>>(
    x: &[f32],
    n: usize,
    g: &Tiles,
    dy: &[f32],
    oc: usize,
) -> Result<Vec<f32>> {
    let (positions, c) = (A * A, g.c);
    let per = (F::TILES / g.per_image().max(1)).clamp(1, n.max(1));
    let (image_in, image_out) = (c * g.h * g.w, oc * g.oh * g.ow);
    // dU: one `oc x c` matrix per position, summed chunk by chunk.
    let mut du = vec![0.0f32; positions * oc * c];
    crate::scratch::with_vec(|v| {
        crate::scratch::with_vec(|q| {
            for first in (0..n).step_by(per) {
                let count = per.min(n - first);
                let xs = &x[first * image_in..(first + count) * image_in];
                let dys = &dy[first * image_out..(first + count) * image_out];
                let cols = count * g.per_image();
                let (vs, qs) = (c * cols + SKEW, oc * cols + SKEW);
                // Every element used is written before it is read: grow without clearing.
                if v.len() < positions * vs {
                    v.resize(positions * vs, 0.0);
                }
                if q.len() < positions * qs {
                    q.resize(positions * qs, 0.0);
                }
                transform_inputs::<R, A, F>(xs, count, g, &mut v[..positions * vs], vs);
                transform_gradients::<R, A, F>(dys, count, oc, g, &mut q[..positions * qs], qs);
                du.par_chunks_mut(oc * c)
                    .zip(q[..positions * qs].par_chunks(qs))
                    .zip(v[..positions * vs].par_chunks(vs))
                    .try_for_each(|((d, qx), vx)| {
                        sgemm(
                            Transpose::No,
                            Transpose::Yes,
                            oc,
                            c,
                            cols,
                            1.0,
                            &qx[..oc * cols],
                            cols,
                            &vx[..c * cols],
                            cols,
                            1.0,
                            d,
                            c,
                        )
                    })?;
            }
            Ok::<(), crate::Error>(())
        })
    })?;
    Ok(filters_back::<R, A, F>(&du, oc, c))
}

/// `Q = A dY Aᵀ` of every tile of `dys [count, oc, oh, ow]`: `a^2`
/// matrices `oc x (count * tiles)`, laid out as [`transform_inputs`] lays
/// out `V` (outputs past the edge, in a last half tile, count as zero).
fn transform_gradients<const R: usize, const A: usize, F: Minimal<R, A>>(
    dys: &[f32],
    count: usize,
    oc: usize,
    g: &Tiles,
    q: &mut [f32],
    stride: usize,
) {
    let (cols, tiles) = (count * g.per_image(), g.per_image());
    // What the unsafe writes below rely on: each plane's run of each matrix lies in `q`.
    assert!(dys.len() == count * oc * g.oh * g.ow && (A * A - 1) * stride + oc * cols <= q.len());
    let q_ptr = SendPtr(q.as_mut_ptr());
    dys.par_chunks(g.oh * g.ow).enumerate().for_each_init(Vec::new, |s: &mut Vec<f32>, (plane, src)| {
        let (j, o) = (plane / oc, plane % oc);
        let at = Segment { dst: q_ptr, stride, first: o * cols + j * tiles };
        #[cfg(target_arch = "x86_64")]
        if super::avx2() {
            // SAFETY: `avx2()` saw the CPU's AVX2; the segment as below.
            return unsafe { gradient_plane_avx2::<R, A, F>(src, g, s, at) };
        }
        // SAFETY: the segment is this task's own (image, filter) part of row
        // `o` of every matrix, inside `q`.
        unsafe { gradient_plane::<R, A, F>(src, g, s, at) }
    });
}

/// [`gradient_plane`] compiled with AVX2.
///
/// # Safety
/// As [`gradient_plane`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn gradient_plane_avx2<const R: usize, const A: usize, F: Minimal<R, A>>(
    src: &[f32],
    g: &Tiles,
    s: &mut Vec<f32>,
    at: Segment,
) {
    // SAFETY: forwarded.
    unsafe { gradient_plane::<R, A, F>(src, g, s, at) }
}

/// `Q` of the tiles of one output-gradient plane `src [oh, ow]`; `s` is
/// scratch.
///
/// # Safety
/// For every matrix `ξ < a^2`, the `tiles` floats at
/// `at.dst + ξ * at.stride + at.first` are writable and written by no one
/// else meanwhile.
#[inline(always)]
unsafe fn gradient_plane<const R: usize, const A: usize, F: Minimal<R, A>>(
    src: &[f32],
    g: &Tiles,
    s: &mut Vec<f32>,
    at: Segment,
) {
    let (tiles, tw) = (g.per_image(), g.tw);
    // The plane split by the parity of row and column: d[2 r + c] holds
    // dY[2 ty + r][2 tx + c] at ty tw + tx. Then `dY Aᵀ` per row parity
    // (2 a runs).
    s.clear();
    s.resize((4 + 2 * A) * tiles, 0.0);
    let (d, e) = s.split_at_mut(4 * tiles);
    for (oy, row) in src.chunks_exact(g.ow).enumerate() {
        let (even, odd) = d[(oy % 2) * 2 * tiles..][..2 * tiles].split_at_mut(tiles);
        let at = (oy / 2) * tw;
        deal(row, &mut even[at..], &mut odd[at..]);
    }
    // e[r a + jj] = Σ_c Aᵀ[c][jj] d[2 r + c].
    for (rj, run) in e.chunks_exact_mut(tiles).enumerate() {
        let (r, jj) = (rj / A, rj % A);
        combine_row(&F::A_COLUMNS, jj, [&d[2 * r * tiles..], &d[(2 * r + 1) * tiles..]], run);
    }
    // Q[i a + jj] = Σ_r Aᵀ[r][i] e[r a + jj], straight into its matrix.
    for i in 0..A {
        for jj in 0..A {
            // SAFETY: the caller's: these `tiles` floats are this task's.
            let out =
                unsafe { std::slice::from_raw_parts_mut(at.dst.get().add((i * A + jj) * at.stride + at.first), tiles) };
            combine_row(&F::A_COLUMNS, i, [&e[jj * tiles..], &e[(A + jj) * tiles..]], out);
        }
    }
}

/// `dg = Gᵀ dU G` of every filter, from the `a^2` matrices `dU[ξ]` (`oc x
/// c` each, position-major): `[oc, c, r, r]`.
fn filters_back<const R: usize, const A: usize, F: Minimal<R, A>>(du: &[f32], oc: usize, c: usize) -> Vec<f32> {
    let mut dw = vec![0.0f32; oc * c * R * R];
    let matrix = oc * c;
    dw.par_chunks_mut(R * R).enumerate().for_each(|(f, out)| {
        let at = |xi: usize| du[xi * matrix + f];
        // dU G: a x r.
        let mut t = [[0.0f32; R]; A];
        for (i, ti) in t.iter_mut().enumerate() {
            for (x, v) in ti.iter_mut().enumerate() {
                *v = dot(&F::G_COLUMNS[x], |jj| at(i * A + jj));
            }
        }
        // Gᵀ (dU G): r x r.
        for y in 0..R {
            for x in 0..R {
                out[y * R + x] = dot(&F::G_COLUMNS[y], |i| t[i][x]);
            }
        }
    });
    dw
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The filters' gradient by its definition, in f64:
    /// `dW[o][c][u][v] = Σ dY[o][y][x] X[c][y + u - p][x + v - p]`.
    fn direct(x: &[f32], [n, c, h, w]: [usize; 4], dy: &[f32], oc: usize, k: usize, padding: usize) -> Vec<f64> {
        let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
        let mut dw = vec![0.0f64; oc * c * k * k];
        for j in 0..n {
            for o in 0..oc {
                for ch in 0..c {
                    for u in 0..k {
                        for v in 0..k {
                            let mut s = 0.0f64;
                            for oy in 0..oh {
                                for ox in 0..ow {
                                    let (iy, ix) =
                                        ((oy + u) as isize - padding as isize, (ox + v) as isize - padding as isize);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        s += dy[((j * oc + o) * oh + oy) * ow + ox] as f64
                                            * x[((j * c + ch) * h + iy as usize) * w + ix as usize] as f64;
                                    }
                                }
                            }
                            dw[((o * c + ch) * k + u) * k + v] += s;
                        }
                    }
                }
            }
        }
        dw
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::tensor::Rng::new(seed);
        (0..len).map(|_| r.uniform() * 2.0 - 1.0).collect()
    }

    /// The largest error relative to the largest value, as measured on
    /// AlexNet-like shapes (`matches_the_direct_gradient_on_alexnet_like_shapes`
    /// with --nocapture prints them): about 5e-7 for 3 x 3 and 1.0-1.7e-5 for
    /// 5 x 5, whose filter transform multiplies dU by up to 4 on each side
    /// and so magnifies its rounding (the forward pass's worst case is 7e-6).
    fn tolerance(k: usize) -> f64 {
        if k == 3 {
            4e-6
        } else {
            6e-5
        }
    }

    /// Shapes `[n, c, oc, h, w, k, padding]`; the worst error relative to the
    /// largest value of the gradient.
    fn check(shape: [usize; 7], seed: u64) -> std::result::Result<f64, String> {
        let [n, c, oc, h, w, k, padding] = shape;
        let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
        let x = values(n * c * h * w, seed);
        let dy = values(n * oc * oh * ow, seed + 1);
        let got = filter_gradient(&x, [n, c, h, w], k, padding, &dy, oc).map_err(|e| e.to_string())?;
        let want = direct(&x, [n, c, h, w], &dy, oc, k, padding);
        let scale = want.iter().fold(f64::MIN_POSITIVE, |m, v| m.max(v.abs()));
        let mut worst = 0.0f64;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            let err = (*g as f64 - w).abs() / scale;
            if err > tolerance(k) {
                return Err(format!("filter value {i}: winograd {g}, direct {w} (largest {scale:.3})"));
            }
            worst = worst.max(err);
        }
        Ok(worst)
    }

    #[test]
    fn matches_the_direct_gradient_on_alexnet_like_shapes() {
        // conv3-5's 13 x 13 with padding 1 (a half tile), and conv2's 27 x 27,
        // 5 x 5, at 64 channels; a batch of 32 (several chunks, summed in order).
        for (k, p) in [(3, 1), (5, 2)] {
            for (n, c, oc, h) in [(3, 64, 64, 13), (32, 64, 32, 13), (2, 64, 32, 27), (8, 64, 16, 27)] {
                let worst = check([n, c, oc, h, h, k, p], 7 + n as u64).unwrap();
                println!("{k}x{k}, [{n}, {c}, {h}, {h}] by {oc}: worst error / largest value {worst:.2e}");
            }
        }
        // Smaller odd shapes and the other paddings.
        check([2, 32, 36, 8, 6, 3, 0], 9).unwrap();
        check([1, 32, 33, 4, 5, 5, 4], 17).unwrap();
        check([45, 4, 3, 13, 13, 3, 1], 19).unwrap();
    }

    #[test]
    fn refuses_what_it_cannot_take() {
        let x = values(2 * 36, 1);
        assert!(filter_gradient(&x, [1, 2, 6, 6], 3, 1, &[0.0; 3 * 36], 3).is_ok());
        assert!(filter_gradient(&x, [1, 2, 6, 6], 3, 1, &[0.0; 3 * 35], 3).is_err(), "a short gradient");
        assert!(filter_gradient(&x[1..], [1, 2, 6, 6], 3, 1, &[0.0; 3 * 36], 3).is_err(), "a short input");
        assert!(filter_gradient(&x, [1, 2, 6, 6], 7, 1, &[0.0; 3 * 4], 3).is_err(), "no 7 x 7 algorithm");
        assert!(filter_gradient(&x, [1, 2, 6, 6], 3, 3, &[0.0; 3 * 100], 3).is_err(), "padding >= k");
        // Sizes that would wrap, and huge paddings or images: errors, not wild writes or panics.
        assert!(filter_gradient(&[0.0; 4], [1, 1, 2, 2], 3, 1, &[0.0; 4], (1 << 62) + 1).is_err());
        assert!(filter_gradient(&[0.0; 4], [1, 1, 2, 2], 3, usize::MAX, &[0.0; 4], 1).is_err());
        assert!(filter_gradient(&[0.0; 4], [1, 1, usize::MAX, 1], 3, 1, &[0.0; 4], 1).is_err());
        assert!(filter_gradient(&[0.0; 4], [1, 1, 2, 2], usize::MAX, 1, &[0.0; 4], 1).is_err());
        // No channels or no images: a zero gradient.
        assert_eq!(filter_gradient(&[], [1, 0, 6, 6], 3, 1, &[0.0; 36], 1).unwrap(), Vec::<f32>::new());
        assert_eq!(filter_gradient(&[], [0, 2, 6, 6], 3, 1, &[], 3).unwrap(), vec![0.0; 54]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn matches_the_direct_gradient(n in 1usize..3, c in 1usize..8, oc in 1usize..8, h in 1usize..12,
                                       w in 1usize..12, five in any::<bool>(), padding in 0usize..5,
                                       seed in 0u64..1000) {
            let k = if five { 5 } else { 3 };
            prop_assume!(padding < k && h + 2 * padding >= k && w + 2 * padding >= k);
            let shape = [n, c, oc, h, w, k, padding];
            prop_assert!(check(shape, seed).is_ok(), "{}", check(shape, seed).unwrap_err());
        }
    }
}
