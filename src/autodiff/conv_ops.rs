//! The tape's convolution, pooling and dropout ops (NCHW): each checks its
//! operands, computes its value with the arithmetic in [`crate::conv`], and
//! records what its backward rule (in `backward.rs`) needs.

use super::op::{Input, Op};
use super::tape::{Tape, Var};
use crate::conv::{avg_pool2d, conv2d_forward, dims4, max_pool2d, ConvGeom, ConvInputs, Planes, Window};
use crate::error::{Error, Result};
use crate::tensor::{Rng, Tensor};
use rayon::prelude::*;
use std::sync::Arc;

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

/// The checked geometry and the output of `conv2d(x, w, b)` with
/// `(stride, padding, groups)`, then ReLU if `relu`.
fn conv2d_value(
    x: &Var,
    w: &Var,
    b: Option<&Var>,
    (stride, padding, groups): (usize, usize, usize),
    relu: bool,
) -> Result<(ConvGeom, Tensor)> {
    let geom = checked(x, w, b, stride, padding, groups)?;
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
