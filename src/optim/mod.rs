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

/// Updates [`Params`] in place from the gradients of one backward pass,
/// matching them by name. [`Sgd`] and [`Adam`] implement it.
pub trait Optimizer {
    /// Apply one update to every parameter that has a gradient.
    fn step(&mut self, params: &mut Params, grads: &Grads) -> Result<()>;

    /// Everything a later [`Optimizer::restore`] needs to continue exactly:
    /// named tensors (`velocity/<param>`, `m/<param>`, ...) and a step count.
    fn state(&self) -> State;

    /// Continue from a saved [`State`] of an optimiser of the same kind.
    fn restore(&mut self, state: State) -> Result<()>;
}

/// An optimiser's saved state (see [`Optimizer::state`]).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct State {
    /// Per-parameter state tensors, named `<kind>/<param>`.
    pub tensors: Params,
    /// Steps taken (Adam's bias correction needs it; 0 for SGD).
    pub steps: u64,
}

/// The tensors of `state` named `<kind>/<param>`, by parameter name.
fn tensors_of(state: &State, kind: &str) -> std::collections::BTreeMap<String, crate::Tensor> {
    let prefix = format!("{kind}/");
    state.tensors.iter().filter_map(|(n, t)| n.strip_prefix(&prefix).map(|p| (p.to_string(), t.clone()))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::{Tape, Var};
    use crate::Tensor;

    /// One step on `sum((w - t)^2)` for a fixed target.
    fn step(opt: &mut dyn Optimizer, params: &mut Params) {
        let tape = Tape::new();
        let w = params.var(&tape, "w").unwrap();
        let target = Var::constant(Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3]).unwrap());
        let d = tape.sub(&w, &target).unwrap();
        let grads = tape.backward(&tape.sum(&tape.mul(&d, &d).unwrap())).unwrap();
        tape.clear();
        opt.step(params, &grads).unwrap();
    }

    /// Six steps straight, or three, a save, a fresh optimiser restored, and
    /// three more, end at the same weights, bit for bit.
    #[test]
    fn a_restored_state_continues_exactly() {
        let kinds: [fn() -> Box<dyn Optimizer>; 2] =
            [|| Box::new(Sgd::new(0.05, 0.8).unwrap()), || Box::new(Adam::new(0.05).unwrap())];
        for make in kinds {
            let start = || {
                let mut p = Params::new();
                p.insert("w", Tensor::zeros(&[3]));
                p
            };
            let (mut straight, mut opt) = (start(), make());
            (0..6).for_each(|_| step(opt.as_mut(), &mut straight));
            let (mut resumed, mut first) = (start(), make());
            (0..3).for_each(|_| step(first.as_mut(), &mut resumed));
            let mut second = make();
            second.restore(first.state()).unwrap();
            (0..3).for_each(|_| step(second.as_mut(), &mut resumed));
            assert_eq!(straight, resumed);
        }
        // A state of the other kind is refused.
        assert!(Sgd::new(0.1, 0.5).unwrap().restore(Adam::new(0.1).unwrap().state()).is_ok());
        let mut adam = Adam::new(0.1).unwrap();
        let mut p = Params::new();
        p.insert("w", Tensor::zeros(&[3]));
        step(&mut adam, &mut p);
        assert!(Sgd::new(0.1, 0.5).unwrap().restore(adam.state()).is_err());
    }
}
