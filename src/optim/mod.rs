//! Optimisers: update [`Params`] from [`Grads`], by parameter name.
//!
//! Each keeps its per-parameter state (velocity, moments) under the same
//! names, so state can be saved and restored beside the parameters.

mod adam;
mod sgd;

pub use adam::Adam;
pub use sgd::Sgd;

use crate::autodiff::Grads;
use crate::error::Result;
use crate::nn::Params;

pub trait Optimizer {
    /// Apply one update to every parameter that has a gradient.
    fn step(&mut self, params: &mut Params, grads: &Grads) -> Result<()>;
}
