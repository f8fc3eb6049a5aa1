//! The report's cost for the linear model, in f64, for checks and surfaces.
//!
//! `C(W, b) = -sum_n log softmax(W x_n + b)[y_n]`. The logits of every
//! example are computed once; changing a few weights then changes only a few
//! logits per example, so the cost at a perturbed point costs O(N * classes),
//! not a full product. f64 throughout: central differences of a sum over
//! 60000 examples need the precision (in f32 the rounding of the sum alone
//! exceeds the differences being measured).

use crate::data::mnist::Split;
use crate::nn::Params;
use crate::tensor::Tensor;
use rayon::prelude::*;

pub(crate) struct Cost64<'a> {
    split: &'a Split,
    classes: usize,
    /// `[n, classes]` logits at the base point.
    logits: Vec<f64>,
}

/// A change of one parameter: weight (class j, input i) or bias (i = None).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Delta {
    pub class: usize,
    pub input: Option<usize>,
    pub by: f64,
}

impl<'a> Cost64<'a> {
    /// Logits of every example of `split` under `weight` `[classes, inputs]`
    /// and `bias` `[classes]` (from `params`).
    pub fn new(split: &'a Split, params: &Params, weight: &str, bias: &str) -> crate::Result<Cost64<'a>> {
        let w = params.get(weight)?;
        let b = params.get(bias)?.data().to_vec();
        let (classes, inputs) = w.dims2("cost64")?;
        let x = split.images.data();
        let wd = w.data();
        let logits: Vec<f64> = (0..split.len())
            .into_par_iter()
            .flat_map_iter(|n| {
                let row = &x[n * inputs..(n + 1) * inputs];
                let b = &b;
                (0..classes).map(move |j| {
                    let wj = &wd[j * inputs..(j + 1) * inputs];
                    b[j] as f64 + row.iter().zip(wj).map(|(&a, &w)| a as f64 * w as f64).sum::<f64>()
                })
            })
            .collect();
        Ok(Cost64 { split, classes, logits })
    }

    fn x(&self, n: usize, i: usize) -> f64 {
        let inputs = self.split.images.shape()[1];
        self.split.images.data()[n * inputs + i] as f64
    }

    /// Example `n`'s logits with `deltas` applied, and their maximum.
    fn logits_with(&self, n: usize, deltas: &[Delta]) -> (Vec<f64>, f64) {
        let mut z: Vec<f64> = self.logits[n * self.classes..(n + 1) * self.classes].to_vec();
        for d in deltas {
            z[d.class] += d.by * d.input.map_or(1.0, |i| self.x(n, i));
        }
        let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        (z, max)
    }

    /// The cost with `deltas` added to the base parameters.
    pub fn cost(&self, deltas: &[Delta]) -> f64 {
        (0..self.split.len())
            .into_par_iter()
            .map(|n| {
                let (z, max) = self.logits_with(n, deltas);
                let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
                lse - z[self.split.labels[n]]
            })
            .sum()
    }

    /// Exact gradient of the cost with respect to the parameters `at`
    /// (`by` ignored), with `deltas` applied: `sum_n (p_nj - y_nj) x_ni`.
    pub fn grad(&self, deltas: &[Delta], at: &[Delta]) -> Vec<f64> {
        (0..self.split.len())
            .into_par_iter()
            .map(|n| {
                let (z, max) = self.logits_with(n, deltas);
                let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
                at.iter()
                    .map(|d| {
                        let p = (z[d.class] - max).exp() / sum;
                        let y = f64::from(u8::from(self.split.labels[n] == d.class));
                        (p - y) * d.input.map_or(1.0, |i| self.x(n, i))
                    })
                    .collect::<Vec<f64>>()
            })
            .reduce(|| vec![0.0; at.len()], |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect())
    }
}

/// Summed cross-entropy of `logits` against `labels`, in f64.
pub(crate) fn cross_entropy64(logits: &Tensor, labels: &[usize]) -> f64 {
    let classes = logits.numel() / labels.len().max(1);
    logits
        .data()
        .chunks(classes)
        .zip(labels)
        .map(|(z, &y)| {
            let max = z.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            max + z.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln() - z[y] as f64
        })
        .sum()
}
