//! Winograd's minimal filtering, F(2x2, 3x3) (Lavin and Gray, "Fast
//! Algorithms for Convolutional Neural Networks", 2016), for 3 x 3,
//! stride-1 convolutions.
//!
//! A 2 x 2 block of outputs needs a 4 x 4 patch `d` of the input. Direct
//! convolution spends 2 * 2 * 9 = 36 multiplications on it per filter and
//! channel; Winograd spends 16:
//!
//! ```text
//! Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//! ```
//!
//! where `G g Gᵀ` (4 x 4) is computed once per filter, `Bᵀ d B` once per
//! patch and channel, and `A`, `B`, `G` hold only 0, ±1 and ±1/2 (so the
//! transforms are additions). The sum over channels at each of the 16
//! positions is a matrix product: `M[ξ] (out x tiles) = U[ξ] (out x in) ·
//! V[ξ] (in x tiles)`, sixteen of them, run by our SGEMM. For AlexNet's
//! 13 x 13 layers (7 x 7 tiles cover 14 x 14 outputs) that is 784 products
//! per filter and channel instead of 1521: 1.94x fewer.
//!
//! The price is rounding: the transforms add and subtract values before the
//! products, so the error is a few times that of the direct sum (measured
//! in the tests below against the direct convolution in f64).

use crate::error::Result;
use crate::gemm::{sgemm_packed, PackedA, Transpose};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// Positions of a transformed tile (4 x 4).
pub const POSITIONS: usize = 16;

/// Whether a convolution takes this path: 3 x 3 filters, stride 1, one
/// group, padding at most 2, and channels enough (in and out) that the
/// sixteen products are real products. `NABLA_CONV=direct` in the
/// environment, or [`set_enabled`]`(false)`, turns it off, to compare.
pub fn applies(c: usize, oc: usize, kh: usize, kw: usize, stride: usize, padding: usize, groups: usize) -> bool {
    enabled()
        && kh == 3
        && kw == 3
        && stride == 1
        && padding <= 2
        && groups == 1
        && c >= MIN_CHANNELS
        && oc >= MIN_CHANNELS
}

/// Whether images `w` pixels wide, padded by `padding`, fit the input
/// transform's rows (see [`conv3x3`]).
pub fn fits(w: usize, padding: usize) -> bool {
    w.saturating_add(2 * padding).saturating_add(2) <= MAX_ROW
}

/// 0: not decided yet (the environment decides), 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether 3 x 3 convolutions may take this path.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("NABLA_CONV").map_or(true, |v| v != "direct");
            ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        v => v == 1,
    }
}

/// Turn the path on or off for the whole process (benches compare both).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Fewer input or output channels than this go the direct way.
const MIN_CHANNELS: usize = 32;

/// `U = G g Gᵀ` of every 3 x 3 filter of `w [oc, c, 3, 3]`: sixteen values
/// per filter, filter-major (`[oc * c][16]`, so each filter's are written
/// together; [`pack_filters`] regroups them by position).
pub fn transform_filters(w: &[f32], oc: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; POSITIONS * oc * c];
    u.par_chunks_mut(POSITIONS * c).zip(w.par_chunks(9 * c)).for_each(|(us, gs)| {
        for (out, g) in us.chunks_exact_mut(POSITIONS).zip(gs.chunks_exact(9)) {
            // G g: 4 x 3.
            let mut t = [[0.0f32; 3]; 4];
            for j in 0..3 {
                let (g0, g1, g2) = (g[j], g[3 + j], g[6 + j]);
                t[0][j] = g0;
                t[1][j] = 0.5 * (g0 + g1 + g2);
                t[2][j] = 0.5 * (g0 - g1 + g2);
                t[3][j] = g2;
            }
            // (G g) Gᵀ: 4 x 4.
            for (i, r) in t.iter().enumerate() {
                out[i * 4..i * 4 + 4].copy_from_slice(&[
                    r[0],
                    0.5 * (r[0] + r[1] + r[2]),
                    0.5 * (r[0] - r[1] + r[2]),
                    r[2],
                ]);
            }
        }
    });
    u
}

/// The sixteen `oc x c` matrices of transformed filters (from
/// [`transform_filters`]), one per position, packed for the products.
pub fn pack_filters(u: &[f32], oc: usize, c: usize) -> Result<Vec<Arc<PackedA>>> {
    (0..POSITIONS)
        .into_par_iter()
        .map(|xi| {
            let m: Vec<f32> = u.iter().skip(xi).step_by(POSITIONS).copied().collect();
            Ok(Arc::new(PackedA::new(Transpose::No, oc, c, &m, c)?))
        })
        .collect()
}

/// Geometry of one call: images of `c x h x w` padded by `padding`, giving
/// `oh x ow` outputs in `th x tw` tiles.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    c: usize,
    h: usize,
    w: usize,
    padding: usize,
    oh: usize,
    ow: usize,
    th: usize,
    tw: usize,
}

impl Tiles {
    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

/// Tiles per product, about: enough columns for full panels, few enough
/// that the transformed inputs and products stay near the caches.
const PRODUCT_TILES: usize = 1024;

/// The convolution of `x [n, c, h, w]` (zero padding `padding`) by the
/// filters whose packed transforms are `u` (from [`pack_filters`], `oc`
/// filters), plus `bias`, then ReLU if `relu`: `[n, oc, oh, ow]`.
#[allow(clippy::too_many_arguments)]
pub fn conv3x3(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    padding: usize,
    u: &[Arc<PackedA>],
    oc: usize,
    bias: Option<&[f32]>,
    relu: bool,
) -> Result<Vec<f32>> {
    if !fits(w, padding) || padding > 2 || h + 2 * padding < 3 || w + 2 * padding < 3 {
        return Err(crate::Error::Invalid {
            op: "conv2d (Winograd)",
            message: format!("a {h}x{w} input with padding {padding} is outside what this path takes"),
        });
    }
    let (oh, ow) = (h + 2 * padding - 2, w + 2 * padding - 2);
    let g = Tiles { c, h, w, padding, oh, ow, th: oh.div_ceil(2), tw: ow.div_ceil(2) };
    let per = (PRODUCT_TILES / g.per_image().max(1)).clamp(1, n.max(1));
    let mut y = vec![0.0f32; n * oc * oh * ow];
    let (image_in, image_out) = (c * h * w, oc * oh * ow);
    crate::scratch::with_vec(|v| {
        crate::scratch::with_vec(|m| {
            for (chunk, ys) in y.chunks_mut(per * image_out).enumerate() {
                let count = ys.len() / image_out;
                let xs = &x[chunk * per * image_in..(chunk * per + count) * image_in];
                let cols = count * g.per_image();
                let (vs, ms) = (c * cols + SKEW, oc * cols + SKEW);
                // Every element used is written before it is read: grow without clearing.
                if v.len() < POSITIONS * vs {
                    v.resize(POSITIONS * vs, 0.0);
                }
                if m.len() < POSITIONS * ms {
                    m.resize(POSITIONS * ms, 0.0);
                }
                transform_inputs(xs, count, &g, &mut v[..POSITIONS * vs], vs);
                // The sixteen products, side by side on the threads.
                m[..POSITIONS * ms]
                    .par_chunks_mut(ms)
                    .zip(v[..POSITIONS * vs].par_chunks(vs))
                    .zip(u.par_iter())
                    .try_for_each(|((mx, vx), ux)| -> Result<()> {
                        sgemm_packed(
                            ux,
                            Transpose::No,
                            cols,
                            1.0,
                            &vx[..c * cols],
                            cols,
                            0.0,
                            &mut mx[..oc * cols],
                            cols,
                        )?;
                        Ok(())
                    })?;
                transform_outputs(&m[..POSITIONS * ms], ms, count, oc, &g, ys, bias, relu);
            }
            Ok::<(), crate::Error>(())
        })
    })?;
    Ok(y)
}

/// A thread's scratch for [`transform_inputs`]: the padded plane, a row of
/// tiles after `Bᵀ d`, and after `d B`.
struct Work {
    padded: Vec<f32>,
    t: [[f32; MAX_ROW]; 4],
    out: [[f32; MAX_ROW / 2]; POSITIONS],
}

impl Default for Work {
    fn default() -> Work {
        Work { padded: Vec::new(), t: [[0.0; MAX_ROW]; 4], out: [[0.0; MAX_ROW / 2]; POSITIONS] }
    }
}

/// The widest padded row the input transform holds on the stack (tiles of
/// images up to 1022 pixels wide; wider ones go the direct way).
const MAX_ROW: usize = 1024;

/// Floats between consecutive positions' matrices beyond their size: the
/// sixteen matrices of one tile are read and written together, and at a
/// stride that is a multiple of 4 KiB they would all fall in one set of the
/// L1 cache and evict each other.
const SKEW: usize = 16;

/// `V = Bᵀ d B` of every 4 x 4 patch: sixteen `c x (count * tiles)` matrices.
fn transform_inputs(xs: &[f32], count: usize, g: &Tiles, v: &mut [f32], stride: usize) {
    let cols = count * g.per_image();
    let plane = g.h * g.w;
    // One (image, channel) plane at a time, on the threads; each writes its own
    // row segment of each of the sixteen matrices.
    let rows: Vec<(usize, usize)> = (0..count).flat_map(|j| (0..g.c).map(move |ch| (j, ch))).collect();
    let v_ptr = SendPtr(v.as_mut_ptr());
    // The plane padded to whole tiles: (2 th + 2) x (2 tw + 2), zeros around.
    let (ph, pw) = (2 * g.th + 2, 2 * g.tw + 2);
    rows.par_iter().for_each_init(Work::default, |work: &mut Work, &(j, ch)| {
        let padded = &mut work.padded;
        let src = &xs[(j * g.c + ch) * plane..(j * g.c + ch + 1) * plane];
        padded.clear();
        padded.resize(ph * pw, 0.0);
        for (y, row) in src.chunks_exact(g.w).enumerate() {
            let at = (y + g.padding) * pw + g.padding;
            // Rows and columns past the tiles' reach are never read.
            let n = g.w.min(pw - g.padding);
            if y + g.padding < ph {
                padded[at..at + n].copy_from_slice(&row[..n]);
            }
        }
        let row = ch * cols + j * g.per_image();
        // One row of tiles at a time: Bᵀ d on whole padded rows (t, 4 x pw),
        // then d B per tile into `out` (16 x tw), stored as sixteen runs.
        let (t, out) = (&mut work.t, &mut work.out);
        for ty in 0..g.th {
            let d = |r: usize| &padded[(2 * ty + r) * pw..(2 * ty + r + 1) * pw];
            let (d0, d1, d2, d3) = (d(0), d(1), d(2), d(3));
            for x in 0..pw {
                t[0][x] = d0[x] - d2[x];
                t[1][x] = d1[x] + d2[x];
                t[2][x] = d2[x] - d1[x];
                t[3][x] = d1[x] - d3[x];
            }
            for (r, tr) in t.iter().enumerate() {
                for tx in 0..g.tw {
                    let q = &tr[2 * tx..2 * tx + 4];
                    out[r * 4][tx] = q[0] - q[2];
                    out[r * 4 + 1][tx] = q[1] + q[2];
                    out[r * 4 + 2][tx] = q[2] - q[1];
                    out[r * 4 + 3][tx] = q[1] - q[3];
                }
            }
            let at_row = row + ty * g.tw;
            for (xi, run) in out.iter().enumerate() {
                // SAFETY: `at_row .. at_row + tw` lies in this task's own (image,
                // channel) segment of row `ch`; no other task writes it, and it
                // ends below 15 * stride + c * cols <= v.len().
                unsafe { std::ptr::copy_nonoverlapping(run.as_ptr(), v_ptr.get().add(xi * stride + at_row), g.tw) };
            }
        }
    });
}

/// `Y = Aᵀ m A` of every tile of the products into `ys [count, oc, oh, ow]`,
/// with the bias and ReLU.
#[allow(clippy::too_many_arguments)]
fn transform_outputs(
    m: &[f32],
    stride: usize,
    count: usize,
    oc: usize,
    g: &Tiles,
    ys: &mut [f32],
    bias: Option<&[f32]>,
    relu: bool,
) {
    let cols = count * g.per_image();
    let out_plane = g.oh * g.ow;
    ys.par_chunks_mut(out_plane).enumerate().for_each(|(plane, y)| {
        let (j, k) = (plane / oc, plane % oc);
        let b = bias.map_or(0.0, |b| b[k]);
        for ty in 0..g.th {
            for tx in 0..g.tw {
                let p = j * g.per_image() + ty * g.tw + tx;
                let e = |i: usize| m[i * stride + k * cols + p];
                // Aᵀ m: 2 x 4.
                let mut s = [[0.0f32; 4]; 2];
                for (q, [m0, m1, m2, m3]) in (0..4).map(|q| (q, [e(q), e(4 + q), e(8 + q), e(12 + q)])) {
                    s[0][q] = m0 + m1 + m2;
                    s[1][q] = m1 - m2 - m3;
                }
                for (r, sr) in s.iter().enumerate() {
                    let oy = 2 * ty + r;
                    if oy >= g.oh {
                        continue;
                    }
                    let pair = [sr[0] + sr[1] + sr[2], sr[1] - sr[2] - sr[3]];
                    for (q, val) in pair.into_iter().enumerate() {
                        let ox = 2 * tx + q;
                        if ox < g.ow {
                            let v = val + b;
                            y[oy * g.ow + ox] = if relu { v.max(0.0) } else { v };
                        }
                    }
                }
            }
        }
    });
}

/// A pointer the threads may share, each writing only its own elements.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`).
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: used only in `transform_inputs`, whose tasks write disjoint elements.
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution in f64 (correlation, as CNNs define it).
    fn direct(x: &[f32], [n, c, h, w]: [usize; 4], wt: &[f32], oc: usize, padding: usize, bias: &[f32]) -> Vec<f64> {
        let (oh, ow) = (h + 2 * padding - 2, w + 2 * padding - 2);
        let mut y = vec![0.0f64; n * oc * oh * ow];
        for j in 0..n {
            for k in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = bias[k] as f64;
                        for ch in 0..c {
                            for dy in 0..3 {
                                for dx in 0..3 {
                                    let (iy, ix) =
                                        ((oy + dy) as isize - padding as isize, (ox + dx) as isize - padding as isize);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        s += x[((j * c + ch) * h + iy as usize) * w + ix as usize] as f64
                                            * wt[((k * c + ch) * 3 + dy) * 3 + dx] as f64;
                                    }
                                }
                            }
                        }
                        y[((j * oc + k) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::tensor::Rng::new(seed);
        (0..len).map(|_| r.uniform() * 2.0 - 1.0).collect()
    }

    fn check(
        n: usize,
        c: usize,
        oc: usize,
        h: usize,
        w: usize,
        padding: usize,
        seed: u64,
    ) -> std::result::Result<(), String> {
        let x = values(n * c * h * w, seed);
        let wt = values(oc * c * 9, seed + 1);
        let bias = values(oc, seed + 2);
        let u = pack_filters(&transform_filters(&wt, oc, c), oc, c).unwrap();
        let got = conv3x3(&x, [n, c, h, w], padding, &u, oc, Some(&bias), false).unwrap();
        let want = direct(&x, [n, c, h, w], &wt, oc, padding, &bias);
        // Each output sums 9c products of values in [-1, 1]: scale the
        // tolerance by sqrt(9c), as rounding errors add up like a random walk.
        let tol = 2e-6 * (9.0 * c as f64).sqrt() * 4.0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if (*g as f64 - w).abs() > tol * (1.0 + w.abs()) {
                return Err(format!("output {i}: winograd {g}, direct {w} (tolerance {tol:.2e})"));
            }
        }
        Ok(())
    }

    #[test]
    fn matches_the_direct_convolution_on_alexnet_like_shapes() {
        // AlexNet's conv3-5 shapes, narrowed: 13 x 13, padding 1, odd size (a half tile).
        check(2, 40, 36, 13, 13, 1, 7).unwrap();
        check(1, 33, 32, 8, 6, 0, 9).unwrap();
        check(3, 32, 40, 5, 7, 2, 11).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn matches_the_direct_convolution(n in 1usize..3, c in 1usize..12, oc in 1usize..10, h in 1usize..12,
                                          w in 1usize..12, padding in 0usize..3, seed in 0u64..1000) {
            prop_assume!(h + 2 * padding >= 3 && w + 2 * padding >= 3);
            prop_assert!(check(n, c, oc, h, w, padding, seed).is_ok(), "{}", check(n, c, oc, h, w, padding, seed).unwrap_err());
        }
    }

    #[test]
    fn relu_and_the_switch() {
        let (c, oc) = (32, 32);
        let x = values(c * 36, 3);
        let wt = values(oc * c * 9, 4);
        let u = pack_filters(&transform_filters(&wt, oc, c), oc, c).unwrap();
        let plain = conv3x3(&x, [1, c, 6, 6], 1, &u, oc, None, false).unwrap();
        let relu = conv3x3(&x, [1, c, 6, 6], 1, &u, oc, None, true).unwrap();
        assert!(plain.iter().any(|v| *v < 0.0));
        assert!(plain.iter().zip(&relu).all(|(p, r)| *r == p.max(0.0)));
        assert_eq!(applies(32, 32, 3, 3, 1, 1, 1), enabled());
        assert!(!applies(32, 32, 3, 3, 2, 1, 1) && !applies(32, 32, 5, 5, 1, 2, 1) && !applies(32, 32, 3, 3, 1, 1, 2));
        assert!(!applies(3, 64, 3, 3, 1, 1, 1), "too few channels");
    }
}
