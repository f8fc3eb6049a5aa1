//! Max pooling, with the position of each maximum kept for the backward pass.
//!
//! Unpadded windows (AlexNet's) take a fast path: each window row's
//! maximum across `kw` neighbours, then the maximum down `kh` of those,
//! whole output rows at a time so that it runs in vectors. The positions
//! come with the maxima.

use super::Planes;
use wide::f32x8;

/// Max-pool one plane `[h, w]` of `g` into `out [oh, ow]`; `arg`, if given,
/// receives the index into the plane of each maximum (the first in row-major
/// window order, on ties; the first NaN if any). Padding is never chosen (it
/// counts as -infinity).
pub fn max_pool2d(x: &[f32], g: &Planes, out: &mut [f32], arg: Option<&mut [u32]>) {
    let w = g.win;
    if (w.kh, w.kw, w.stride, w.padding) == (2, 2, 2, 0) {
        two_by_two(x, g, out, arg);
    } else if w.padding == 0 && w.kh.max(w.kw) <= 1 << 24 {
        // (Window offsets travel as f32 lanes, exact below 2^24.)
        unpadded(x, g, out, arg);
    } else {
        padded(x, g, out, arg);
    }
}

/// 2 x 2 windows, stride 2 (LeNet's): the four values in window order,
/// maximum and position at once, with no scratch row.
fn two_by_two(x: &[f32], g: &Planes, out: &mut [f32], mut arg: Option<&mut [u32]>) {
    let Planes { w, oh, ow, .. } = *g;
    for oy in 0..oh {
        let top = &x[2 * oy * w..2 * oy * w + 2 * ow];
        let bottom = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        let o = &mut out[oy * ow..(oy + 1) * ow];
        for ox in 0..ow {
            let quad = [top[2 * ox], top[2 * ox + 1], bottom[2 * ox], bottom[2 * ox + 1]];
            let (mut best, mut at) = (quad[0], 0);
            for (q, &v) in quad.iter().enumerate().skip(1) {
                if takes(best, v) {
                    (best, at) = (v, q);
                }
            }
            o[ox] = best;
            if let Some(arg) = arg.as_deref_mut() {
                arg[oy * ow + ox] = ((2 * oy + at / 2) * w + 2 * ox + at % 2) as u32;
            }
        }
    }
}

/// Unpadded windows: each window row's maximum first (across `kw`
/// neighbours, in every input row a window reaches), then the maximum down
/// `kh` of those. The first maximum of the first row that holds one is the
/// first in row-major window order, so ties and NaNs resolve as in the scan.
/// Both passes run eight windows at a time in vectors, with selects: the
/// branches of a scalar scan mispredict half the time on real data.
fn unpadded(x: &[f32], g: &Planes, out: &mut [f32], mut arg: Option<&mut [u32]>) {
    let Planes { w, win, oh, ow, .. } = *g;
    if oh == 0 || ow == 0 {
        return;
    }
    let (s, kh, kw) = (win.stride, win.kh, win.kw);
    let rows = (oh - 1) * s + kh;
    // A row split by phase (column modulo s): neighbour j of window ox is
    // element ox + j / s of phase j % s, so each neighbour is a contiguous run.
    let (phases, len) = (s.min(kw), ow + (kw - 1) / s);
    // Per input row and window: the row's best value (`across`) and its
    // neighbour j (`col`). Scratch from the thread's cache, each element
    // written before it is read: allocating and zeroing it per plane cost as
    // much as pooling a 13 x 13 plane.
    crate::scratch::with_slice(phases * len + 2 * rows * ow, |scratch| {
        let (split, rest) = scratch.split_at_mut(phases * len);
        let (across, col) = rest.split_at_mut(rows * ow);
        for y in 0..rows {
            let row = &x[y * w..(y + 1) * w];
            for (r, phase) in split.chunks_exact_mut(len).enumerate() {
                // Past the row's end only where no window reads.
                phase.iter_mut().enumerate().for_each(|(i, p)| *p = row.get(i * s + r).copied().unwrap_or(0.0));
            }
            let (a, c) = (&mut across[y * ow..(y + 1) * ow], &mut col[y * ow..(y + 1) * ow]);
            for ox in (0..ow).step_by(8) {
                let mut best = lanes(&split[..len], ox);
                let mut at = f32x8::ZERO;
                for j in 1..kw {
                    let v = lanes(&split[(j % s) * len..(j % s + 1) * len], ox + j / s);
                    let take = takes8(best, v);
                    best = take.bitselect(v, best);
                    at = take.bitselect(f32x8::splat(j as f32), at);
                }
                put(best, &mut a[ox..]);
                put(at, &mut c[ox..]);
            }
        }
        for oy in 0..oh {
            let top = oy * s;
            for ox in (0..ow).step_by(8) {
                let at = |y: usize| (&across[y * ow..(y + 1) * ow], &col[y * ow..(y + 1) * ow]);
                let (a, c) = at(top);
                let (mut best, mut j, mut i) = (lanes(a, ox), lanes(c, ox), f32x8::ZERO);
                for di in 1..kh {
                    let (a, c) = at(top + di);
                    let v = lanes(a, ox);
                    let take = takes8(best, v);
                    best = take.bitselect(v, best);
                    j = take.bitselect(lanes(c, ox), j);
                    i = take.bitselect(f32x8::splat(di as f32), i);
                }
                put(best, &mut out[oy * ow + ox..(oy + 1) * ow]);
                if let Some(arg) = arg.as_deref_mut() {
                    let (i, j) = (i.to_array(), j.to_array());
                    for (l, a) in arg[oy * ow + ox..(oy + 1) * ow].iter_mut().take(8).enumerate() {
                        *a = ((top + i[l] as usize) * w + (ox + l) * s + j[l] as usize) as u32;
                    }
                }
            }
        }
    })
}

/// Eight values of `v` from `at` on, zeros past its end.
#[inline(always)]
fn lanes(v: &[f32], at: usize) -> f32x8 {
    if let Some(l) = v.get(at..at + 8) {
        return f32x8::from(<[f32; 8]>::try_from(l).expect("eight"));
    }
    let mut l = [0.0f32; 8];
    let n = v.len().saturating_sub(at).min(8);
    l[..n].copy_from_slice(&v[at..at + n]);
    f32x8::from(l)
}

/// The first `out.len().min(8)` lanes of `v` into `out`.
#[inline(always)]
fn put(v: f32x8, out: &mut [f32]) {
    if let Some(o) = out.get_mut(..8) {
        return o.copy_from_slice(&v.to_array());
    }
    let n = out.len();
    out[..n].copy_from_slice(&v.to_array()[..n]);
}

/// [`takes`] in every lane: all ones where `v` replaces `best`.
#[inline(always)]
fn takes8(best: f32x8, v: f32x8) -> f32x8 {
    best.simd_eq(best) & (v.simd_gt(best) | v.is_nan())
}

/// Whether `v` replaces `best` in a window scan: `>` keeps the first
/// maximum, and the first NaN sticks.
#[inline(always)]
fn takes(best: f32, v: f32) -> bool {
    // `&` and `|`, not `&&` and `||`: no branches, so loops of it vectorise.
    !best.is_nan() & ((v > best) | v.is_nan())
}

fn padded(x: &[f32], g: &Planes, out: &mut [f32], mut arg: Option<&mut [u32]>) {
    let Planes { h, w, win, oh, ow, .. } = *g;
    for oy in 0..oh {
        for ox in 0..ow {
            let (mut best, mut at) = (f32::NEG_INFINITY, u32::MAX);
            for i in 0..win.kh {
                let y = (oy * win.stride + i) as isize - win.padding as isize;
                if y < 0 || y >= h as isize {
                    continue;
                }
                for j in 0..win.kw {
                    let xx = (ox * win.stride + j) as isize - win.padding as isize;
                    if xx < 0 || xx >= w as isize {
                        continue;
                    }
                    let idx = y as usize * w + xx as usize;
                    // `>` keeps the first maximum; the first NaN sticks.
                    if !best.is_nan() && (x[idx] > best || at == u32::MAX || x[idx].is_nan()) {
                        best = x[idx];
                        at = idx as u32;
                    }
                }
            }
            out[oy * ow + ox] = best;
            if let Some(arg) = arg.as_deref_mut() {
                arg[oy * ow + ox] = at;
            }
        }
    }
}

/// Route each output gradient to the input that was the maximum.
pub fn max_pool2d_backward(dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    for (&g, &a) in dy.iter().zip(arg) {
        dx[a as usize] += g;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::Window;

    /// The naive definition: scan each window in order.
    fn naive(x: &[f32], g: &Planes) -> (Vec<f32>, Vec<u32>) {
        let mut out = vec![0.0; g.oh * g.ow];
        let mut arg = vec![0; g.oh * g.ow];
        padded(x, g, &mut out, Some(&mut arg));
        (out, arg)
    }

    #[test]
    fn the_fast_path_matches_the_window_scan_with_ties_and_nans() {
        let mut r = crate::tensor::Rng::new(5);
        for (h, w, k, s) in [
            (13, 13, 3, 2),
            (55, 55, 3, 2),
            (7, 9, 2, 2),
            (28, 28, 2, 2),
            (10, 11, 2, 2),
            (6, 5, 3, 1),
            (4, 4, 4, 3),
            (20, 43, 5, 3),
            (9, 40, 2, 4),
        ] {
            let win = Window::square(k, s, 0);
            let (oh, ow) = win.output("t", h, w).unwrap();
            let g = Planes { c: 1, h, w, win, oh, ow };
            // Few distinct values make ties common; a few NaNs.
            let mut x: Vec<f32> = (0..h * w).map(|_| (r.below(4) as f32) - 1.0).collect();
            for _ in 0..2 {
                let at = r.below(h * w);
                x[at] = f32::NAN;
            }
            let (want, want_arg) = naive(&x, &g);
            let mut out = vec![0.0; oh * ow];
            let mut arg = vec![0; oh * ow];
            max_pool2d(&x, &g, &mut out, Some(&mut arg));
            let same = |a: &f32, b: &f32| a == b || (a.is_nan() && b.is_nan());
            assert!(out.iter().zip(&want).all(|(a, b)| same(a, b)), "{h}x{w} k{k} s{s}: {out:?} vs {want:?}");
            assert_eq!(arg, want_arg, "{h}x{w} k{k} s{s}");
            let mut plain = vec![0.0; oh * ow];
            max_pool2d(&x, &g, &mut plain, None);
            assert!(plain.iter().zip(&want).all(|(a, b)| same(a, b)));
        }
    }
}
