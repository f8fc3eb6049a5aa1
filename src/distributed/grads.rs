//! One data-parallel training step: this rank's slice of the mini-batch
//! forward and backward, the gradients summed over the ranks in rank order
//! ([`super::sum_in_rank_order`]), and the result handed to the optimiser
//! as ordinary [`Grads`], the same bits on every rank so every rank applies
//! the same update.
//!
//! The loss of each slice is summed, not averaged: the mean over the global
//! batch is the summed gradient times 1/B, applied after the sum. (A mean
//! per slice would weigh unequal slices wrongly.) Against a single-process
//! step on the same batch the result differs only by the order of the
//! additions over the batch's rows (the GEMM adds a slice's rows, then the
//! ranks' partial sums are added), which is why the weights agree within a
//! tolerance rather than bit for bit; see the README.

use crate::autodiff::{Grads, Reduction, Tape, Targets, Var};
use crate::nn::{Params, Sequential};
use crate::tensor::{Rng, Tensor};
use crate::{Error, Result};

fn invalid(message: String) -> Error {
    Error::Invalid { op: "data-parallel step", message }
}

/// The loss over the whole batch `x`, `y` (summed over the ranks) and its
/// gradient, reduced as `reduction` says, from this rank's slice.
pub fn step(
    tape: &Tape,
    net: &Sequential,
    params: &Params,
    x: &Var,
    y: &Targets,
    reduction: Reduction,
    dropout: Option<&mut Rng>,
) -> Result<(f64, Grads)> {
    let (rank, size) = (super::rank(), super::size());
    let batch = x.value().shape().first().copied().unwrap_or(0);
    if batch < size {
        return Err(invalid(format!(
            "a mini-batch of {batch} examples cannot be split over {size} ranks (train.batch_size must be at least \
             the number of ranks)"
        )));
    }
    let part = super::slice(batch, rank, size);
    let xs = Var::constant(super::rows(x.value(), part.clone())?);
    let ys = match y {
        Targets::Classes(c) => Targets::Classes(c[part.clone()].to_vec()),
        Targets::Probabilities(p) => Targets::Probabilities(super::rows(p, part.clone())?),
    };
    let around = (part.start, batch - part.end);
    let loss =
        crate::nn::dropout::with_rows_around(around, || net.loss(tape, params, &xs, &ys, Reduction::Sum, dropout))?;
    let mut total = [loss.value().item()? as f64];
    let grads = tape.backward(&loss)?;
    tape.clear();
    // Every gradient, in the parameters' (sorted) order, as one buffer.
    let named: Vec<(&str, &Tensor)> = params.iter().filter_map(|(n, _)| Some((n, grads.by_name(n)?))).collect();
    let mut flat: Vec<f32> = Vec::with_capacity(named.iter().map(|(_, g)| g.numel()).sum());
    for (_, g) in &named {
        flat.extend_from_slice(g.data());
    }
    super::sum_in_rank_order(&mut flat);
    super::sum_in_rank_order(&mut total);
    let scale = match reduction {
        Reduction::Sum => 1.0,
        Reduction::Mean => 1.0 / batch as f32,
    };
    if scale != 1.0 {
        flat.iter_mut().for_each(|g| *g *= scale);
        total[0] /= batch as f64;
    }
    let mut at = 0;
    let mut summed = Vec::with_capacity(named.len());
    for (name, g) in named {
        let n = g.numel();
        summed.push((name.to_string(), Tensor::from_vec(flat[at..at + n].to_vec(), g.shape())?));
        at += n;
    }
    Ok((total[0], Grads::from_named(summed)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In one process the step is the plain step: same loss, and gradients
    /// equal up to where the 1/B is applied (exact for a power-of-two B).
    #[test]
    fn one_rank_step_is_the_plain_step() {
        let specs = crate::nn::presets::mlp(&[5], 3, crate::nn::Activation::Tanh);
        let net = Sequential::new(&[6], &specs).unwrap();
        let mut params = Params::new();
        let uniform = crate::nn::Init::Uniform { lo: -0.5, hi: 0.5 };
        net.init(&mut params, uniform, crate::nn::Init::Zeros, &mut Rng::new(1));
        let x = Var::constant(Tensor::from_vec((0..48).map(|i| (i as f32 * 0.37).sin()).collect(), &[8, 6]).unwrap());
        let y = Targets::Classes(vec![0, 1, 2, 0, 1, 2, 0, 1]);
        let tape = Tape::new();
        let loss = net.loss(&tape, &params, &x, &y, Reduction::Mean, None).unwrap();
        let plain_loss = loss.value().item().unwrap() as f64;
        let plain = tape.backward(&loss).unwrap();
        tape.clear();
        let (l, g) = step(&tape, &net, &params, &x, &y, Reduction::Mean, None).unwrap();
        assert!((l - plain_loss).abs() <= 1e-6 * plain_loss.abs(), "{l} vs {plain_loss}");
        let mut n = 0;
        for (name, p) in plain.named() {
            assert_eq!(g.by_name(name).unwrap().data(), p.data(), "{name}");
            n += 1;
        }
        assert_eq!(n, params.len());
    }
}
