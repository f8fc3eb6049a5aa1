//! Receptive fields as offsets: im2col's column matrix without writing it.
//!
//! In a zero-padded input, the pixel that row `(ci, ky, kx)` and column
//! `(image, oy, ox)` of the column matrix hold sits at
//! `[ci][ky][kx] offset + [image][oy][ox] offset`: one offset per row plus
//! one per column. The matrix product reads the columns through these two
//! tables while it packs them (`gemm::sgemm_packed_gather`), so the forward
//! pass copies each input once (padding it) instead of `kh * kw` times.
//!
//! With stride `s`, each padded row is also split into its `s` phases
//! (pixels `q, q + s, q + 2s, ...` side by side, as im2col's strided path
//! does): neighbouring outputs `ox, ox + 1` then read neighbouring floats of
//! one phase, so a panel of columns is a few contiguous runs, not a gather.

use super::Planes;

/// Row and column offsets of the column matrix of `count` images.
pub struct Fields {
    /// One per row `(ci, ky, kx)`, `ci < planes.c`.
    pub rows: Vec<u32>,
    /// One per column `(image, oy, ox)`.
    pub cols: Vec<u32>,
}

impl Fields {
    /// The fields of window `g` over `count` images of `channels` planes
    /// each, laid out by [`pad_planes`] (the group's `g.c` planes start at
    /// offset 0, so a group other than the first reads from its own first
    /// plane on). None when the images are too large for 31-bit offsets.
    pub fn new(g: &Planes, channels: usize, count: usize) -> Option<Fields> {
        let (hp, wq, s) = padded_shape(g);
        // Checked: wrapped sizes would pass the 31-bit test and give wrong offsets.
        let image = channels.checked_mul(s)?.checked_mul(hp)?.checked_mul(wq)?;
        i32::try_from(count.checked_mul(image)?).ok()?;
        let (kh, kw) = (g.win.kh, g.win.kw);
        let rows = (0..g.c * kh * kw).map(|r| {
            let (ci, ky, kx) = (r / (kh * kw), r / kw % kh, r % kw);
            (((ci * s + kx % s) * hp + ky) * wq + kx / s) as u32
        });
        let cols = (0..count * g.oh * g.ow)
            .map(|j| ((j / (g.oh * g.ow)) * image + (j / g.ow % g.oh) * s * wq + j % g.ow) as u32);
        Some(Fields { rows: rows.collect(), cols: cols.collect() })
    }
}

/// The weight gradient's offsets: its product is `dY · colsᵀ`, whose B is
/// the column matrix transposed, `B[(image, oy, ox)][(ci, ky, kx)]`. Over
/// images of `g.c` planes padded plainly (by [`pad_planes`] with
/// [`unphased`]`(g)`), one offset per pixel and one per tap; each window
/// row is then `kw` consecutive floats, so the product packs a panel of taps
/// as a few runs, where the phase-split layout would make each a gather.
/// None when the images are too large for 31-bit offsets.
pub fn pixels_and_taps(g: &Planes, count: usize) -> Option<(Vec<u32>, Vec<u32>)> {
    let ((hp, wp, _), s) = (padded_shape(&unphased(g)), g.win.stride);
    let (kh, kw, plane) = (g.win.kh, g.win.kw, hp.checked_mul(wp)?);
    let image = g.c.checked_mul(plane)?;
    i32::try_from(count.checked_mul(image)?).ok()?;
    let pixels = (0..count * g.oh * g.ow)
        .map(|p| ((p / (g.oh * g.ow)) * image + (p / g.ow % g.oh) * s * wp + p % g.ow * s) as u32);
    let taps = (0..g.c * kh * kw).map(|t| ((t / (kh * kw)) * plane + (t / kw % kh) * wp + t % kw) as u32);
    Some((pixels.collect(), taps.collect()))
}

/// `g` as [`pad_planes`] should lay it out for [`pixels_and_taps`]: padded,
/// not split into stride phases.
pub fn unphased(g: &Planes) -> Planes {
    Planes { win: super::Window { stride: 1, ..g.win }, ..*g }
}

/// Padded height, width of one phase, and phases per plane (the stride).
fn padded_shape(g: &Planes) -> (usize, usize, usize) {
    let (hp, wp, s) = (g.h + 2 * g.win.padding, g.w + 2 * g.win.padding, g.win.stride);
    (hp, wp.div_ceil(s), s)
}

/// Floats per plane of the layout [`pad_planes`] writes.
pub fn padded_plane(g: &Planes) -> usize {
    let (hp, wq, s) = padded_shape(g);
    s * hp * wq
}

/// Whether [`pad_planes`] would only copy: no padding, stride 1.
pub fn needs_padding(g: &Planes) -> bool {
    g.win.padding > 0 || g.win.stride > 1
}

/// Copy `planes` planes of `g.h x g.w` from `x` into `out`, each with a
/// border of `g.win.padding` zeros and its rows split into `stride` phases:
/// plane `i`, phase `q`, padded row `y` holds padded pixels
/// `q, q + s, q + 2s, ...` of row `y` at `((i * s + q) * hp + y) * wq`.
pub fn pad_planes(x: &[f32], planes: usize, g: &Planes, out: &mut Vec<f32>) {
    let (hp, wq, s) = padded_shape(g);
    let (h, w, pad) = (g.h, g.w, g.win.padding);
    out.clear();
    out.resize(planes * s * hp * wq, 0.0);
    for (src, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(s * hp * wq)).take(planes) {
        for (y, row) in src.chunks_exact(w).enumerate() {
            for q in 0..s {
                // Phase q holds padded columns t * s + q, image columns t * s + q - pad.
                let first = pad.saturating_sub(q).div_ceil(s);
                let last = (w + pad).saturating_sub(q).div_ceil(s).min(wq);
                if last <= first {
                    continue; // (a phase of padding only)
                }
                let d = &mut dst[(q * hp + y + pad) * wq + first..(q * hp + y + pad) * wq + last];
                if s == 1 {
                    d.copy_from_slice(&row[first + q - pad..last + q - pad]);
                } else {
                    let from = first * s + q - pad;
                    d.iter_mut().zip(row[from..].iter().step_by(s)).for_each(|(v, &p)| *v = p);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conv::{im2col, Window};

    #[test]
    fn offsets_into_the_padded_input_give_im2cols_columns() {
        let mut r = crate::tensor::Rng::new(6);
        // Strides that do not divide evenly, padding, a kernel larger than the stride.
        for (c, h, w, k, s, p, count) in [
            (2, 7, 5, 3, 2, 1, 3),
            (3, 9, 9, 4, 3, 2, 1),
            (1, 4, 6, 1, 1, 0, 2),
            (3, 23, 23, 11, 4, 2, 2),
            (2, 8, 9, 2, 3, 0, 1),
        ] {
            let win = Window::square(k, s, p);
            let (oh, ow) = win.output("test", h, w).unwrap();
            let g = Planes { c, h, w, win, oh, ow };
            let x: Vec<f32> = (0..count * c * h * w).map(|_| r.normal()).collect();
            let mut padded = Vec::new();
            pad_planes(&x, count * c, &g, &mut padded);
            let f = Fields::new(&g, c, count).unwrap();
            let (rows, pix) = (c * k * k, oh * ow);
            let mut want = vec![f32::NAN; rows * count * pix];
            for j in 0..count {
                im2col(&x[j * c * h * w..], &g, &mut want[j * pix..], count * pix, 0..oh);
            }
            for (i, &ro) in f.rows.iter().enumerate() {
                for (j, &co) in f.cols.iter().enumerate() {
                    assert_eq!(
                        padded[(ro + co) as usize],
                        want[i * count * pix + j],
                        "{c} {h} {w} {k} {s} {p}: ({i}, {j})"
                    );
                }
            }
        }
    }
}
