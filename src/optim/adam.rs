//! Adam (Kingma & Ba, 2015), with PyTorch's defaults and bias correction:
//! `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`,
//! `w -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps)`.

use super::{Optimizer, State};
use crate::autodiff::Grads;
use crate::error::{Error, Result};
use crate::nn::Params;
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Adam with bias correction, as `torch.optim.Adam` (no weight decay).
/// Build with [`Adam::new`], then call [`Optimizer::step`] after each
/// backward pass.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    /// Decay of the first moment (the gradient's running mean).
    pub beta1: f32,
    /// Decay of the second moment (the squared gradient's running mean).
    pub beta2: f32,
    /// Added to the denominator so a zero second moment divides safely.
    pub eps: f32,
    /// Steps taken so far.
    pub t: u64,
    moments: BTreeMap<String, (Tensor, Tensor)>,
}

impl Adam {
    /// Adam with learning rate `lr` and PyTorch's defaults (betas 0.9 and
    /// 0.999, eps 1e-8); an error unless `lr` is positive and finite.
    pub fn new(lr: f32) -> Result<Adam> {
        Adam::with(lr, 0.9, 0.999, 1e-8)
    }

    /// Adam with every setting given; an error naming them unless
    /// `lr > 0`, `0 <= beta < 1` and `eps > 0`.
    pub fn with(lr: f32, beta1: f32, beta2: f32, eps: f32) -> Result<Adam> {
        let ok = lr > 0.0 && lr.is_finite() && (0.0..1.0).contains(&beta1) && (0.0..1.0).contains(&beta2) && eps > 0.0;
        if !ok {
            return Err(Error::Invalid {
                op: "adam",
                message: format!(
                    "need lr > 0, 0 <= betas < 1, eps > 0; got lr {lr}, betas ({beta1}, {beta2}), eps {eps}"
                ),
            });
        }
        Ok(Adam { lr, beta1, beta2, eps, t: 0, moments: BTreeMap::new() })
    }

    /// First and second moments of each parameter (its saved state).
    pub fn moments(&self) -> &BTreeMap<String, (Tensor, Tensor)> {
        &self.moments
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut Params, grads: &Grads) -> Result<()> {
        // Before the step count too: a refused step changes nothing.
        super::check_shapes(params, grads, "adam", |name| self.moments.get(name).map_or(vec![], |(m, v)| vec![m, v]))?;
        self.t += 1;
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t as i32);
        let c2 = 1.0 - b2.powi(self.t as i32);
        let step = self.lr / c1;
        let inv_sqrt_c2 = 1.0 / c2.sqrt();
        for (name, g) in grads.named() {
            let p = params.get_mut(name)?;
            let (m, v) = self
                .moments
                .entry(name.to_string())
                .or_insert_with(|| (Tensor::zeros(g.shape()), Tensor::zeros(g.shape())));
            let (ms, vs, ps) = (m.data_mut(), v.data_mut(), p.data_mut());
            let k = [b1, b2, step, inv_sqrt_c2, self.eps];
            super::update_in_chunks(ms, vs, ps, g.data(), |ms, vs, ps, gs| update(ms, vs, ps, gs, k));
        }
        Ok(())
    }

    fn state(&self) -> State {
        let mut tensors = Params::new();
        for (name, (m, v)) in &self.moments {
            tensors.insert(&format!("m/{name}"), m.clone());
            tensors.insert(&format!("v/{name}"), v.clone());
        }
        State { tensors, steps: self.t }
    }

    fn restore(&mut self, state: State) -> Result<()> {
        let (mut m, mut v) = (super::tensors_of(&state, "m"), super::tensors_of(&state, "v"));
        let same_names = m.len() == v.len() && m.keys().eq(v.keys()) && 2 * m.len() == state.tensors.len();
        if !same_names {
            return Err(Error::Invalid { op: "adam", message: "the saved state is not an Adam optimiser's".into() });
        }
        self.moments = m
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .into_iter()
            .map(|n| {
                let pair = (m.remove(&n).expect("listed"), v.remove(&n).expect("same names"));
                (n, pair)
            })
            .collect();
        self.t = state.steps;
        Ok(())
    }
}

/// One Adam update of a tensor. Written as a plain loop that LLVM
/// vectorises; compiled again with AVX-512 or AVX2 enabled and picked at run
/// time, since the baseline build only has 4-wide SSE (and the division and
/// square root per weight dominate a small network's step).
fn update(ms: &mut [f32], vs: &mut [f32], ps: &mut [f32], gs: &[f32], k: [f32; 5]) {
    #[inline(always)]
    fn body(ms: &mut [f32], vs: &mut [f32], ps: &mut [f32], gs: &[f32], [b1, b2, step, inv_sqrt_c2, eps]: [f32; 5]) {
        for (((m, v), p), &g) in ms.iter_mut().zip(vs.iter_mut()).zip(ps.iter_mut()).zip(gs) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() * inv_sqrt_c2 + eps);
        }
    }
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f")]
        unsafe fn avx512(ms: &mut [f32], vs: &mut [f32], ps: &mut [f32], gs: &[f32], k: [f32; 5]) {
            body(ms, vs, ps, gs, k)
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2(ms: &mut [f32], vs: &mut [f32], ps: &mut [f32], gs: &[f32], k: [f32; 5]) {
            body(ms, vs, ps, gs, k)
        }
        // Safety: each is called only where the CPU has its features.
        if is_x86_feature_detected!("avx512f") {
            return unsafe { avx512(ms, vs, ps, gs, k) };
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            return unsafe { avx2(ms, vs, ps, gs, k) };
        }
    }
    body(ms, vs, ps, gs, k)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::Tape;

    /// Both optimisers reach the minimum of a convex quadratic.
    #[test]
    fn optimisers_minimise_a_quadratic() {
        let target = Tensor::from_vec(vec![1.0, -2.0, 3.0], &[3]).unwrap();
        let mut optimisers: Vec<Box<dyn Optimizer>> = vec![
            Box::new(crate::optim::Sgd::new(0.1, 0.0).unwrap()),
            Box::new(crate::optim::Sgd::new(0.05, 0.8).unwrap()),
            Box::new(Adam::new(0.05).unwrap()),
        ];
        for opt in optimisers.iter_mut() {
            let mut params = Params::new();
            params.insert("w", Tensor::zeros(&[3]));
            for _ in 0..500 {
                let tape = Tape::new();
                let w = params.var(&tape, "w").unwrap();
                let d = tape.sub(&w, &crate::autodiff::Var::constant(target.clone())).unwrap();
                let loss = tape.sum(&tape.mul(&d, &d).unwrap());
                let grads = tape.backward(&loss).unwrap();
                opt.step(&mut params, &grads).unwrap();
            }
            for (got, want) in params.get("w").unwrap().data().iter().zip(target.data()) {
                assert!((got - want).abs() < 1e-2, "{got} vs {want}");
            }
        }
    }

    #[test]
    fn adam_first_step_moves_each_weight_by_lr() {
        // With bias correction the first step is lr * sign(g).
        let mut params = Params::new();
        params.insert("w", Tensor::from_vec(vec![0.0, 0.0], &[2]).unwrap());
        let tape = Tape::new();
        let w = params.var(&tape, "w").unwrap();
        let c = crate::autodiff::Var::constant(Tensor::from_vec(vec![3.0, -0.01], &[2]).unwrap());
        let grads = tape.backward(&tape.sum(&tape.mul(&w, &c).unwrap())).unwrap();
        let mut adam = Adam::new(0.1).unwrap();
        adam.step(&mut params, &grads).unwrap();
        let w = params.get("w").unwrap().data();
        assert!((w[0] + 0.1).abs() < 1e-5 && (w[1] - 0.1).abs() < 1e-4, "{w:?}");
        assert!(Adam::new(-1.0).is_err());
    }
}
