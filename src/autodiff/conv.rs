//! Forward functions for convolution, pooling and dropout (NCHW). Their
//! backward rules are in `backward.rs`; the arithmetic is in `conv/`.

use super::op::{Input, Op};
use super::tape::{Tape, Var};
use crate::conv::{
    avg_pool2d, im2col, max_pool2d, needs_padding, pad_planes, padded_plane, winograd, Fields, Planes, Window,
};
use crate::error::{Error, Result};
use crate::gemm::{sgemm_packed, sgemm_packed_gather, PackedA, Transpose};
use crate::tensor::{Rng, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

fn dims4(t: &Tensor, op: &'static str) -> Result<[usize; 4]> {
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

    /// The geometry of `conv2d(x, w, b, ...)`, with the bias checked too.
    fn checked(x: &Var, w: &Var, b: Option<&Var>, stride: usize, padding: usize, groups: usize) -> Result<ConvGeom> {
        let geom = ConvGeom::new(&x.value, &w.value, Window { kh: 0, kw: 0, stride, padding }, groups)?;
        match b {
            Some(b) if b.shape() != [geom.oc] => {
                Err(Error::Shape { op: "conv2d", lhs: w.shape().to_vec(), rhs: b.shape().to_vec() })
            }
            _ => Ok(geom),
        }
    }

    /// One group's input planes and the output they give.
    pub fn planes(&self) -> Planes {
        Planes { c: self.c / self.groups, h: self.h, w: self.w, win: self.win, oh: self.oh, ow: self.ow }
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
    let ConvGeom { n, c, h, w, oc, groups, win, .. } = *geom;
    if winograd::applies(c, oc, win.kh, win.kw, win.stride, win.padding, groups) && winograd::fits(w, win.padding) {
        let u = super::prepacked::winograd_filters(inp.w, oc, c, inp.remember)?;
        return winograd::conv3x3(inp.xs, [n, c, h, w], win.padding, &u, oc, inp.bias, inp.relu);
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

/// The checked geometry and the output of `conv2d(x, w, b)` with
/// `(stride, padding, groups)`, then ReLU if `relu`.
fn conv2d_value(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    (stride, padding, groups): (usize, usize, usize),
    relu: bool,
) -> Result<(ConvGeom, Tensor)> {
    let geom = ConvGeom::checked(x, w, b, stride, padding, groups)?;
    let bias = b.map(|b| b.value.data());
    let inp = ConvInputs { xs: x.value.data(), w: &w.value, remember: w.id.is_none(), bias, relu };
    let out = conv2d_forward(&geom, inp)?;
    Ok((geom, Tensor::from_vec(out, &[geom.n, geom.oc, geom.oh, geom.ow])?))
}

/// The batch, channels and one plane's pooling geometry of `x [n, c, h, w]`
/// under a `k x k` window, checked: padding at most half the window (as
/// PyTorch requires), a stride of at least 1, and a window that fits.
fn pool_planes(
    op: &'static str,
    x: &Tensor,
    k: usize,
    stride: usize,
    padding: usize,
) -> Result<(usize, usize, Planes)> {
    let [n, c, h, w] = dims4(x, op)?;
    if padding > k / 2 {
        return Err(Error::Invalid { op, message: format!("padding {padding} is more than half the {k}x{k} window") });
    }
    let win = Window::square(k, stride, padding);
    let (oh, ow) = win.output(op, h, w)?;
    Ok((n, c, Planes { c: 1, h, w, win, oh, ow }))
}

impl Tape {
    /// 2-d convolution of `x [n, c, h, w]` by `w [oc, c / groups, kh, kw]`
    /// plus `b [oc]`, with `stride` and zero `padding` (as PyTorch's Conv2d).
    pub fn conv2d(
        &self,
        x: &Var,
        w: &Var,
        b: Option<&Var>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Var> {
        self.check("conv2d", &[Some(x), Some(w), b])?;
        let (geom, value) = conv2d_value(x, w, b, (stride, padding, groups), false)?;
        self.record("conv2d", value, &[Some(x), Some(w), b], || Op::Conv2d {
            x: Input { id: x.id, value: x.value.clone() },
            w: Input { id: w.id, value: w.value.clone() },
            b: b.and_then(|b| b.id),
            geom,
        })
    }

    /// `relu(conv2d(...))`. When no gradient will flow through it, the two
    /// are one pass: the ReLU is applied as each chunk of the output is made.
    pub fn conv2d_relu(
        &self,
        x: &Var,
        w: &Var,
        b: Option<&Var>,
        stride: usize,
        padding: usize,
        groups: usize,
    ) -> Result<Var> {
        self.check("conv2d", &[Some(x), Some(w), b])?;
        let tracked = x.id.is_some() || w.id.is_some() || b.is_some_and(|b| b.id.is_some());
        if self.is_recording() && tracked {
            return Ok(self.relu(&self.conv2d(x, w, b, stride, padding, groups)?));
        }
        Ok(Var::constant(conv2d_value(x, w, b, (stride, padding, groups), true)?.1))
    }

    /// Max pooling of `x [n, c, h, w]` over `k x k` windows with `stride`
    /// and `padding` (at most half the window, as PyTorch requires).
    pub fn max_pool2d(&self, x: &Var, k: usize, stride: usize, padding: usize) -> Result<Var> {
        let op = "max_pool2d";
        self.check(op, &[Some(x)])?;
        let (n, c, planes) = pool_planes(op, &x.value, k, stride, padding)?;
        let Planes { h, w, oh, ow, .. } = planes;
        let mut out = vec![0.0f32; n * c * oh * ow];
        let xs = x.value.data();
        let plane = |p: usize| &xs[p * h * w..(p + 1) * h * w];
        // The argmax positions only when a backward pass will route through them.
        if !self.is_recording() || x.id.is_none() {
            out.par_chunks_mut(oh * ow).enumerate().for_each(|(p, o)| max_pool2d(plane(p), &planes, o, None));
            return Ok(Var::constant(Tensor::from_vec(out, &[n, c, oh, ow])?));
        }
        let mut arg = vec![0u32; n * c * oh * ow];
        out.par_chunks_mut(oh * ow).zip(arg.par_chunks_mut(oh * ow)).enumerate().for_each(|(p, (o, a))| {
            max_pool2d(plane(p), &planes, o, Some(a));
        });
        let value = Tensor::from_vec(out, &[n, c, oh, ow])?;
        let in_shape = x.shape().to_vec();
        self.record(op, value, &[Some(x)], || Op::MaxPool2d { x: x.id.expect("checked"), in_shape, arg: Arc::new(arg) })
    }

    /// Average pooling of `x [n, c, h, w]` over `k x k` windows with `stride`
    /// and `padding` (at most half the window), as PyTorch's AvgPool2d with
    /// its defaults: padded zeros count in the divisor `k * k`.
    pub fn avg_pool2d(&self, x: &Var, k: usize, stride: usize, padding: usize) -> Result<Var> {
        let op = "avg_pool2d";
        self.check(op, &[Some(x)])?;
        let (n, c, planes) = pool_planes(op, &x.value, k, stride, padding)?;
        let Planes { h, w, oh, ow, .. } = planes;
        let xs = x.value.data();
        let mut out = vec![0.0f32; n * c * oh * ow];
        // Indexed, not chunked: an empty plane (h or w 0, all padding) is a valid input.
        out.par_chunks_mut(oh * ow)
            .enumerate()
            .for_each(|(p, o)| avg_pool2d(&xs[p * h * w..(p + 1) * h * w], &planes, o));
        let value = Tensor::from_vec(out, &[n, c, oh, ow])?;
        self.record(op, value, &[Some(x)], || Op::AvgPool2d {
            x: x.id.expect("checked"),
            in_shape: x.shape().to_vec(),
            planes,
        })
    }

    /// Dropout: in training, zero each value with probability `p` and scale
    /// the rest by 1 / (1 - p), with a mask drawn from `rng`; otherwise the
    /// identity.
    pub fn dropout(&self, x: &Var, p: f32, train: bool, rng: &mut Rng) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Invalid { op: "dropout", message: format!("p must be in [0, 1), got {p}") });
        }
        self.check("dropout", &[Some(x)])?;
        if !train || p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.value.numel()).map(|_| if rng.uniform() < p { 0.0 } else { keep }).collect();
        let mask = Tensor::from_vec(mask, x.shape())?;
        let value = x.value.mul(&mask)?;
        self.record("dropout", value, &[Some(x)], || Op::Dropout { x: x.id.expect("checked"), mask })
    }
}
