//! Receptive fields as columns, and back.

use super::Planes;
use rayon::prelude::*;

/// Lay out the receptive fields of one image `[c, h, w]` as the columns of
/// `cols [c * kh * kw, oh * ow]` (rows `ld` apart, so several images can sit
/// side by side): row `(ci, i, j)`, column `(oy, ox)` holds pixel
/// `(ci, oy * stride + i - padding, ox * stride + j - padding)`, or 0 outside
/// the image. Only output rows `oys` are laid out (from column 0), so a
/// thread can build just the columns it multiplies.
pub fn im2col(x: &[f32], g: &Planes, cols: &mut [f32], ld: usize, oys: std::ops::Range<usize>) {
    let Planes { h, w, win, oh, ow, .. } = *g;
    let (s, p) = (win.stride as isize, win.padding as isize);
    let count = g.c * win.kh * win.kw;
    let width = oys.len() * ow;
    assert!(oys.end <= oh && ld >= width && cols.len() >= (count - 1) * ld + width, "im2col: column matrix too small");
    // One row per (channel, i, j); large images fill rows on every thread
    // (a batch of one has no other parallelism to use).
    let fill = |(row, out): (usize, &mut [f32])| {
        let out = &mut out[..width];
        let (ci, i, j) = (row / (win.kh * win.kw), row / win.kw % win.kh, row % win.kw);
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        // Columns whose pixel lies inside the row: ox in lo..hi.
        let j = j as isize;
        let lo = ((p - j).max(0) + s - 1) / s;
        let lo = lo.min(ow as isize);
        let hi = ((w as isize - 1 + p - j).div_euclid(s) + 1).clamp(lo, ow as isize);
        let (lo, hi) = (lo as usize, hi as usize);
        for oy in oys.clone() {
            let y = oy as isize * s + i as isize - p;
            let at = (oy - oys.start) * ow;
            let dst = &mut out[at..at + ow];
            if y < 0 || y >= h as isize {
                dst.fill(0.0);
                continue;
            }
            let src = &plane[y as usize * w..(y as usize + 1) * w];
            dst[..lo].fill(0.0);
            dst[hi..].fill(0.0);
            if hi == lo {
                continue;
            }
            let first = (lo as isize * s + j - p) as usize;
            if s == 1 {
                dst[lo..hi].copy_from_slice(&src[first..first + (hi - lo)]);
            } else {
                // Bounds settled once, so the strided loop compiles without checks.
                let (s, n) = (s as usize, hi - lo);
                let src = &src[first..first + (n - 1) * s + 1];
                let dst = &mut dst[lo..hi];
                for t in 0..n {
                    dst[t] = src[t * s];
                }
            }
        }
    };
    let rows = &mut cols[..(count - 1) * ld + width];
    let parallel = count * width >= PARALLEL_MIN && crate::parallel::threads() > 1;
    if win.stride > 1 {
        // Strided: the kw rows (ci, i, 0..kw) read the same input rows, so
        // each input row is split once into its `stride` phases (pixels
        // q, q + s, q + 2s, ...), and every row then copies a contiguous run
        // of one phase instead of gathering pixels one by one.
        let su = win.stride;
        let plen = w.div_ceil(su);
        let group = |(gi, out): (usize, &mut [f32])| {
            let (ci, i) = (gi / win.kh, gi % win.kh);
            let plane = &x[ci * h * w..(ci + 1) * h * w];
            let mut phases = vec![0.0f32; su * plen];
            for oy in oys.clone() {
                let y = oy as isize * s + i as isize - p;
                let at = (oy - oys.start) * ow;
                if y < 0 || y >= h as isize {
                    for j in 0..win.kw {
                        out[j * ld + at..j * ld + at + ow].fill(0.0);
                    }
                    continue;
                }
                let src = &plane[y as usize * w..(y as usize + 1) * w];
                for q in 0..su {
                    for (t, v) in
                        phases[q * plen..(q + 1) * plen].iter_mut().enumerate().take(w.saturating_sub(q).div_ceil(su))
                    {
                        *v = src[t * su + q];
                    }
                }
                for j in 0..win.kw {
                    let d = j as isize - p;
                    let lo = (((p - j as isize).max(0) + s - 1) / s).min(ow as isize);
                    let hi = ((w as isize - 1 - d).div_euclid(s) + 1).clamp(lo, ow as isize);
                    let (lo, hi) = (lo as usize, hi as usize);
                    let dst = &mut out[j * ld + at..j * ld + at + ow];
                    dst[..lo].fill(0.0);
                    dst[hi..].fill(0.0);
                    if hi > lo {
                        let q = d.rem_euclid(s) as usize;
                        let t0 = (lo as isize + d.div_euclid(s)) as usize;
                        dst[lo..hi].copy_from_slice(&phases[q * plen + t0..q * plen + t0 + (hi - lo)]);
                    }
                }
            }
        };
        if parallel {
            rows.par_chunks_mut(win.kw * ld).enumerate().for_each(group);
        } else {
            rows.chunks_mut(win.kw * ld).enumerate().for_each(group);
        }
        return;
    }
    if parallel {
        rows.par_chunks_mut(ld).enumerate().for_each(fill);
    } else {
        rows.chunks_mut(ld).enumerate().for_each(fill);
    }
}

/// Column matrices at least this large (floats) are filled in parallel.
const PARALLEL_MIN: usize = 1 << 18;

/// The adjoint of [`im2col`]: add each column entry back onto its pixel of
/// `dx [c, h, w]` (overlapping windows add up); rows of `cols` are `ld` apart.
pub fn col2im(cols: &[f32], g: &Planes, ld: usize, dx: &mut [f32]) {
    let Planes { c, h, w, win, oh, ow } = *g;
    let (s, p) = (win.stride as isize, win.padding as isize);
    let mut row = 0;
    for ci in 0..c {
        let plane = &mut dx[ci * h * w..(ci + 1) * h * w];
        for i in 0..win.kh {
            for j in 0..win.kw {
                let src = &cols[row * ld..row * ld + oh * ow];
                for oy in 0..oh {
                    let y = oy as isize * s + i as isize - p;
                    if y < 0 || y >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[y as usize * w..(y as usize + 1) * w];
                    // The outputs whose pixel `ox * s + j - p` lies in the row.
                    let first = ((p - j as isize).max(0) as usize).div_ceil(s as usize).min(ow);
                    let end = ((w as isize + p - j as isize).max(0) as usize).div_ceil(s as usize).clamp(first, ow);
                    if end == first {
                        continue;
                    }
                    let src = &src[oy * ow + first..oy * ow + end];
                    let x0 = (first as isize * s + j as isize - p) as usize;
                    if s == 1 {
                        dst[x0..x0 + src.len()].iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                    } else {
                        for (t, &v) in src.iter().enumerate() {
                            dst[x0 + t * s as usize] += v;
                        }
                    }
                }
                row += 1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), y> == <x, col2im(y)> for random x, y.
        let mut r = crate::tensor::Rng::new(3);
        for (c, h, w, k, s, p) in [
            (2, 5, 7, 3, 2, 1),
            (1, 4, 4, 2, 1, 0),
            (3, 6, 5, 4, 3, 2),
            (1, 3, 3, 5, 1, 2),
            (3, 10, 10, 5, 1, 4),
            (2, 6, 7, 3, 3, 1),
        ] {
            let win = super::super::Window::square(k, s, p);
            let (oh, ow) = win.output("t", h, w).unwrap();
            let g = Planes { c, h, w, win, oh, ow };
            let x: Vec<f32> = (0..c * h * w).map(|_| r.normal()).collect();
            let y: Vec<f32> = (0..c * k * k * oh * ow).map(|_| r.normal()).collect();
            let mut cols = vec![0.0; y.len()];
            im2col(&x, &g, &mut cols, oh * ow, 0..oh);
            let mut back = vec![0.0; x.len()];
            col2im(&y, &g, oh * ow, &mut back);
            let lhs: f64 = cols.iter().zip(&y).map(|(a, b)| (a * b) as f64).sum();
            let rhs: f64 = x.iter().zip(&back).map(|(a, b)| (a * b) as f64).sum();
            assert!((lhs - rhs).abs() < 1e-3 * (1.0 + lhs.abs()), "{lhs} vs {rhs}");
            // Side by side with another image's columns (row stride 2 * oh * ow),
            // both ways give the same numbers in their half.
            let pix = oh * ow;
            let mut wide = vec![f32::NAN; 2 * y.len()];
            im2col(&x, &g, &mut wide[pix..], 2 * pix, 0..oh);
            // Output rows 1.. alone give the same columns as part of the whole.
            if oh > 1 {
                let mut part = vec![f32::NAN; c * k * k * (oh - 1) * ow];
                im2col(&x, &g, &mut part, (oh - 1) * ow, 1..oh);
                let rows = c * k * k;
                let same = (0..rows)
                    .all(|r| part[r * (oh - 1) * ow..(r + 1) * (oh - 1) * ow] == cols[r * pix + ow..(r + 1) * pix]);
                assert!(same, "im2col of output rows 1..{oh}");
            }
            let rows = c * k * k;
            assert!((0..rows).all(|r| wide[(2 * r + 1) * pix..(2 * r + 2) * pix] == cols[r * pix..(r + 1) * pix]));
            let mut spread = vec![0.0; 2 * y.len()];
            (0..rows)
                .for_each(|r| spread[(2 * r + 1) * pix..(2 * r + 2) * pix].copy_from_slice(&y[r * pix..(r + 1) * pix]));
            let mut back2 = vec![0.0; x.len()];
            col2im(&spread[pix..], &g, 2 * pix, &mut back2);
            assert_eq!(back, back2);
        }
    }
}
