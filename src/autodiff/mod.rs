//! Reverse-mode automatic differentiation on a tape.
//!
//! # The idea
//!
//! Forward: each op on a [`Var`] computes its value at once and, when an
//! input needs a gradient, appends a node to the [`Tape`]: which op it was,
//! which nodes fed it, and what its backward rule must remember (an input, or
//! the output: `exp` keeps `exp(x)`). So the tape is in execution order, and
//! every node comes after the nodes it used.
//!
//! Backward: [`Tape::backward`] gives the scalar loss the gradient 1 and walks
//! the nodes from the loss back to the first. When the walk reaches a node,
//! everything that used its value has been visited, so its gradient is
//! complete; its rule turns that output gradient into gradients for its
//! parents and **adds** them to what the parents already hold, so a value
//! used twice (fan-out) gets the sum of both paths. The recording order is a
//! topological order: no graph search is needed. The leaves' gradients come
//! back as [`Grads`], by `Var` ([`Grads::get`]) or by parameter name
//! ([`Grads::by_name`], for leaves made with [`Tape::param`]).
//!
//! # Where it is
//!
//! The tape and `Var` are in `tape.rs`; what each node remembers in `op.rs`,
//! one enum variant per primitive; the forward methods in `ops.rs`
//! ([`Tape::matmul`], [`Tape::add`], [`Tape::relu`], [`Tape::softmax_cross_entropy`], ...),
//! `conv_ops.rs` ([`Tape::conv2d`], [`Tape::max_pool2d`], [`Tape::dropout`]) and
//! `fused.rs` ([`Tape::linear_cross_entropy`]: a last layer and its loss in
//! one pass); and **every backward rule** in one `match` in `backward.rs`.
//!
//! An inference tape ([`Tape::inference`]) records nothing: the same model
//! code runs with no tape cost. [`gradcheck()`] compares the tape's gradients
//! with central finite differences (`examples/custom_op.rs` composes a new op
//! from these primitives and checks it).

mod backward;
mod conv_ops;
mod fused;
pub mod gradcheck;
mod op;
mod ops;
mod tape;

pub use backward::Grads;
pub use gradcheck::{gradcheck, gradcheck_params, GradEntry, GradcheckOptions, GradcheckReport};
pub use op::{Reduction, Targets};
pub use tape::{NodeId, Tape, Var};

#[cfg(test)]
mod tests;
