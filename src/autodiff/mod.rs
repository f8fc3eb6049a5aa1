//! Reverse-mode automatic differentiation on a tape.
//!
//! A [`Tape`] records each operation on tensors that need gradients as a
//! node: which op it was, which nodes fed it, and what its backward rule
//! must remember (`op.rs`). The forward functions are in `ops.rs`; every
//! backward rule is in one `match` in `backward.rs`, which walks the tape in
//! reverse and **adds** each node's contribution into its parents' gradients,
//! so a value used twice (fan-out) gets the sum of both paths.
//!
//! An inference tape ([`Tape::inference`]) records nothing: the same model
//! code runs with no tape cost. [`gradcheck`] compares the tape's gradients
//! with central finite differences.

mod backward;
mod conv;
mod fused;
pub mod gradcheck;
mod op;
mod ops;
mod prepacked;
mod tape;

pub use backward::Grads;
pub use gradcheck::{gradcheck, gradcheck_params, GradEntry, GradcheckOptions, GradcheckReport};
pub use op::{Reduction, Targets};
pub use tape::{NodeId, Tape, Var};

#[cfg(test)]
mod tests;
