//! Max pooling, with the position of each maximum kept for the backward pass.
//!
//! Unpadded windows (AlexNet's) take a fast path: each output row is the
//! maximum down `kh` input rows (contiguous, so it vectorises), then across
//! `kw` neighbours of that. The positions, when a backward pass needs them,
//! are found afterwards by looking for the maximum in its window.

use super::Planes;

/// The larger of `a` and `b`, NaN if either is (as PyTorch's max-pool).
#[inline(always)]
fn max_nan(a: f32, b: f32) -> f32 {
    if b > a || b.is_nan() {
        b
    } else {
        a
    }
}

/// Max-pool one plane `[h, w]` of `g` into `out [oh, ow]`; `arg`, if given,
/// receives the index into the plane of each maximum (the first in row-major
/// window order, on ties; the first NaN if any). Padding is never chosen (it
/// counts as -infinity).
pub fn max_pool2d(x: &[f32], g: &Planes, out: &mut [f32], arg: Option<&mut [u32]>) {
    let w = g.win;
    if (w.kh, w.kw, w.stride, w.padding) == (2, 2, 2, 0) {
        two_by_two(x, g, out, arg);
    } else if w.padding == 0 {
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
                // `>` keeps the first maximum; the first NaN sticks.
                if !best.is_nan() && (v > best || v.is_nan()) {
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

fn unpadded(x: &[f32], g: &Planes, out: &mut [f32], arg: Option<&mut [u32]>) {
    let Planes { w, win, oh, ow, .. } = *g;
    let s = win.stride;
    // Only the columns some window reaches.
    let span = (ow - 1) * s + win.kw;
    let mut down = vec![0.0f32; span];
    for oy in 0..oh {
        let top = oy * s * w;
        down.copy_from_slice(&x[top..top + span]);
        for i in 1..win.kh {
            let row = &x[top + i * w..top + i * w + span];
            down.iter_mut().zip(row).for_each(|(d, &v)| *d = max_nan(*d, v));
        }
        let o = &mut out[oy * ow..(oy + 1) * ow];
        for (ox, o) in o.iter_mut().enumerate() {
            *o = down[ox * s..ox * s + win.kw].iter().fold(f32::NEG_INFINITY, |m, &v| max_nan(m, v));
        }
    }
    if let Some(arg) = arg {
        for oy in 0..oh {
            for ox in 0..ow {
                let best = out[oy * ow + ox];
                let at = (0..win.kh)
                    .flat_map(|i| (0..win.kw).map(move |j| (oy * s + i) * w + ox * s + j))
                    .find(|&idx| x[idx] == best || (best.is_nan() && x[idx].is_nan()))
                    .expect("the maximum lies in its window");
                arg[oy * ow + ox] = at as u32;
            }
        }
    }
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
        for (h, w, k, s) in
            [(13, 13, 3, 2), (55, 55, 3, 2), (7, 9, 2, 2), (28, 28, 2, 2), (10, 11, 2, 2), (6, 5, 3, 1), (4, 4, 4, 3)]
        {
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
