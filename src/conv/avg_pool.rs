//! Average pooling with PyTorch's `AvgPool2d` defaults: padded positions are
//! zeros that count in the `kh * kw` divisor (`count_include_pad`), and only
//! whole windows give an output (`ceil_mode` off).
//!
//! Both passes are separable. The forward pass sums a window's rows into one
//! row (contiguous adds, so they vectorise), then sums across that row; the
//! backward pass spreads each output's share across one row, then adds that
//! row onto each of the window's rows.

use super::{Planes, Window};
use std::ops::Range;

/// The rows (or columns) of an input of `len` that window `o` of size `k`
/// covers. Padding only adds zeros, so it is clipped off.
fn covered(o: usize, k: usize, win: &Window, len: usize) -> Range<usize> {
    // `start` and `start + k` are in padded coordinates.
    let start = o * win.stride;
    let end = (start + k).saturating_sub(win.padding).min(len);
    start.saturating_sub(win.padding).min(end)..end
}

/// Average-pool one plane `x [h, w]` of `g` into `out [oh, ow]`.
pub fn avg_pool2d(x: &[f32], g: &Planes, out: &mut [f32]) {
    let Planes { h, w, win, ow, .. } = *g;
    let count = (win.kh * win.kw) as f32;
    // A row from the thread's scratch cache (see `scratch::with_slice`).
    crate::scratch::with_slice(w, |down| {
        for (oy, o) in out.chunks_exact_mut(ow).take(g.oh).enumerate() {
            down.fill(0.0);
            for y in covered(oy, win.kh, &win, h) {
                down.iter_mut().zip(&x[y * w..(y + 1) * w]).for_each(|(d, &v)| *d += v);
            }
            for (ox, o) in o.iter_mut().enumerate() {
                *o = down[covered(ox, win.kw, &win, w)].iter().sum::<f32>() / count;
            }
        }
    })
}

/// Add the input gradient of [`avg_pool2d`] for the output gradient
/// `dy [oh, ow]` into `dx [h, w]`: each input gets `1 / (kh * kw)` of the
/// gradient of every window that covers it.
pub fn avg_pool2d_backward(dy: &[f32], g: &Planes, dx: &mut [f32]) {
    let Planes { h, w, win, ow, .. } = *g;
    let count = (win.kh * win.kw) as f32;
    // Scratch as in `avg_pool2d`.
    crate::scratch::with_slice(w, |across| {
        for (oy, gy) in dy.chunks_exact(ow).take(g.oh).enumerate() {
            across.fill(0.0);
            for (ox, &gv) in gy.iter().enumerate() {
                let share = gv / count;
                across[covered(ox, win.kw, &win, w)].iter_mut().for_each(|a| *a += share);
            }
            for y in covered(oy, win.kh, &win, h) {
                dx[y * w..(y + 1) * w].iter_mut().zip(across.iter()).for_each(|(d, &a)| *d += a);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn planes(h: usize, w: usize, k: usize, stride: usize, padding: usize) -> Planes {
        let win = Window::square(k, stride, padding);
        let (oh, ow) = win.output("t", h, w).unwrap();
        Planes { c: 1, h, w, win, oh, ow }
    }

    fn pool(x: &[f32], g: &Planes) -> Vec<f32> {
        let mut out = vec![f32::NAN; g.oh * g.ow];
        avg_pool2d(x, g, &mut out);
        out
    }

    fn close(a: &[f32], b: &[f32]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-6 * (1.0 + q.abs()))
    }

    /// 1..9 in a 3 x 3 plane.
    fn nine() -> Vec<f32> {
        (1..=9).map(|v| v as f32).collect()
    }

    #[test]
    fn overlapping_windows_without_padding() {
        // k 2, stride 1: four windows that share the centre.
        assert_eq!(pool(&nine(), &planes(3, 3, 2, 1, 0)), [3.0, 4.0, 6.0, 7.0]);
    }

    #[test]
    fn stride_past_the_kernel_skips_inputs() {
        // x = 5 * row + col on 4 x 5; k 2, stride 3: columns 2 and row 2..4 unused.
        let x: Vec<f32> = (0..20).map(|v| v as f32).collect();
        let g = planes(4, 5, 2, 3, 0);
        assert_eq!((g.oh, g.ow), (1, 2));
        assert_eq!(pool(&x, &g), [(0.0 + 1.0 + 5.0 + 6.0) / 4.0, (3.0 + 4.0 + 8.0 + 9.0) / 4.0]);
    }

    #[test]
    fn padding_counts_in_the_divisor() {
        // k 3, stride 2, padding 1: every window holds four inputs and five zeros.
        let g = planes(3, 3, 3, 2, 1);
        let want = [12.0 / 9.0, 16.0 / 9.0, 24.0 / 9.0, 28.0 / 9.0];
        assert!(close(&pool(&nine(), &g), &want), "{:?}", pool(&nine(), &g));
        // k 2, stride 2, padding 1 on 2 x 2: each corner alone in its window.
        assert_eq!(pool(&[4.0, 8.0, 12.0, 16.0], &planes(2, 2, 2, 2, 1)), [1.0, 2.0, 3.0, 4.0]);
    }

    #[test]
    fn backward_spreads_each_share_over_its_window() {
        // The windows of `padding_counts_in_the_divisor`: dx = (windows covering it) . dy / 9.
        let g = planes(3, 3, 3, 2, 1);
        let mut dx = vec![1.0; 9];
        avg_pool2d_backward(&[1.0, 2.0, 3.0, 4.0], &g, &mut dx);
        let want: Vec<f32> = [1.0, 3.0, 2.0, 4.0, 10.0, 6.0, 3.0, 7.0, 4.0].iter().map(|v| 1.0 + v / 9.0).collect();
        assert!(close(&dx, &want), "{dx:?}: the gradient is added to what dx held");
        // Stride past the kernel: skipped inputs get nothing.
        let g = planes(4, 5, 2, 3, 0);
        let mut dx = vec![0.0; 20];
        avg_pool2d_backward(&[4.0, 8.0], &g, &mut dx);
        let mut want = vec![0.0; 20];
        for at in [0, 1, 5, 6] {
            want[at] = 1.0;
        }
        for at in [3, 4, 8, 9] {
            want[at] = 2.0;
        }
        assert_eq!(dx, want);
    }

    /// The definition, one window at a time, with the padding as zeros.
    fn naive(x: &[f32], g: &Planes) -> Vec<f32> {
        let (k, s, p) = (g.win.kh as isize, g.win.stride as isize, g.win.padding as isize);
        let at = |y: isize, xx: isize| {
            let inside = (0..g.h as isize).contains(&y) && (0..g.w as isize).contains(&xx);
            if inside {
                x[y as usize * g.w + xx as usize]
            } else {
                0.0
            }
        };
        let mut out = Vec::new();
        for oy in 0..g.oh as isize {
            for ox in 0..g.ow as isize {
                let sum: f32 = (0..k)
                    .flat_map(|i| (0..k).map(move |j| (i, j)))
                    .map(|(i, j)| at(oy * s - p + i, ox * s - p + j))
                    .sum();
                out.push(sum / (k * k) as f32);
            }
        }
        out
    }

    /// Random geometry: the forward pass is the definition, and the backward
    /// pass is its adjoint (`<pool(x), dy> == <x, backward(dy)>`).
    #[test]
    fn matches_the_definition_and_its_adjoint() {
        let mut r = crate::tensor::Rng::new(9);
        for _ in 0..200 {
            let (k, stride) = (1 + r.below(4), 1 + r.below(4));
            let padding = r.below(k / 2 + 1);
            let (h, w) =
                (k.saturating_sub(2 * padding).max(1) + r.below(9), k.saturating_sub(2 * padding).max(1) + r.below(9));
            let g = planes(h, w, k, stride, padding);
            let x: Vec<f32> = (0..h * w).map(|_| r.uniform() * 2.0 - 1.0).collect();
            let y = pool(&x, &g);
            assert!(close(&y, &naive(&x, &g)), "{h}x{w} k{k} s{stride} p{padding}");
            let dy: Vec<f32> = (0..y.len()).map(|_| r.uniform() * 2.0 - 1.0).collect();
            let mut dx = vec![0.0; h * w];
            avg_pool2d_backward(&dy, &g, &mut dx);
            let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(&p, &q)| p as f64 * q as f64).sum::<f64>();
            let (lhs, rhs) = (dot(&y, &dy), dot(&x, &dx));
            assert!((lhs - rhs).abs() <= 1e-5 * (1.0 + lhs.abs()), "{h}x{w} k{k} s{stride} p{padding}: {lhs} vs {rhs}");
        }
    }
}
