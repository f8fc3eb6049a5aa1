//! A multilayer perceptron: linear layers with an activation between them
//! (none after the last; the loss applies softmax).

use super::{Init, Linear, Params};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::error::{Error, Result};
use crate::tensor::Rng;

/// The nonlinearity between layers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// `max(x, 0)`
    Relu,
    /// `tanh(x)`
    Tanh,
    /// `1 / (1 + e^-x)`
    Sigmoid,
}

impl Activation {
    /// Apply it to `x` on `tape`.
    pub fn apply(self, tape: &Tape, x: &Var) -> Var {
        match self {
            Activation::Relu => tape.relu(x),
            Activation::Tanh => tape.tanh(x),
            Activation::Sigmoid => tape.sigmoid(x),
        }
    }
}

/// A multilayer perceptron: [`Linear`] layers `fc1`, `fc2`, ... with an
/// [`Activation`] between each two. Build with [`Mlp::new`], create the
/// parameters with [`Mlp::init`], train with [`Mlp::loss`].
#[derive(Clone, Debug, PartialEq)]
pub struct Mlp {
    /// The layers, first to last.
    pub layers: Vec<Linear>,
    /// The activation after every layer but the last.
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

    /// Create every layer's weight and bias in `params` with the given
    /// initialisers (PyTorch's default is [`Init::FanIn`] for both).
    pub fn init(&self, params: &mut Params, weight: Init, bias: Init, rng: &mut Rng) {
        for layer in &self.layers {
            layer.init(params, weight, bias, rng);
        }
    }

    /// The activations entering the last layer.
    fn hidden(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for layer in &self.layers[..self.layers.len() - 1] {
            h = self.activation.apply(tape, &layer.forward(tape, params, &h)?);
        }
        Ok(h)
    }

    /// Logits for `x` (`[batch, inputs]`).
    pub fn forward(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let h = self.hidden(tape, params, x)?;
        self.layers.last().expect("at least one layer").forward(tape, params, &h)
    }

    /// Softmax cross-entropy of the logits against `targets`, with the last
    /// layer and the loss fused (one pass over its input; see
    /// `autodiff/fused.rs`).
    pub fn loss(&self, tape: &Tape, params: &Params, x: &Var, targets: &Targets, reduction: Reduction) -> Result<Var> {
        let h = self.hidden(tape, params, x)?;
        let last = self.layers.last().expect("at least one layer");
        let (w, b) = (params.var(tape, &last.weight_name())?, params.var(tape, &last.bias_name())?);
        tape.linear_cross_entropy(&h, &w, &b, targets, reduction)
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
    fn fused_loss_matches_forward_then_loss() {
        let mlp = Mlp::new(&[6, 5, 4], Activation::Relu).unwrap();
        let mut params = Params::new();
        mlp.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(1));
        let x = Var::constant(Tensor::uniform(&[300, 6], -1.0, 1.0, &mut Rng::new(2)));
        let y = Targets::Classes((0..300).map(|i| i % 4).collect());
        let grads_of = |fused: bool| {
            let tape = Tape::new();
            let loss = if fused {
                mlp.loss(&tape, &params, &x, &y, Reduction::Mean).unwrap()
            } else {
                tape.softmax_cross_entropy(&mlp.forward(&tape, &params, &x).unwrap(), &y, Reduction::Mean).unwrap()
            };
            let g = tape.backward(&loss).unwrap();
            let named: Vec<(String, Tensor)> = g.named().map(|(n, t)| (n.to_string(), t.clone())).collect();
            (loss.value().item().unwrap(), named)
        };
        let ((l1, g1), (l2, g2)) = (grads_of(true), grads_of(false));
        assert!((l1 - l2).abs() < 1e-5);
        assert_eq!(g1.len(), 4);
        for ((n1, a), (n2, b)) in g1.iter().zip(&g2) {
            assert_eq!(n1, n2);
            for (x, y) in a.data().iter().zip(b.data()) {
                assert!((x - y).abs() < 1e-5, "{n1}: {x} vs {y}");
            }
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
