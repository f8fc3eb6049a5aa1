//! The backward passes of convolution and pooling, on slices: what the
//! tape's backward rules for [`conv2d`](crate::autodiff::Tape::conv2d),
//! [`max_pool2d`](crate::autodiff::Tape::max_pool2d) and
//! [`avg_pool2d`](crate::autodiff::Tape::avg_pool2d) call, so that their arms
//! in `autodiff/backward.rs` stay a few lines like every other rule.

use super::conv2d::{input_gradient_by_conv, ConvGeom};
use super::fields::{pixels_and_taps, unphased};
use super::{avg_pool2d_backward, col2im, max_pool2d_backward, pad_planes, winograd, Planes};
use crate::error::Result;
use crate::gemm::{sgemm, sgemm_packed, sgemm_packed_gather, PackedA, Transpose};
use crate::scratch::with_vec;
use rayon::prelude::*;

/// Which of a convolution's gradients are wanted (those of tracked inputs).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wanted {
    pub bias: bool,
    pub filters: bool,
    pub input: bool,
}

/// A convolution's gradients, flat, in the shapes of the bias `[oc]`, the
/// filters and the input; None where not [`Wanted`].
pub(crate) struct ConvGrads {
    pub bias: Option<Vec<f32>>,
    pub filters: Option<Vec<f32>>,
    pub input: Option<Vec<f32>>,
}

/// Images per partial weight gradient: fixed, so that the sum over the batch
/// has the same order on any number of threads.
const CONV_GROUP_IMAGES: usize = 4;

/// The output gradient of group `gi` of the images `i0..i0 + count` as one
/// `[ocg, count * oh * ow]` matrix: borrowed for one image, else gathered
/// into `buf` (the layout of the forward pass's product).
fn dy_matrix<'a>(
    gs: &'a [f32],
    geom: &ConvGeom,
    (i0, count): (usize, usize),
    gi: usize,
    buf: &'a mut Vec<f32>,
) -> &'a [f32] {
    let (oc, pix) = (geom.oc, geom.oh * geom.ow);
    let ocg = oc / geom.groups;
    if count == 1 {
        return &gs[(i0 * oc + gi * ocg) * pix..(i0 * oc + (gi + 1) * ocg) * pix];
    }
    let ld = count * pix;
    buf.resize(ocg * ld, 0.0);
    for j in 0..count {
        for o in 0..ocg {
            let src = ((i0 + j) * oc + gi * ocg + o) * pix;
            buf[o * ld + j * pix..o * ld + (j + 1) * pix].copy_from_slice(&gs[src..src + pix]);
        }
    }
    &buf[..ocg * ld]
}

/// The gradients of the convolution `geom` of images `xs` by filters `ws`,
/// given the output gradient `gs`: dW = sum over images of dY cols^T,
/// dX = col2im(W^T dY), db = the sums of dY over batch and pixels.
pub(crate) fn conv2d_backward(
    geom: &ConvGeom,
    xs: &[f32],
    ws: &[f32],
    gs: &[f32],
    wanted: Wanted,
) -> Result<ConvGrads> {
    let ConvGeom { n, c, h, w: wd, oc, oh, ow, groups, win } = *geom;
    let (ocg, pix, rows) = (oc / groups, oh * ow, geom.col_rows());
    let image = c * h * wd;
    let mut out = ConvGrads { bias: None, filters: None, input: None };
    if wanted.bias {
        let mut db = vec![0.0f32; oc];
        for img in gs.chunks(oc * pix) {
            for (d, plane) in db.iter_mut().zip(img.chunks(pix)) {
                *d += plane.iter().sum::<f32>();
            }
        }
        out.bias = Some(db);
    }
    // Chunks of images as the forward pass made them: one product each.
    let per = geom.images_per_product();
    let chunks: Vec<(usize, usize)> = (0..n).step_by(per).map(|i| (i, per.min(n - i))).collect();
    if wanted.filters && geom.by_winograd() {
        // Fewer multiplications, like the forward pass (see `winograd::filter_gradient`).
        out.filters = Some(winograd::filter_gradient(xs, [n, c, h, wd], win.kh, win.padding, gs, oc)?);
    } else if wanted.filters {
        // Partial sums over fixed groups of chunks, added in order: the same
        // bits on any number of threads.
        let groups_of = CONV_GROUP_IMAGES.div_ceil(per).max(1);
        let serial = ConvGeom::fills_threads(chunks.len().div_ceil(groups_of));
        let partials: Vec<Vec<f32>> = chunks
            .par_chunks(groups_of)
            .map(|run| {
                crate::parallel::serial_if(serial, || {
                    with_vec(|buf| {
                        with_vec(|dybuf| -> Result<Vec<f32>> {
                            let mut dw = vec![0.0f32; ws.len()];
                            for &(i0, count) in run {
                                let ld = count * pix;
                                let x = &xs[i0 * image..(i0 + count) * image];
                                if groups == 1 && !win.is_pointwise() {
                                    let dy = dy_matrix(gs, geom, (i0, count), 0, dybuf);
                                    if gathered_filter_gradient(geom, x, count, dy, &mut dw, buf)? {
                                        continue;
                                    }
                                }
                                for gi in 0..groups {
                                    let cols = geom.columns(x, count, gi, buf);
                                    let dy = dy_matrix(gs, geom, (i0, count), gi, dybuf);
                                    let dwg = &mut dw[gi * ocg * rows..(gi + 1) * ocg * rows];
                                    sgemm(
                                        Transpose::No,
                                        Transpose::Yes,
                                        ocg,
                                        rows,
                                        ld,
                                        1.0,
                                        dy,
                                        ld,
                                        cols,
                                        ld,
                                        1.0,
                                        dwg,
                                        rows,
                                    )?;
                                }
                            }
                            Ok(dw)
                        })
                    })
                })
            })
            .collect::<Result<_>>()?;
        let mut dw = vec![0.0f32; ws.len()];
        for p in &partials {
            dw.iter_mut().zip(p).for_each(|(a, b)| *a += b);
        }
        out.filters = Some(dw);
    }
    if wanted.input {
        if let Some(dx) = input_gradient_by_conv(geom, ws, gs) {
            out.input = Some(dx?);
            return Ok(out);
        }
        // W^T of each group, packed once for every chunk.
        let filters_t: Vec<PackedA> = (0..groups)
            .map(|gi| PackedA::new(Transpose::Yes, rows, ocg, &ws[gi * ocg * rows..(gi + 1) * ocg * rows], rows))
            .collect::<std::result::Result<_, _>>()?;
        let mut dx = vec![0.0f32; n * image];
        let serial = ConvGeom::fills_threads(chunks.len());
        let cg = c / groups;
        dx.par_chunks_mut(per * image).zip(chunks.par_iter()).try_for_each(|(dxs, &(i0, count))| {
            crate::parallel::serial_if(serial, || {
                with_vec(|dcols| {
                    with_vec(|dybuf| -> Result<()> {
                        let ld = count * pix;
                        for (gi, wt) in filters_t.iter().enumerate() {
                            let dy = dy_matrix(gs, geom, (i0, count), gi, dybuf);
                            let plane = |j: usize| gi * cg * h * wd + j * image..(gi + 1) * cg * h * wd + j * image;
                            if count == 1 && win.is_pointwise() {
                                sgemm_packed(wt, Transpose::No, pix, 1.0, dy, pix, 0.0, &mut dxs[plane(0)], pix)?;
                                continue;
                            }
                            // Every element is written (beta 0): grow without clearing.
                            if dcols.len() < rows * ld {
                                dcols.resize(rows * ld, 0.0);
                            }
                            let d = &mut dcols[..rows * ld];
                            sgemm_packed(wt, Transpose::No, ld, 1.0, dy, ld, 0.0, d, ld)?;
                            for j in 0..count {
                                col2im(&dcols[j * pix..], &geom.planes(), ld, &mut dxs[plane(j)]);
                            }
                        }
                        Ok(())
                    })
                })
            })
        })?;
        out.input = Some(dx);
    }
    Ok(out)
}

/// `dw += dY · colsᵀ` for `count` images `x` of a one-group convolution,
/// with the column matrix never written: the product gathers its transpose
/// from the padded images as it packs it (see [`pixels_and_taps`]). For
/// conv1 (stride 4, 11 x 11, 3 channels) im2col would write 4.4 MB per image
/// for the pack to read back transposed. False, doing nothing, when the
/// images are too large for the offsets.
fn gathered_filter_gradient(
    geom: &ConvGeom,
    x: &[f32],
    count: usize,
    dy: &[f32],
    dw: &mut [f32],
    buf: &mut Vec<f32>,
) -> Result<bool> {
    let planes = geom.planes();
    let Some((pixels, taps)) = pixels_and_taps(&planes, count) else {
        return Ok(false);
    };
    pad_planes(x, count * geom.c, &unphased(&planes), buf);
    let dy = PackedA::new(Transpose::No, geom.oc, pixels.len(), dy, pixels.len())?;
    sgemm_packed_gather(&dy, 1.0, buf, &pixels, &taps, 1.0, dw, taps.len())?;
    Ok(true)
}

/// Max pooling's input gradient, `in_numel` values in planes of
/// `plane_in`: each output's gradient (`gy`, planes of `plane_out`) goes to
/// the input that was its maximum (`arg`, an index within its plane).
pub(crate) fn max_pool2d_input_gradient(
    gy: &[f32],
    arg: &[u32],
    in_numel: usize,
    (plane_in, plane_out): (usize, usize),
) -> Vec<f32> {
    let mut dx = vec![0.0f32; in_numel];
    dx.par_chunks_mut(plane_in)
        .zip(gy.par_chunks(plane_out))
        .zip(arg.par_chunks(plane_out))
        .for_each(|((d, gy), a)| max_pool2d_backward(gy, a, d));
    dx
}

/// Average pooling's input gradient, `in_numel` values: each output's
/// gradient is shared equally by its window's k * k positions; the padded
/// ones' shares are dropped.
pub(crate) fn avg_pool2d_input_gradient(gy: &[f32], planes: &Planes, in_numel: usize) -> Vec<f32> {
    let (plane_in, plane_out) = (planes.h * planes.w, planes.oh * planes.ow);
    let mut dx = vec![0.0f32; in_numel];
    // Planes may be empty (all padding): then so is dx, and there is nothing to add.
    dx.par_chunks_mut(plane_in.max(1)).zip(gy.par_chunks(plane_out)).for_each(|(d, gy)| {
        avg_pool2d_backward(gy, planes, d);
    });
    dx
}
