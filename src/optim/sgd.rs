//! Gradient descent with momentum, in the report's form (section 5):
//! `v = momentum * v + lr * grad; w -= v`. With momentum 0 this is plain
//! gradient descent (section 4).

use super::{Optimizer, State};
use crate::autodiff::Grads;
use crate::error::{Error, Result};
use crate::nn::Params;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Gradient descent with momentum in the report's form,
/// `v = momentum v + lr g; w -= v`. While the learning rate is constant this
/// equals `torch.optim.SGD`'s `v = momentum v + g; w -= lr v`.
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Learning rate.
    pub lr: f32,
    /// Fraction of the previous step kept (0: plain gradient descent).
    pub momentum: f32,
    velocity: BTreeMap<String, Tensor>,
}

impl Sgd {
    /// SGD with learning rate `lr` and `momentum`; an error unless `lr > 0`
    /// and `0 <= momentum < 1`.
    pub fn new(lr: f32, momentum: f32) -> Result<Sgd> {
        if !(lr > 0.0 && lr.is_finite() && (0.0..1.0).contains(&momentum)) {
            return Err(Error::Invalid {
                op: "sgd",
                message: format!("need lr > 0 and 0 <= momentum < 1, got lr {lr}, momentum {momentum}"),
            });
        }
        Ok(Sgd { lr, momentum, velocity: BTreeMap::new() })
    }

    /// The velocity of each parameter (its saved state).
    pub fn velocity(&self) -> &BTreeMap<String, Tensor> {
        &self.velocity
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut Params, grads: &Grads) -> Result<()> {
        super::check_shapes(params, grads, "sgd", |name| self.velocity.get(name).into_iter().collect())?;
        for (name, g) in grads.named() {
            let p = params.get_mut(name)?;
            if self.momentum == 0.0 {
                p.axpy(-self.lr, g)?;
                continue;
            }
            let v = self.velocity.entry(name.to_string()).or_insert_with(|| Tensor::zeros(g.shape()));
            let (momentum, lr) = (self.momentum, self.lr);
            // One pass over each weight's velocity, gradient and value.
            super::update_in_chunks(v.data_mut(), &mut [], p.data_mut(), g.data(), |vs, _, ps, gs| {
                for ((v, p), &g) in vs.iter_mut().zip(ps.iter_mut()).zip(gs) {
                    *v = momentum * *v + lr * g;
                    *p -= *v;
                }
            });
        }
        Ok(())
    }

    fn state(&self) -> State {
        let mut tensors = Params::new();
        for (name, v) in &self.velocity {
            tensors.insert(&format!("velocity/{name}"), v.clone());
        }
        State { tensors, steps: 0 }
    }

    fn restore(&mut self, state: State) -> Result<()> {
        self.velocity = super::tensors_of(&state, "velocity");
        if self.velocity.len() != state.tensors.len() {
            return Err(Error::Invalid { op: "sgd", message: "the saved state is not an SGD optimiser's".into() });
        }
        Ok(())
    }
}
