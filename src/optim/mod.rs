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

/// Floats per task of an elementwise update: large enough that a task's
/// start costs nothing beside it, small enough that a layer's weights make
/// tasks for every thread. Fixed, so the split (and every bit of the result,
/// each element being updated on its own) is the same on any thread count.
const UPDATE_CHUNK: usize = 1 << 16;

/// `f` on matching chunks of the state `a`, `b` (each as long as `p`, or
/// empty for a state the update does not keep) and parameters `p`, and of
/// the gradient `g`, on the threads: an optimiser's
/// elementwise update, which streams its operands from memory and so goes
/// faster on every core's share of the bandwidth.
fn update_in_chunks<F>(a: &mut [f32], b: &mut [f32], p: &mut [f32], g: &[f32], f: F)
where
    F: Fn(&mut [f32], &mut [f32], &mut [f32], &[f32]) + Sync,
{
    use rayon::prelude::*;
    // The callers check shapes first; a shorter slice would be zipped short.
    debug_assert!(g.len() == p.len() && [a.len(), b.len()].iter().all(|&n| n == 0 || n == p.len()));
    if p.len() <= UPDATE_CHUNK || crate::parallel::threads() == 1 {
        return f(a, b, p, g);
    }
    // An empty state slice stands for a state the update does not keep.
    fn part(s: &mut [f32], chunks: usize) -> Vec<&mut [f32]> {
        if s.is_empty() {
            (0..chunks).map(|_| &mut [][..]).collect()
        } else {
            s.chunks_mut(UPDATE_CHUNK).collect()
        }
    }
    let chunks = p.len().div_ceil(UPDATE_CHUNK);
    let (a, b) = (part(a, chunks), part(b, chunks));
    a.into_par_iter()
        .zip(b)
        .zip(p.par_chunks_mut(UPDATE_CHUNK))
        .zip(g.par_chunks(UPDATE_CHUNK))
        .for_each(|(((a, b), p), g)| f(a, b, p, g));
}

/// Every gradient against its weight's shape and the shapes of the state
/// `kept(name)` holds for it, before any weight changes: a mismatch (a
/// restored state of another shape, say) then changes nothing.
fn check_shapes<'a>(
    params: &Params,
    grads: &Grads,
    op: &'static str,
    kept: impl Fn(&str) -> Vec<&'a crate::Tensor>,
) -> Result<()> {
    for (name, g) in grads.named() {
        params.get(name)?.expect_same_shape(g, op)?;
        for t in kept(name) {
            t.expect_same_shape(g, op)?;
        }
    }
    Ok(())
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

    /// A weight larger than a chunk is updated on the threads, to the same
    /// bits as on one thread and, for SGD, as the formula element by element;
    /// a state of another shape (from a checkpoint) is an error, not an update
    /// of part of the weight.
    #[test]
    fn updates_split_over_threads_give_the_same_bits() {
        let n = 3 * UPDATE_CHUNK + 5;
        let mut rng = crate::Rng::new(5);
        let w0 = Tensor::uniform(&[n], -1.0, 1.0, &mut rng);
        let target = Var::constant(Tensor::uniform(&[n], -1.0, 1.0, &mut rng));
        let run = |opt: &mut dyn Optimizer| {
            let mut p = Params::new();
            p.insert("w", w0.clone());
            for _ in 0..3 {
                let tape = Tape::new();
                let w = p.var(&tape, "w").unwrap();
                let d = tape.sub(&w, &target).unwrap();
                let grads = tape.backward(&tape.sum(&tape.mul(&d, &d).unwrap())).unwrap();
                drop(tape);
                opt.step(&mut p, &grads).unwrap();
            }
            p
        };
        let kinds: [fn() -> Box<dyn Optimizer>; 2] =
            [|| Box::new(Sgd::new(0.05, 0.8).unwrap()), || Box::new(Adam::new(0.05).unwrap())];
        for make in kinds {
            let split = crate::parallel::in_pool(|| run(make().as_mut()));
            let one = crate::parallel::serial(|| run(make().as_mut()));
            assert_eq!(split, one);
        }
        // SGD by hand: g = 2 (w - t), v = 0.8 v + 0.05 g, w -= v.
        let (mut w, mut v) = (w0.data().to_vec(), vec![0.0f32; n]);
        for _ in 0..3 {
            for ((w, v), t) in w.iter_mut().zip(&mut v).zip(target.value().data()) {
                let g = 2.0 * (*w - t);
                *v = 0.8 * *v + 0.05 * g;
                *w -= *v;
            }
        }
        let split = crate::parallel::in_pool(|| run(&mut Sgd::new(0.05, 0.8).unwrap()));
        assert_eq!(split.get("w").unwrap().data(), &w[..]);
        // A restored velocity of the wrong length.
        let mut wrong = Params::new();
        wrong.insert("velocity/w", Tensor::zeros(&[n - 1]));
        let mut sgd = Sgd::new(0.05, 0.8).unwrap();
        sgd.restore(State { tensors: wrong, steps: 0 }).unwrap();
        let mut p = Params::new();
        p.insert("w", w0.clone());
        let tape = Tape::new();
        let wv = p.var(&tape, "w").unwrap();
        let grads = tape.backward(&tape.sum(&wv)).unwrap();
        drop(tape);
        let before = p.clone();
        assert!(sgd.step(&mut p, &grads).is_err());
        assert_eq!(p, before, "a refused step changes no weight");
    }
}
