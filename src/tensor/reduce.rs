//! Reductions along an axis, and `sum_to`, which undoes a broadcast (the
//! backward of every broadcasting op goes through it).
//!
//! A reduction over `axis` views the tensor as `[outer, len, inner]`, where
//! `outer` and `inner` are the products of the dimensions before and after it.

use super::ops::broadcast_shape;
use super::Tensor;
use crate::error::{Error, Result};

impl Tensor {
    fn split_at_axis(&self, axis: usize, op: &'static str) -> Result<(usize, usize, usize)> {
        if axis >= self.rank() {
            return Err(Error::Axis { op, axis, shape: self.shape().to_vec() });
        }
        let outer = self.shape()[..axis].iter().product();
        let inner = self.shape()[axis + 1..].iter().product();
        Ok((outer, self.shape()[axis], inner))
    }

    fn reduced_shape(&self, axis: usize, keepdim: bool) -> Vec<usize> {
        let mut shape = self.shape().to_vec();
        if keepdim {
            shape[axis] = 1;
        } else {
            shape.remove(axis);
        }
        shape
    }

    /// Fold `axis` away with `f(acc, x)` starting from `init`.
    fn fold_axis(
        &self,
        axis: usize,
        keepdim: bool,
        op: &'static str,
        init: f32,
        f: impl Fn(f32, f32) -> f32,
    ) -> Result<Tensor> {
        let (outer, len, inner) = self.split_at_axis(axis, op)?;
        let mut out = vec![init; outer * inner];
        let x = self.data();
        for o in 0..outer {
            let acc = &mut out[o * inner..(o + 1) * inner];
            for a in 0..len {
                let row = &x[(o * len + a) * inner..(o * len + a + 1) * inner];
                acc.iter_mut().zip(row).for_each(|(s, &v)| *s = f(*s, v));
            }
        }
        Tensor::from_vec(out, &self.reduced_shape(axis, keepdim))
    }

    /// Sum along `axis`; with `keepdim` the axis stays, with length 1.
    pub fn sum_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        self.fold_axis(axis, keepdim, "sum", 0.0, |s, v| s + v)
    }

    /// Mean along `axis` (an error if the axis is empty); `keepdim` as in
    /// [`Tensor::sum_axis`].
    pub fn mean_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        let len = *self.shape().get(axis).unwrap_or(&0);
        if len == 0 {
            return Err(Error::Empty { op: "mean", shape: self.shape().to_vec() });
        }
        Ok(self.sum_axis(axis, keepdim)?.scale(1.0 / len as f32))
    }

    /// Largest value along `axis`; `keepdim` as in [`Tensor::sum_axis`].
    pub fn max_axis(&self, axis: usize, keepdim: bool) -> Result<Tensor> {
        if self.numel() == 0 {
            return Err(Error::Empty { op: "max", shape: self.shape().to_vec() });
        }
        self.fold_axis(axis, keepdim, "max", f32::NEG_INFINITY, f32::max)
    }

    /// Sum of all elements, accumulated in f64 (so large sums stay exact to f32).
    pub fn sum_all(&self) -> f32 {
        self.data().iter().map(|&x| x as f64).sum::<f64>() as f32
    }

    /// Index of the largest value along `axis` (the first on ties).
    pub fn argmax_axis(&self, axis: usize) -> Result<Vec<usize>> {
        let (outer, len, inner) = self.split_at_axis(axis, "argmax")?;
        if len == 0 {
            return Err(Error::Empty { op: "argmax", shape: self.shape().to_vec() });
        }
        let x = self.data();
        let mut out = vec![0usize; outer * inner];
        for o in 0..outer {
            for i in 0..inner {
                let at = |a: usize| x[(o * len + a) * inner + i];
                out[o * inner + i] = (1..len).fold(0, |best, a| if at(a) > at(best) { a } else { best });
            }
        }
        Ok(out)
    }

    /// Sum over the axes along which `shape` was broadcast to `self.shape()`:
    /// the adjoint of broadcasting.
    pub fn sum_to(&self, shape: &[usize]) -> Result<Tensor> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        if broadcast_shape(shape, self.shape(), "sum_to")? != self.shape() {
            return Err(Error::Shape { op: "sum_to", lhs: self.shape().to_vec(), rhs: shape.to_vec() });
        }
        let pad = self.rank() - shape.len();
        let mut t = self.clone();
        // Leading axes that `shape` lacks, then axes where it has size 1.
        for _ in 0..pad {
            t = t.sum_axis(0, false)?;
        }
        for (d, &n) in shape.iter().enumerate() {
            if n == 1 && t.shape()[d] != 1 {
                t = t.sum_axis(d, true)?;
            }
        }
        t.reshape(shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn axis_reductions() {
        let x = Tensor::from_vec(vec![1.0, 5.0, 3.0, 4.0, 2.0, 6.0], &[2, 3]).unwrap();
        assert_eq!(x.sum_axis(0, false).unwrap().data(), &[5.0, 7.0, 9.0]);
        assert_eq!(x.sum_axis(1, true).unwrap().shape(), &[2, 1]);
        assert_eq!(x.mean_axis(1, false).unwrap().data(), &[3.0, 4.0]);
        assert_eq!(x.max_axis(1, false).unwrap().data(), &[5.0, 6.0]);
        assert_eq!(x.argmax_axis(1).unwrap(), vec![1, 2]);
        assert_eq!(x.argmax_axis(0).unwrap(), vec![1, 0, 1]);
        assert!(x.sum_axis(2, false).unwrap_err().to_string().contains("axis 2 is out of range for shape [2, 3]"));
    }

    #[test]
    fn sum_to_undoes_broadcast() {
        let g = Tensor::full(&[4, 2, 3], 1.0);
        assert_eq!(g.sum_to(&[3]).unwrap().data(), &[8.0, 8.0, 8.0]);
        assert_eq!(g.sum_to(&[2, 1]).unwrap().data(), &[12.0, 12.0]);
        assert_eq!(g.sum_to(&[]).unwrap().data(), &[24.0]);
        assert!(g.sum_to(&[5]).is_err());
    }
}
