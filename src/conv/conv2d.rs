//! The convolution's forward pass as chunks of implicit GEMMs, and the
//! geometry its backward pass (`backward.rs`) shares. The tape's
//! [`conv2d`](crate::autodiff::Tape::conv2d) records a node and calls
//! [`conv2d_forward`]; everything here works on slices.

use super::{im2col, needs_padding, pad_planes, padded_plane, winograd, Fields, Planes, Window};
use crate::error::{Error, Result};
use crate::gemm::{sgemm_packed, sgemm_packed_gather, PackedA, Transpose};
use crate::tensor::Tensor;
use rayon::prelude::*;
use std::sync::Arc;

/// The four axes of an NCHW tensor, or an error naming `op`.
pub(crate) fn dims4(t: &Tensor, op: &'static str) -> Result<[usize; 4]> {
    t.shape().try_into().map_err(|_| Error::Rank { op, expected: 4, shape: t.shape().to_vec() })
}

/// Shapes of one convolution, checked.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ConvGeom {
    pub n: usize,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub oh: usize,
    pub ow: usize,
    pub groups: usize,
    pub win: Window,
}

impl ConvGeom {
    pub fn new(x: &Tensor, w: &Tensor, win: Window, groups: usize) -> Result<ConvGeom> {
        let op = "conv2d";
        let [n, c, h, wd] = dims4(x, op)?;
        let [oc, cg, kh, kw] = dims4(w, op)?;
        if groups == 0 || c % groups != 0 || oc % groups != 0 || cg != c / groups {
            return Err(Error::Shape { op, lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
        }
        let win = Window { kh, kw, ..win };
        let (oh, ow) = win.output(op, h, wd)?;
        if [n, oc, oh, ow].into_iter().try_fold(1usize, usize::checked_mul).is_none() {
            return Err(Error::Invalid {
                op,
                message: format!("the output [{n}, {oc}, {oh}, {ow}] has more elements than memory can hold"),
            });
        }
        Ok(ConvGeom { n, c, h, w: wd, oc, oh, ow, groups, win })
    }

    /// One group's input planes and the output they give.
    pub fn planes(&self) -> Planes {
        Planes { c: self.c / self.groups, h: self.h, w: self.w, win: self.win, oh: self.oh, ow: self.ow }
    }

    /// Whether this convolution, its input gradient and its filters'
    /// gradient go through `winograd` (its filters, stride, groups,
    /// channels and image size all fit).
    pub fn by_winograd(&self) -> bool {
        let win = self.win;
        winograd::applies(self.c, self.oc, win.kh, win.kw, win.stride, win.padding, self.groups)
            && winograd::fits(self.h, self.w, win.kh, win.padding)
    }

    /// Rows of one group's column matrix: (c / groups) * kh * kw.
    pub fn col_rows(&self) -> usize {
        self.c / self.groups * self.win.kh * self.win.kw
    }

    /// How many images share one matrix product: enough that the product has
    /// about `PRODUCT_COLUMNS` columns, in chunks as equal as they can be and,
    /// when there are several, a multiple of 4 of them (so 2 or 4 threads
    /// share them evenly). The rule depends on the shapes only, never on the
    /// thread count: the weight gradient sums chunk by chunk, and must give
    /// the same bits on any number of threads.
    pub fn images_per_product(&self) -> usize {
        let n = self.n.max(1);
        let want = (PRODUCT_COLUMNS / (self.oh * self.ow).max(1)).clamp(1, n);
        let mut chunks = n.div_ceil(want);
        if chunks > 1 {
            chunks = chunks.next_multiple_of(4).min(n);
        }
        n.div_ceil(chunks)
    }

    /// Whether `chunks` pieces of work already keep every thread busy, so
    /// the work inside each should stay on its thread.
    pub fn fills_threads(chunks: usize) -> bool {
        chunks >= crate::parallel::threads()
    }

    /// The column matrix of group `g` of the `count` consecutive images `x`
    /// (`[count, c, h, w]`), side by side: `[col_rows, count * oh * ow]`.
    /// Borrowed for one image of a pointwise convolution, else built in `buf`.
    pub fn columns<'a>(&self, x: &'a [f32], count: usize, g: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let (cg, image, pix) = (self.c / self.groups, self.c * self.h * self.w, self.oh * self.ow);
        let plane = |j: usize| &x[j * image + g * cg * self.h * self.w..j * image + (g + 1) * cg * self.h * self.w];
        if count == 1 && self.win.is_pointwise() {
            return plane(0);
        }
        // im2col writes every element: grow without clearing.
        let (ld, need) = (count * pix, self.col_rows() * count * pix);
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        for j in 0..count {
            im2col(plane(j), &self.planes(), &mut buf[j * pix..need], ld, 0..self.oh);
        }
        &buf[..need]
    }
}

/// Columns a convolution's matrix product should have at least. Images whose
/// outputs are small (AlexNet's 13 x 13 = 169) go side by side into one
/// product, so the kernel's 32-wide panels are full and the filters are
/// packed once per few images instead of once per image.
const PRODUCT_COLUMNS: usize = 1024;

/// A convolution's operands: images `xs`, filters `w`, optional `bias`,
/// whether a ReLU follows, and whether the filters' packing may be
/// remembered for the next call (untracked weights: see `prepacked`).
#[derive(Clone, Copy)]
pub(crate) struct ConvInputs<'a> {
    pub xs: &'a [f32],
    pub w: &'a Tensor,
    pub remember: bool,
    pub bias: Option<&'a [f32]>,
    pub relu: bool,
}

/// The convolution `geom` of `inp`: `[n, oc, oh, ow]`. Chunks of
/// [`ConvGeom::images_per_product`] images run in parallel; the filters are
/// packed once for all of them. A lone image's product is shared by the
/// threads instead (by filters or by columns: see `gemm`'s driver).
pub(crate) fn conv2d_forward(geom: &ConvGeom, inp: ConvInputs) -> Result<Vec<f32>> {
    let ConvGeom { n, c, h, w, oc, win, .. } = *geom;
    let k = win.kh;
    if geom.by_winograd() {
        let u = super::prepacked::winograd_filters(inp.w, oc, c, k, inp.remember)?;
        return winograd::convolve(inp.xs, [n, c, h, w], k, win.padding, &u, oc, inp.bias, inp.relu);
    }
    let (ocg, rows) = (geom.oc / geom.groups, geom.col_rows());
    let filters = super::prepacked::filters(inp.w, ocg, rows, geom.groups, inp.remember)?;
    let per = geom.images_per_product();
    // The offsets of a whole chunk; a shorter last chunk uses a prefix of the columns.
    let fields = Fields::new(&geom.planes(), geom.c, per).ok_or_else(|| Error::Invalid {
        op: "conv2d",
        message: format!("{per} images of {}x{}x{} are too large to index with 31 bits", geom.c, geom.h, geom.w),
    })?;
    let per_chunk = per * geom.oc * geom.oh * geom.ow;
    let mut out = vec![0.0f32; geom.n * geom.oc * geom.oh * geom.ow];
    let serial = ConvGeom::fills_threads(out.len().div_ceil(per_chunk));
    out.par_chunks_mut(per_chunk).enumerate().try_for_each(|(chunk, y)| {
        crate::parallel::serial_if(serial, || forward_chunk(geom, chunk, y, inp, (&filters, &fields)))
    })?;
    Ok(out)
}

/// The input gradient of the convolution `geom` with filters `w`, given the
/// output gradient `dy`, as a convolution itself - when it is one: with
/// stride 1 and square windows, `dx` is `dy` padded by `k - 1 - padding`
/// and convolved with the filters flipped in space and with their in and
/// out channels swapped. That runs through the forward pass's implicit GEMM
/// instead of writing every column's gradient and adding them back
/// (col2im). None for strides and windows this does not cover, and for
/// fewer than [`BY_CONV_MIN_CHANNELS`] input channels per group: that
/// convolution's product has a row per input channel, too few to pay for
/// packing its `oc * k * k` deep gathered columns (LeNet's second layer, 6
/// channels, gathers 400 values per pixel for 6 rows; col2im's product has
/// a row per column-matrix row, 150, and adds 150 values per output pixel).
pub(crate) fn input_gradient_by_conv(geom: &ConvGeom, w: &[f32], dy: &[f32]) -> Option<Result<Vec<f32>>> {
    let ConvGeom { n, c, h, w: wd, oc, oh, ow, groups, win } = *geom;
    let k = win.kh;
    if win.stride != 1 || win.kw != k || win.padding >= k || c / groups < BY_CONV_MIN_CHANNELS {
        return None;
    }
    let (cg, ocg, kk) = (c / groups, oc / groups, k * k);
    // flipped[g * cg + ci][o][k-1-ky][k-1-kx] = w[g * ocg + o][ci][ky][kx]
    let mut flipped = vec![0.0f32; w.len()];
    for (f, filter) in w.chunks_exact(cg * kk).enumerate() {
        let (g, o) = (f / ocg, f % ocg);
        for (ci, taps) in filter.chunks_exact(kk).enumerate() {
            let at = ((g * cg + ci) * ocg + o) * kk;
            for (t, &v) in taps.iter().enumerate() {
                flipped[at + kk - 1 - t] = v;
            }
        }
    }
    let flipped = match Tensor::from_vec(flipped, &[c, ocg, k, k]) {
        Ok(t) => t,
        Err(e) => return Some(Err(e)),
    };
    let back = Window { kh: k, kw: k, stride: 1, padding: k - 1 - win.padding };
    let geom = ConvGeom { n, c: oc, h: oh, w: ow, oc: c, oh: h, ow: wd, groups, win: back };
    Some(conv2d_forward(&geom, ConvInputs { xs: dy, w: &flipped, remember: false, bias: None, relu: false }))
}

/// Input channels per group below which the input gradient goes through
/// col2im rather than [`input_gradient_by_conv`].
const BY_CONV_MIN_CHANNELS: usize = 16;

/// The images of chunk `chunk` (see [`conv2d_forward`]) into `y`.
fn forward_chunk(
    geom: &ConvGeom,
    chunk: usize,
    y: &mut [f32],
    inp: ConvInputs,
    packed: (&[Arc<PackedA>], &Fields),
) -> Result<()> {
    crate::scratch::with_vec(|buf| {
        crate::scratch::with_vec(|wide| forward_chunk_in(geom, chunk, y, inp, packed, buf, wide))
    })
}

/// [`forward_chunk`] with scratch vectors for the padded input and the wide
/// product. The columns are never written out: the product gathers them
/// from the padded images through `fields` as it packs them.
fn forward_chunk_in(
    geom: &ConvGeom,
    chunk: usize,
    y: &mut [f32],
    inp: ConvInputs,
    (filters, fields): (&[Arc<PackedA>], &Fields),
    buf: &mut Vec<f32>,
    wide: &mut Vec<f32>,
) -> Result<()> {
    let ConvGeom { c, h, w, oc, oh, ow, groups, win, .. } = *geom;
    let (ocg, pix, image) = (oc / groups, oh * ow, c * h * w);
    let (first, count) = (chunk * geom.images_per_product(), y.len() / (oc * pix));
    let x = &inp.xs[first * image..(first + count) * image];
    // The images padded (and split into stride phases), and how far apart groups' planes are.
    let planes = geom.planes();
    let (src, group_len) = if needs_padding(&planes) {
        pad_planes(x, count * c, &planes, buf);
        (&buf[..], c / groups * padded_plane(&planes))
    } else {
        (x, c / groups * h * w)
    };
    let cols = &fields.cols[..count * pix];
    for (g, f) in filters.iter().enumerate() {
        let src = &src[g * group_len..];
        if count == 1 {
            let yg = &mut y[g * ocg * pix..(g + 1) * ocg * pix];
            if win.is_pointwise() {
                // The image already is its own column matrix.
                sgemm_packed(f, Transpose::No, pix, 1.0, &src[..group_len], pix, 0.0, yg, pix)?;
            } else {
                sgemm_packed_gather(f, 1.0, src, &fields.rows, cols, 0.0, yg, pix)?;
            }
            continue;
        }
        // One product for the chunk, [ocg, count * pix], then each image's planes to their place.
        let ld = count * pix;
        wide.resize(ocg * ld, 0.0);
        sgemm_packed_gather(f, 1.0, src, &fields.rows, cols, 0.0, wide, ld)?;
        for j in 0..count {
            for o in 0..ocg {
                let dst = (j * oc + g * ocg + o) * pix;
                y[dst..dst + pix].copy_from_slice(&wide[o * ld + j * pix..o * ld + (j + 1) * pix]);
            }
        }
    }
    finish(y, pix, inp.bias, inp.relu);
    Ok(())
}

/// Add each output channel's bias to its rows of `pix` values in `y`
/// (channel `row % bias.len()`), then ReLU if `relu`; rows split between
/// threads when there are threads to spare (a lone image).
fn finish(y: &mut [f32], pix: usize, bias: Option<&[f32]>, relu: bool) {
    if bias.is_none() && !relu {
        return;
    }
    let row = |(p, row): (usize, &mut [f32])| {
        let b = bias.map_or(0.0, |b| b[p % b.len()]);
        if relu {
            row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
        } else {
            row.iter_mut().for_each(|v| *v += b);
        }
    };
    if crate::parallel::threads() > 1 && y.len() >= FINISH_PARALLEL_MIN {
        y.par_chunks_mut(pix).enumerate().for_each(row);
    } else {
        y.chunks_mut(pix).enumerate().for_each(row);
    }
}

/// Outputs at least this large (floats) get their bias and ReLU on every thread.
const FINISH_PARALLEL_MIN: usize = 1 << 16;
