//! The n-d f32 tensor: a shape and contiguous row-major storage.
//!
//! # The idea
//!
//! A [`Tensor`] is a shape and a flat `Vec<f32>` in row-major order: the
//! last axis is contiguous, and element `[i, j]` of a `[rows, cols]` tensor
//! is `data()[i * cols + j]`. There are no strides or views: an op makes a
//! new tensor, and [`Tensor::reshape`] only changes the shape. The storage
//! sits behind an `Arc`, so cloning a tensor (as the autodiff tape does to
//! save inputs for backward) is a reference-count bump; writing through
//! [`Tensor::data_mut`] copies first if the storage is shared.
//!
//! Elementwise ops ([`Tensor::binary`] with a [`BinaryOp`], [`Tensor::add`],
//! [`Tensor::exp`], ...) broadcast as NumPy does (a bias row, a column, a
//! scalar) and run eight lanes at a time on `wide::f32x8` (`ops.rs`).
//! Reductions along an axis ([`Tensor::sum_axis`], [`Tensor::argmax_axis`],
//! and [`Tensor::sum_to`], which sums a broadcast
//! gradient back to its source shape) are in `reduce.rs`; products
//! ([`Tensor::matmul`], which calls [`crate::gemm::sgemm`]) and transposes
//! in `linalg.rs`; a stable [`Tensor::softmax`] in `softmax.rs`; the seeded
//! random stream ([`Rng`]), so every run is reproducible.

mod linalg;
mod ops;
mod reduce;
mod softmax;

pub use crate::rng::Rng;
pub use ops::BinaryOp;

use crate::error::{Error, Result};
use std::sync::Arc;

/// An n-d array of `f32`: a shape and row-major storage shared behind an
/// `Arc` (see the [module docs](crate::tensor)). A shape `[]` is a scalar.
///
/// Ops that can fail (mismatched shapes, a bad axis) return [`Error`]
/// naming the op and the shapes; constructors that cannot fail panic only
/// for a shape whose element count overflows `usize`.
#[derive(Clone, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Arc<Vec<f32>>,
}

impl std::fmt::Debug for Tensor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        const SHOWN: usize = 8;
        write!(f, "Tensor{:?} {:?}", self.shape, &self.data[..self.data.len().min(SHOWN)])?;
        if self.data.len() > SHOWN {
            write!(f, "..")?;
        }
        Ok(())
    }
}

/// Elements of `shape`, or an error naming `op` when the product overflows
/// usize (a wrapped count would pair a huge shape with a small storage).
pub(crate) fn numel_of(shape: &[usize], op: &'static str) -> Result<usize> {
    if shape.contains(&0) {
        return Ok(0); // however large the other dimensions
    }
    shape.iter().try_fold(1usize, |n, &d| n.checked_mul(d)).ok_or_else(|| Error::Invalid {
        op,
        message: format!("shape {shape:?} has more elements than memory can hold"),
    })
}

/// [`numel_of`] for the constructors that cannot fail: such a shape could
/// not be allocated either.
fn numel_or_panic(shape: &[usize]) -> usize {
    numel_of(shape, "tensor").unwrap_or_else(|e| panic!("{e}"))
}

impl Tensor {
    /// A tensor of `shape` filled with 0.
    pub fn zeros(shape: &[usize]) -> Tensor {
        Tensor::full(shape, 0.0)
    }

    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f32) -> Tensor {
        Tensor { shape: shape.to_vec(), data: Arc::new(vec![value; numel_or_panic(shape)]) }
    }

    /// A rank-0 tensor (shape `[]`) holding `value`.
    pub fn scalar(value: f32) -> Tensor {
        Tensor { shape: vec![], data: Arc::new(vec![value]) }
    }

    /// Wrap `data` (row-major) as a tensor of `shape`.
    pub fn from_vec(data: Vec<f32>, shape: &[usize]) -> Result<Tensor> {
        let numel = numel_of(shape, "from_vec")?;
        if data.len() != numel {
            return Err(Error::DataLength { op: "from_vec", data: data.len(), shape: shape.to_vec(), numel });
        }
        Ok(Tensor { shape: shape.to_vec(), data: Arc::new(data) })
    }

    /// Uniform in `[lo, hi)` from `rng` (see `rng.rs` for the stream).
    pub fn uniform(shape: &[usize], lo: f32, hi: f32, rng: &mut Rng) -> Tensor {
        let data = (0..numel_or_panic(shape)).map(|_| lo + (hi - lo) * rng.uniform()).collect();
        Tensor { shape: shape.to_vec(), data: Arc::new(data) }
    }

    /// Normal with the given mean and standard deviation from `rng`.
    pub fn normal(shape: &[usize], mean: f32, std: f32, rng: &mut Rng) -> Tensor {
        let data = (0..numel_or_panic(shape)).map(|_| mean + std * rng.normal()).collect();
        Tensor { shape: shape.to_vec(), data: Arc::new(data) }
    }

    /// The length of each axis, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of axes (0 for a scalar).
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements (the product of the shape).
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The shared storage itself (to recognise a tensor seen before).
    pub(crate) fn storage(&self) -> &Arc<Vec<f32>> {
        &self.data
    }

    /// Mutable storage; copies first if another tensor shares it.
    pub fn data_mut(&mut self) -> &mut [f32] {
        Arc::make_mut(&mut self.data).as_mut_slice()
    }

    /// The elements as a `Vec`, without a copy unless the storage is shared.
    pub fn into_vec(self) -> Vec<f32> {
        Arc::try_unwrap(self.data).unwrap_or_else(|shared| (*shared).clone())
    }

    /// The single value of a one-element tensor.
    pub fn item(&self) -> Result<f32> {
        match self.data.as_slice() {
            [x] => Ok(*x),
            _ => Err(Error::Shape { op: "item", lhs: self.shape.clone(), rhs: vec![] }),
        }
    }

    /// A tensor from little-endian f32 bytes (safetensors and torch storages).
    pub fn from_le_bytes(bytes: &[u8], shape: &[usize]) -> Result<Tensor> {
        let data = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
        Tensor::from_vec(data, shape)
    }

    /// Same storage, another shape with the same number of elements.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel_of(shape, "reshape")? != self.numel() {
            return Err(Error::Shape { op: "reshape", lhs: self.shape.clone(), rhs: shape.to_vec() });
        }
        Ok(Tensor { shape: shape.to_vec(), data: self.data.clone() })
    }

    /// (rows, cols) of a 2-d tensor.
    pub fn dims2(&self, op: &'static str) -> Result<(usize, usize)> {
        match self.shape[..] {
            [r, c] => Ok((r, c)),
            _ => Err(Error::Rank { op, expected: 2, shape: self.shape.clone() }),
        }
    }

    /// Fail with both shapes unless `self` and `other` have the same shape.
    pub fn expect_same_shape(&self, other: &Tensor, op: &'static str) -> Result<()> {
        if self.shape != other.shape {
            return Err(Error::Shape { op, lhs: self.shape.clone(), rhs: other.shape.clone() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clones_share_storage_until_written() {
        let a = Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0], &[2, 2]).unwrap();
        let mut b = a.clone();
        assert!(std::ptr::eq(a.data().as_ptr(), b.data().as_ptr()));
        b.data_mut()[0] = 9.0;
        assert_eq!(a.data()[0], 1.0);
        assert_eq!(b.data()[0], 9.0);
    }

    #[test]
    fn shape_errors_show_both_shapes() {
        let a = Tensor::zeros(&[2, 3]);
        let err = a.reshape(&[4, 2]).unwrap_err();
        assert_eq!(err.to_string(), "reshape: shape mismatch: [2, 3] vs [4, 2]");
        let err = Tensor::from_vec(vec![1.0; 5], &[2, 3]).unwrap_err();
        assert!(err.to_string().contains("5 values cannot have shape [2, 3]"), "{err}");
    }

    /// A shape whose element count overflows usize used to wrap to a small
    /// count: `[2^32, 2^32]` "held" 0 values, and every later op trusted it.
    #[test]
    fn shapes_that_overflow_are_errors() {
        let huge = [1usize << 32, 1 << 32];
        let err = Tensor::from_vec(Vec::new(), &huge).unwrap_err();
        assert!(err.to_string().contains("more elements than memory can hold"), "{err}");
        assert!(Tensor::from_le_bytes(&[], &[1 << 62, 4]).is_err());
        assert!(Tensor::zeros(&[0]).reshape(&[1 << 40, 1 << 40]).is_err());
        assert_eq!(Tensor::zeros(&[0]).reshape(&[1 << 40, 1 << 40, 0]).unwrap().numel(), 0);
    }

    #[test]
    fn seeded_constructors_repeat() {
        let a = Tensor::normal(&[3, 4], 0.0, 1.0, &mut Rng::new(5));
        let b = Tensor::normal(&[3, 4], 0.0, 1.0, &mut Rng::new(5));
        assert_eq!(a, b);
        let u = Tensor::uniform(&[1000], 0.0, 1.0, &mut Rng::new(1));
        assert!(u.data().iter().all(|x| (0.0..1.0).contains(x)));
    }
}
