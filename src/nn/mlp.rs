//! A multilayer perceptron: linear layers with an activation between them
//! (none after the last; the loss applies softmax).

use super::{Init, Linear, Params};
use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    Relu,
    Tanh,
    Sigmoid,
}

impl Activation {
    pub fn apply(self, tape: &Tape, x: &Var) -> Var {
        match self {
            Activation::Relu => tape.relu(x),
            Activation::Tanh => tape.tanh(x),
            Activation::Sigmoid => tape.sigmoid(x),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    pub layers: Vec<Linear>,
    pub activation: Activation,
}

impl Mlp {
    /// Layers `fc1`, `fc2`, ... between the given widths, e.g. `[1024, 25, 6]`.
    pub fn new(widths: &[usize], activation: Activation) -> Result<Mlp> {
        if widths.len() < 2 || widths.contains(&0) {
            return Err(Error::Invalid {
                op: "mlp",
                message: format!("widths must be at least two positive sizes, got {widths:?}"),
            });
        }
        let layers =
            widths.windows(2).enumerate().map(|(i, w)| Linear::new(&format!("fc{}", i + 1), w[0], w[1])).collect();
        Ok(Mlp { layers, activation })
    }

    pub fn init(&self, params: &mut Params, weight: Init, bias: Init, rng: &mut Rng) {
        for layer in &self.layers {
            layer.init(params, weight, bias, rng);
        }
    }

    /// Logits for `x` (`[batch, inputs]`).
    pub fn forward(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(tape, params, &h)?;
            if i + 1 < self.layers.len() {
                h = self.activation.apply(tape, &h);
            }
        }
        Ok(h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::gradcheck::{gradcheck_params, GradcheckOptions};
    use crate::tensor::Tensor;

    #[test]
    fn mlp_gradients_match_finite_differences() {
        for act in [Activation::Tanh, Activation::Sigmoid, Activation::Relu] {
            let mlp = Mlp::new(&[5, 4, 3], act).unwrap();
            let mut params = Params::new();
            mlp.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(3));
            let x = Var::constant(Tensor::uniform(&[2, 5], -1.0, 1.0, &mut Rng::new(4)));
            let f = |tape: &Tape, p: &Params| mlp.forward(tape, p, &x);
            let opts = GradcheckOptions { atol: 5e-4, rtol: 2e-3, skip_kinks: true, ..Default::default() };
            let report = gradcheck_params(f, &params, &opts).unwrap();
            assert!(report.passed() && report.checked > 30, "{act:?}: {report}");
        }
    }

    #[test]
    fn forward_shapes_and_bad_widths() {
        let mlp = Mlp::new(&[1024, 25, 6], Activation::Relu).unwrap();
        let mut params = Params::new();
        mlp.init(&mut params, Init::Normal { mean: 0.0, std: 1.0 }, Init::Zeros, &mut Rng::new(0));
        assert_eq!(params.get("fc1.weight").unwrap().shape(), &[25, 1024]);
        assert_eq!(params.numel(), 1024 * 25 + 25 + 25 * 6 + 6);
        let x = Var::constant(Tensor::zeros(&[70, 1024]));
        let y = mlp.forward(&Tape::inference(), &params, &x).unwrap();
        assert_eq!(y.shape(), &[70, 6]);
        assert!(Mlp::new(&[3], Activation::Relu).is_err());
        let err = mlp.forward(&Tape::inference(), &params, &Var::constant(Tensor::zeros(&[2, 5]))).unwrap_err();
        assert_eq!(err.to_string(), "matmul: shape mismatch: [2, 5] vs [1024, 25]");
    }
}
