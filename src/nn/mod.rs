//! Layers built on the tape. A layer holds no tensors: its parameters live
//! in a [`Params`] store under dotted names (`fc1.weight`), so optimisers,
//! checkpoints and weight files all see the same flat, named set, as in
//! PyTorch's `state_dict`.

pub mod alexnet;
pub mod chain;
pub(crate) mod dropout;
pub mod footprint;
pub mod infer;
mod init;
pub mod layer;
mod linear;
mod mlp;
pub mod presets;
pub mod sequential;
pub mod timing;

pub use crate::params::Params;
pub use init::Init;
pub use layer::{Layer, Window2d};
pub use linear::Linear;
pub use mlp::{Activation, Mlp};
pub use sequential::{LayerSpec, Sequential};
