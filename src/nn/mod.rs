//! Layers built on the tape. A layer holds no tensors: its parameters live
//! in a [`Params`] store under dotted names (`fc1.weight`), so optimisers,
//! checkpoints and weight files all see the same flat, named set, as in
//! PyTorch's `state_dict`.

pub mod alexnet;
pub mod chain;
mod init;
mod linear;
mod mlp;
mod params;

pub use init::Init;
pub use linear::Linear;
pub use mlp::{Activation, Mlp};
pub use params::Params;
