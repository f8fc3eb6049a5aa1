//! Forward functions for convolution, pooling and dropout (NCHW). Their
//! backward rules are in `backward.rs`; the arithmetic is in `conv/`.

use super::op::{Input, Op};
use super::tape::{Tape, Var};
use crate::conv::{im2col, max_pool2d, Planes, Window};
use crate::error::{Error, Result};
use crate::gemm::{sgemm, Transpose};
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
        Ok(ConvGeom { n, c, h, w: wd, oc, oh, ow, groups, win })
    }

    /// One group's input planes and the output they give.
    pub fn planes(&self) -> Planes {
        Planes { c: self.c / self.groups, h: self.h, w: self.w, win: self.win, oh: self.oh, ow: self.ow }
    }

    /// Rows of one group's column matrix: (c / groups) * kh * kw.
    pub fn col_rows(&self) -> usize {
        self.c / self.groups * self.win.kh * self.win.kw
    }

    /// The column matrix of group `g` of image `x` (`[c, h, w]`), borrowed
    /// when the convolution is pointwise, else built in `buf`.
    pub fn columns<'a>(&self, x: &'a [f32], g: usize, buf: &'a mut Vec<f32>) -> &'a [f32] {
        let cg = self.c / self.groups;
        let plane = &x[g * cg * self.h * self.w..(g + 1) * cg * self.h * self.w];
        if self.win.is_pointwise() {
            return plane;
        }
        // im2col writes every element: grow without clearing.
        let need = self.col_rows() * self.oh * self.ow;
        if buf.len() < need {
            buf.resize(need, 0.0);
        }
        im2col(plane, &self.planes(), &mut buf[..need]);
        &buf[..need]
    }
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
        let geom = ConvGeom::new(&x.value, &w.value, Window { kh: 0, kw: 0, stride, padding }, groups)?;
        if let Some(b) = b {
            if b.shape() != [geom.oc] {
                return Err(Error::Shape { op: "conv2d", lhs: w.shape().to_vec(), rhs: b.shape().to_vec() });
            }
        }
        let (ocg, pix) = (geom.oc / groups, geom.oh * geom.ow);
        let (xs, ws) = (x.value.data(), w.value.data());
        let mut out = vec![0.0f32; geom.n * geom.oc * pix];
        let image = geom.c * geom.h * geom.w;
        out.par_chunks_mut(geom.oc * pix).enumerate().try_for_each(|(i, y)| -> Result<()> {
            let mut buf = Vec::new();
            for g in 0..groups {
                let cols = geom.columns(&xs[i * image..(i + 1) * image], g, &mut buf);
                let wg = &ws[g * ocg * geom.col_rows()..(g + 1) * ocg * geom.col_rows()];
                let yg = &mut y[g * ocg * pix..(g + 1) * ocg * pix];
                sgemm(
                    Transpose::No,
                    Transpose::No,
                    ocg,
                    pix,
                    geom.col_rows(),
                    1.0,
                    wg,
                    geom.col_rows(),
                    cols,
                    pix,
                    0.0,
                    yg,
                    pix,
                )?;
            }
            if let Some(b) = b {
                for (plane, &bias) in y.chunks_mut(pix).zip(b.value.data()) {
                    plane.iter_mut().for_each(|v| *v += bias);
                }
            }
            Ok(())
        })?;
        let value = Tensor::from_vec(out, &[geom.n, geom.oc, geom.oh, geom.ow])?;
        let ids = [x.id, w.id, b.and_then(|b| b.id)];
        Ok(self.record(value, &ids, || Op::Conv2d {
            x: Input { id: x.id, value: x.value.clone() },
            w: Input { id: w.id, value: w.value.clone() },
            b: b.and_then(|b| b.id),
            geom,
        }))
    }

    /// Max pooling of `x [n, c, h, w]` over `k x k` windows with `stride`
    /// and `padding` (at most half the window, as PyTorch requires).
    pub fn max_pool2d(&self, x: &Var, k: usize, stride: usize, padding: usize) -> Result<Var> {
        let op = "max_pool2d";
        let [n, c, h, w] = dims4(&x.value, op)?;
        if 2 * padding > k {
            return Err(Error::Invalid {
                op,
                message: format!("padding {padding} is more than half the {k}x{k} window"),
            });
        }
        let win = Window::square(k, stride, padding);
        let (oh, ow) = win.output(op, h, w)?;
        let planes = Planes { c: 1, h, w, win, oh, ow };
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
        Ok(self.record(value, &[x.id], || Op::MaxPool2d { x: x.id.expect("checked"), in_shape, arg: Arc::new(arg) }))
    }

    /// Dropout: in training, zero each value with probability `p` and scale
    /// the rest by 1 / (1 - p), with a mask drawn from `rng`; otherwise the
    /// identity.
    pub fn dropout(&self, x: &Var, p: f32, train: bool, rng: &mut Rng) -> Result<Var> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::Invalid { op: "dropout", message: format!("p must be in [0, 1), got {p}") });
        }
        if !train || p == 0.0 {
            return Ok(x.clone());
        }
        let keep = 1.0 / (1.0 - p);
        let mask: Vec<f32> = (0..x.value.numel()).map(|_| if rng.uniform() < p { 0.0 } else { keep }).collect();
        let mask = Tensor::from_vec(mask, x.shape())?;
        let value = x.value.mul(&mask)?;
        Ok(self.record(value, &[x.id], || Op::Dropout { x: x.id.expect("checked"), mask }))
    }
}
