//! Elementwise math: unary maps and binary ops with numpy broadcasting,
//! vectorised with `wide::f32x8`, split across threads for large tensors.

use super::Tensor;
use crate::error::{Error, Result};
use rayon::prelude::*;
use wide::f32x8;

/// Tensors with at least this many elements are processed by rayon.
const PARALLEL_MIN: usize = 1 << 16;
const CHUNK: usize = 1 << 14;

/// An elementwise binary operation, for [`Tensor::binary`] and the tape's
/// [`binary`](crate::autodiff::Tape::binary).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryOp {
    /// `a + b`
    Add,
    /// `a - b`
    Sub,
    /// `a * b`
    Mul,
    /// `a / b`
    Div,
}

impl BinaryOp {
    /// The op's name in error messages (`"add"`, ...).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
        }
    }

    #[inline(always)]
    fn apply(self, a: f32x8, b: f32x8) -> f32x8 {
        match self {
            BinaryOp::Add => a + b,
            BinaryOp::Sub => a - b,
            BinaryOp::Mul => a * b,
            BinaryOp::Div => a / b,
        }
    }
}

/// Apply `f` to `src` eight lanes at a time into `dst`; the tail goes through
/// the same vector code on a padded copy, so every element sees the same math.
#[inline(always)]
fn map8(dst: &mut [f32], src: &[f32], f: impl Fn(f32x8) -> f32x8) {
    let mut d = dst.chunks_exact_mut(8);
    let mut s = src.chunks_exact(8);
    for (o, i) in (&mut d).zip(&mut s) {
        o.copy_from_slice(&f(f32x8::from(<[f32; 8]>::try_from(i).unwrap())).to_array());
    }
    let (o, i) = (d.into_remainder(), s.remainder());
    if !i.is_empty() {
        let mut pad = [0.0f32; 8];
        pad[..i.len()].copy_from_slice(i);
        o.copy_from_slice(&f(f32x8::from(pad)).to_array()[..i.len()]);
    }
}

/// `map8` over two inputs.
#[inline(always)]
fn zip8(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32x8, f32x8) -> f32x8) {
    let n8 = dst.len() / 8 * 8;
    for ((o, x), y) in dst[..n8].chunks_exact_mut(8).zip(a.chunks_exact(8)).zip(b.chunks_exact(8)) {
        let x = f32x8::from(<[f32; 8]>::try_from(x).unwrap());
        let y = f32x8::from(<[f32; 8]>::try_from(y).unwrap());
        o.copy_from_slice(&f(x, y).to_array());
    }
    let rest = dst.len() - n8;
    if rest > 0 {
        let (mut px, mut py) = ([0.0f32; 8], [1.0f32; 8]);
        px[..rest].copy_from_slice(&a[n8..]);
        py[..rest].copy_from_slice(&b[n8..]);
        dst[n8..].copy_from_slice(&f(f32x8::from(px), f32x8::from(py)).to_array()[..rest]);
    }
}

/// The shape two operands broadcast to (numpy rules), or an error naming both.
pub fn broadcast_shape(a: &[usize], b: &[usize], op: &'static str) -> Result<Vec<usize>> {
    let rank = a.len().max(b.len());
    let dim = |s: &[usize], d: usize| {
        if d + s.len() >= rank {
            s[d + s.len() - rank]
        } else {
            1
        }
    };
    (0..rank)
        .map(|d| match (dim(a, d), dim(b, d)) {
            (x, y) if x == y => Ok(x),
            (1, y) => Ok(y),
            (x, 1) => Ok(x),
            _ => Err(Error::Shape { op, lhs: a.to_vec(), rhs: b.to_vec() }),
        })
        .collect()
}

/// Row-major strides of `shape` left-padded to `rank`, 0 where broadcast.
pub(crate) fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut s = 1;
    for d in (0..shape.len()).rev() {
        strides[d + pad] = if shape[d] == 1 && out[d + pad] != 1 { 0 } else { s };
        s *= shape[d];
    }
    strides
}

impl Tensor {
    /// Apply a vector function to every element.
    pub fn map(&self, f: impl Fn(f32x8) -> f32x8 + Sync) -> Tensor {
        let mut out = vec![0.0; self.numel()];
        if out.len() >= PARALLEL_MIN {
            out.par_chunks_mut(CHUNK).zip(self.data().par_chunks(CHUNK)).for_each(|(o, i)| map8(o, i, &f));
        } else {
            map8(&mut out, self.data(), f);
        }
        Tensor::from_vec(out, self.shape()).expect("same shape")
    }

    /// `c * x` for every element.
    pub fn scale(&self, c: f32) -> Tensor {
        self.map(|x| x * f32x8::splat(c))
    }

    /// `x + c` for every element.
    pub fn add_scalar(&self, c: f32) -> Tensor {
        self.map(|x| x + f32x8::splat(c))
    }

    /// `e^x` for every element.
    pub fn exp(&self) -> Tensor {
        self.map(|x| x.exp())
    }

    /// The natural logarithm of every element (NaN below 0).
    pub fn ln(&self) -> Tensor {
        self.map(|x| x.ln())
    }

    /// `max(x, 0)` for every element.
    pub fn relu(&self) -> Tensor {
        self.map(|x| x.max(f32x8::ZERO))
    }

    /// The hyperbolic tangent of every element.
    pub fn tanh(&self) -> Tensor {
        self.map(|x| x.tanh())
    }

    /// `1 / (1 + exp(-x))`, written to stay finite for large |x|.
    pub fn sigmoid(&self) -> Tensor {
        self.map(|x| {
            let e = (-x.abs()).exp(); // in (0, 1]
            let pos = f32x8::ONE / (f32x8::ONE + e);
            let neg = e / (f32x8::ONE + e);
            x.simd_ge(f32x8::ZERO).bitselect(pos, neg)
        })
    }

    /// `f` of the elements of two tensors of the same shape, in one pass.
    pub fn zip_map(&self, other: &Tensor, f: impl Fn(f32x8, f32x8) -> f32x8 + Sync) -> Result<Tensor> {
        if self.shape() != other.shape() {
            return Err(Error::Shape { op: "zip_map", lhs: self.shape().to_vec(), rhs: other.shape().to_vec() });
        }
        let mut out = vec![0.0; self.numel()];
        if out.len() >= PARALLEL_MIN {
            out.par_chunks_mut(CHUNK)
                .zip(self.data().par_chunks(CHUNK).zip(other.data().par_chunks(CHUNK)))
                .for_each(|(o, (a, b))| zip8(o, a, b, &f));
        } else {
            zip8(&mut out, self.data(), other.data(), f);
        }
        Tensor::from_vec(out, self.shape())
    }

    /// Elementwise `self op other` with numpy broadcasting.
    pub fn binary(&self, other: &Tensor, op: BinaryOp) -> Result<Tensor> {
        if self.shape() == other.shape() {
            return self.zip_map(other, |a, b| op.apply(a, b));
        }
        let shape = broadcast_shape(self.shape(), other.shape(), op.name())?;
        let numel = super::numel_of(&shape, op.name())?;
        let inner = *shape.last().unwrap_or(&1);
        let (sa, sb) = (broadcast_strides(self.shape(), &shape), broadcast_strides(other.shape(), &shape));
        let mut out = vec![0.0; numel];
        if inner > 0 {
            // Walk rows of the last axis; each operand's row is either whole or
            // one broadcast value.
            let rank = shape.len();
            let mut idx = vec![0usize; rank];
            let (la, lb) = (sa.last().copied().unwrap_or(0), sb.last().copied().unwrap_or(0));
            let mut sa_row = vec![0.0f32; inner];
            let mut sb_row = vec![0.0f32; inner];
            for row in out.chunks_exact_mut(inner) {
                let oa: usize = (0..rank.saturating_sub(1)).map(|d| idx[d] * sa[d]).sum();
                let ob: usize = (0..rank.saturating_sub(1)).map(|d| idx[d] * sb[d]).sum();
                let a_row: &[f32] = if la == 0 {
                    sa_row.fill(self.data()[oa]);
                    &sa_row
                } else {
                    &self.data()[oa..oa + inner]
                };
                let b_row: &[f32] = if lb == 0 {
                    sb_row.fill(other.data()[ob]);
                    &sb_row
                } else {
                    &other.data()[ob..ob + inner]
                };
                zip8(row, a_row, b_row, |a, b| op.apply(a, b));
                // Advance the multi-index over all axes but the last.
                for d in (0..rank.saturating_sub(1)).rev() {
                    idx[d] += 1;
                    if idx[d] < shape[d] {
                        break;
                    }
                    idx[d] = 0;
                }
            }
        }
        Tensor::from_vec(out, &shape)
    }

    /// `self + other`, broadcast (see [`Tensor::binary`]).
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Add)
    }

    /// `self - other`, broadcast.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Sub)
    }

    /// `self * other` elementwise, broadcast.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Mul)
    }

    /// `self / other` elementwise, broadcast.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        self.binary(other, BinaryOp::Div)
    }

    /// `self += other` (same shape), in place: gradient accumulation.
    pub fn add_assign(&mut self, other: &Tensor) -> Result<()> {
        self.expect_same_shape(other, "add_assign")?;
        let dst = self.data_mut();
        let src = other.data();
        let n8 = dst.len() / 8 * 8;
        for (d, s) in dst[..n8].chunks_exact_mut(8).zip(src.chunks_exact(8)) {
            let v = f32x8::from(<[f32; 8]>::try_from(&*d).unwrap()) + f32x8::from(<[f32; 8]>::try_from(s).unwrap());
            d.copy_from_slice(&v.to_array());
        }
        dst[n8..].iter_mut().zip(&src[n8..]).for_each(|(d, s)| *d += s);
        Ok(())
    }

    /// `self += c * other` (same shape), in place: optimiser updates.
    pub fn axpy(&mut self, c: f32, other: &Tensor) -> Result<()> {
        self.expect_same_shape(other, "axpy")?;
        let (dst, src) = (self.data_mut(), other.data());
        let cv = f32x8::splat(c);
        let n8 = dst.len() / 8 * 8;
        for (d, s) in dst[..n8].chunks_exact_mut(8).zip(src.chunks_exact(8)) {
            let v = f32x8::from(<[f32; 8]>::try_from(s).unwrap())
                .mul_add(cv, f32x8::from(<[f32; 8]>::try_from(&*d).unwrap()));
            d.copy_from_slice(&v.to_array());
        }
        dst[n8..].iter_mut().zip(&src[n8..]).for_each(|(d, s)| *d += c * s);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data: &[f32], shape: &[usize]) -> Tensor {
        Tensor::from_vec(data.to_vec(), shape).unwrap()
    }

    #[test]
    fn broadcasting_rows_columns_and_scalars() {
        let m = t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let row = t(&[10.0, 20.0, 30.0], &[3]);
        let col = t(&[100.0, 200.0], &[2, 1]);
        assert_eq!(m.add(&row).unwrap().data(), &[11.0, 22.0, 33.0, 14.0, 25.0, 36.0]);
        assert_eq!(m.add(&col).unwrap().data(), &[101.0, 102.0, 103.0, 204.0, 205.0, 206.0]);
        assert_eq!(col.sub(&m).unwrap().data(), &[99.0, 98.0, 97.0, 196.0, 195.0, 194.0]);
        assert_eq!(m.mul(&Tensor::scalar(2.0)).unwrap().data(), &[2.0, 4.0, 6.0, 8.0, 10.0, 12.0]);
        let outer = col.mul(&row).unwrap();
        assert_eq!(outer.shape(), &[2, 3]);
        assert_eq!(outer.data()[5], 6000.0);
        let err = m.add(&t(&[1.0, 2.0], &[2])).unwrap_err();
        assert_eq!(err.to_string(), "add: shape mismatch: [2, 3] vs [2]");
    }

    #[test]
    fn vector_math_matches_f64() {
        let xs: Vec<f32> = (0..1001).map(|i| (i as f32 - 500.0) / 37.0).collect();
        let x = t(&xs, &[1001]);
        let close = |got: &Tensor, f: fn(f64) -> f64, tol: f64| {
            for (g, &v) in got.data().iter().zip(&xs) {
                let want = f(v as f64);
                assert!(((*g as f64) - want).abs() <= tol * want.abs().max(1.0), "x={v}: {g} vs {want}");
            }
        };
        close(&x.exp(), f64::exp, 2e-6);
        close(&x.tanh(), f64::tanh, 2e-6);
        close(&x.sigmoid(), |v| 1.0 / (1.0 + (-v).exp()), 2e-6);
        close(&x.relu(), |v| v.max(0.0), 0.0);
        let pos = x.map(|v| v.abs() + f32x8::splat(0.01));
        for (g, p) in pos.ln().data().iter().zip(pos.data()) {
            assert!((*g as f64 - (*p as f64).ln()).abs() < 2e-6, "ln({p})");
        }
    }
}
