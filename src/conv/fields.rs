//! Receptive fields as offsets: im2col's column matrix without writing it.
//!
//! In a zero-padded input, the pixel that row `(ci, ky, kx)` and column
//! `(image, oy, ox)` of the column matrix hold sits at
//! `[ci][ky][kx] offset + [image][oy][ox] offset`: one offset per row plus
//! one per column. The matrix product reads the columns through these two
//! tables while it packs them (`gemm::sgemm_packed_gather`), so the forward
//! pass copies each input once (padding it) instead of `kh * kw` times.

use super::Planes;

/// Row and column offsets of the column matrix of `count` images.
pub struct Fields {
    /// One per row `(ci, ky, kx)`, `ci < planes.c`.
    pub rows: Vec<u32>,
    /// One per column `(image, oy, ox)`.
    pub cols: Vec<u32>,
}

impl Fields {
    /// The fields of window `g` over `count` padded images of `channels`
    /// planes each (the group's `g.c` planes start at offset 0, so a group
    /// other than the first reads from its own first plane on). None when
    /// the images are too large for 32-bit offsets.
    pub fn new(g: &Planes, channels: usize, count: usize) -> Option<Fields> {
        let (hp, wp) = (g.h + 2 * g.win.padding, g.w + 2 * g.win.padding);
        let image = channels * hp * wp;
        u32::try_from(count * image).ok()?;
        let (kh, kw, s) = (g.win.kh, g.win.kw, g.win.stride);
        let rows = (0..g.c * kh * kw).map(|r| ((r / (kh * kw)) * hp * wp + (r / kw % kh) * wp + r % kw) as u32);
        let cols = (0..count * g.oh * g.ow)
            .map(|j| ((j / (g.oh * g.ow)) * image + (j / g.ow % g.oh) * s * wp + (j % g.ow) * s) as u32);
        Some(Fields { rows: rows.collect(), cols: cols.collect() })
    }
}

/// Copy `planes` planes of `h x w` from `x` into `out` with a border of
/// `pad` zeros: `planes` planes of `(h + 2 pad) x (w + 2 pad)`.
pub fn pad_planes(x: &[f32], planes: usize, h: usize, w: usize, pad: usize, out: &mut Vec<f32>) {
    let (hp, wp) = (h + 2 * pad, w + 2 * pad);
    out.clear();
    out.resize(planes * hp * wp, 0.0);
    for (src, dst) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(hp * wp)).take(planes) {
        for (row, d) in src.chunks_exact(w).zip(dst[pad * wp..].chunks_exact_mut(wp)) {
            d[pad..pad + w].copy_from_slice(row);
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
        for (c, h, w, k, s, p, count) in [(2, 7, 5, 3, 2, 1, 3), (3, 9, 9, 4, 3, 2, 1), (1, 4, 6, 1, 1, 0, 2)] {
            let win = Window::square(k, s, p);
            let (oh, ow) = win.output("test", h, w).unwrap();
            let g = Planes { c, h, w, win, oh, ow };
            let x: Vec<f32> = (0..count * c * h * w).map(|_| r.normal()).collect();
            let mut padded = Vec::new();
            pad_planes(&x, count * c, h, w, p, &mut padded);
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
