//! The engine's error type: every failure names the operation and the values
//! that were wrong, so a user can find the line that caused it.

use crate::gemm::GemmError;

pub type Result<T> = std::result::Result<T, Error>;

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    Shape { op: &'static str, lhs: Vec<usize>, rhs: Vec<usize> },
    #[error("{op}: {data} values cannot have shape {shape:?} ({numel} elements)")]
    DataLength { op: &'static str, data: usize, shape: Vec<usize>, numel: usize },
    #[error("{op}: axis {axis} is out of range for shape {shape:?}")]
    Axis { op: &'static str, axis: usize, shape: Vec<usize> },
    #[error("{op}: expected a {expected}-d tensor, got shape {shape:?}")]
    Rank { op: &'static str, expected: usize, shape: Vec<usize> },
    #[error("{op}: tensor is empty (shape {shape:?})")]
    Empty { op: &'static str, shape: Vec<usize> },
    #[error("{op}: {message}")]
    Invalid { op: &'static str, message: String },
    #[error(transparent)]
    Gemm(#[from] GemmError),
}
