//! A fully connected layer, `y = x W^T + b`, with PyTorch's weight layout
//! `[out, in]` so that checkpoints load as they are. The transpose is read in
//! place by the GEMM.

use super::{Init, Params};
use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::gemm::Transpose;
use crate::tensor::Rng;

/// A fully connected layer `y = x W^T + b` whose weight `[outputs, inputs]`
/// and bias `[outputs]` live in [`Params`] under `{name}.weight` and
/// `{name}.bias`.
#[derive(Clone, Debug, PartialEq)]
pub struct Linear {
    /// Parameter prefix: the layer owns `{name}.weight` and `{name}.bias`.
    pub name: String,
    /// Features in.
    pub inputs: usize,
    /// Features out.
    pub outputs: usize,
}

impl Linear {
    /// The layer `name` (its parameters' prefix) from `inputs` to `outputs`
    /// features; call [`Linear::init`] to create its parameters.
    pub fn new(name: &str, inputs: usize, outputs: usize) -> Linear {
        Linear { name: name.to_string(), inputs, outputs }
    }

    /// `{name}.weight`.
    pub fn weight_name(&self) -> String {
        format!("{}.weight", self.name)
    }

    /// `{name}.bias`.
    pub fn bias_name(&self) -> String {
        format!("{}.bias", self.name)
    }

    /// Create the layer's parameters in `params`.
    pub fn init(&self, params: &mut Params, weight: Init, bias: Init, rng: &mut Rng) {
        params.insert(&self.weight_name(), weight.tensor(&[self.outputs, self.inputs], self.inputs, rng));
        params.insert(&self.bias_name(), bias.tensor(&[self.outputs], self.inputs, rng));
    }

    /// `x` is `[batch, inputs]`; the result is `[batch, outputs]`.
    pub fn forward(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let w = params.var(tape, &self.weight_name())?;
        let b = params.var(tape, &self.bias_name())?;
        let xw = tape.matmul_t(x, Transpose::No, &w, Transpose::Yes)?;
        tape.add(&xw, &b)
    }
}
