//! The engine's error type: every failure names the operation and the values
//! that were wrong, so a user can find the line that caused it.

use crate::gemm::GemmError;

/// The engine's `Result`: an [`Error`] on failure.
pub type Result<T> = std::result::Result<T, Error>;

/// Why a tensor, tape, layer or optimiser operation failed. Every variant
/// names the operation (`op`, e.g. `"matmul"`) and the values that were
/// wrong; its `Display` text is one line a user can act on, such as
/// `matmul: shape mismatch: [2, 5] vs [1024, 25]`.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum Error {
    /// Two operands whose shapes do not fit together.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// The left (or only) operand's shape.
        lhs: Vec<usize>,
        /// The right operand's shape, or the shape asked for.
        rhs: Vec<usize>,
    },
    /// A flat buffer whose length is not the element count of its shape.
    #[error("{op}: {data} values cannot have shape {shape:?} ({numel} elements)")]
    DataLength {
        /// The operation.
        op: &'static str,
        /// The buffer's length.
        data: usize,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The element count of `shape`.
        numel: usize,
    },
    /// An axis past the tensor's rank.
    #[error("{op}: axis {axis} is out of range for shape {shape:?}")]
    Axis {
        /// The operation.
        op: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// A tensor of the wrong rank (number of axes).
    #[error("{op}: expected a {expected}-d tensor, got shape {shape:?}")]
    Rank {
        /// The operation.
        op: &'static str,
        /// The rank the operation needs.
        expected: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// A tensor with no elements where one is needed (a mean, an argmax).
    #[error("{op}: tensor is empty (shape {shape:?})")]
    Empty {
        /// The operation.
        op: &'static str,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// Any other bad argument or state, explained in `message`.
    #[error("{op}: {message}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the values involved.
        message: String,
    },
    /// A matrix product refused its operands (see [`GemmError`]).
    #[error(transparent)]
    Gemm(#[from] GemmError),
}
