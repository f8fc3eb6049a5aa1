//! Report part 7: a chain of N fully connected layers of K neurons each, and
//! three ways to get the gradient of its cost with respect to every weight.
//!
//! The network is the one the report analyses: K inputs, N weight matrices
//! `W[n]` of K x K (layer n-1 to layer n, no biases), tanh after every layer
//! but the last, softmax cross-entropy (summed) over a batch of K samples, so
//! that every layer's work is a K x K x K product.
//!
//! - [`Chain::grad_paths`]: the naive method. The derivative of the cost with
//!   respect to one weight is the sum, over every path from that weight to the
//!   cost, of the product of the local derivatives along the path, computed
//!   from the cached forward values and recomputed from scratch for every
//!   weight: O(K^(N-n)) per weight of layer n, O(K^(N+2)) in all for a batch
//!   of K. Reusing the per-neuron sums between weights is exactly what
//!   backpropagation adds.
//! - [`Chain::grad_tape`]: the engine's reverse-mode tape, O(N K^3).
//! - [`Chain::grad_finite`]: central differences, two forward passes per
//!   weight, O(N^2 K^5).

use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::error::Result;
use crate::tensor::{Rng, Tensor};

/// A chain network with its batch.
#[derive(Clone, Debug)]
pub struct Chain {
    /// Layers.
    pub depth: usize,
    /// Units per layer (and samples in the batch).
    pub width: usize,
    /// `depth` matrices, each `[width, width]` row-major, `[from][to]`.
    pub weights: Vec<Vec<f64>>,
    /// The batch, `[width, width]`: `width` samples of `width` inputs.
    pub x: Vec<f64>,
    /// The batch's classes.
    pub labels: Vec<usize>,
}

/// Pre-activations `a[n]` and activations `h[n]` of every layer, `[batch, K]`.
struct Cache {
    a: Vec<Vec<f64>>,
    h: Vec<Vec<f64>>,
}

impl Chain {
    /// Random weights N(0, 1/K) (so activations neither vanish nor saturate),
    /// inputs U[-1, 1), random labels.
    pub fn random(depth: usize, width: usize, seed: u64) -> Chain {
        let mut rng = Rng::new(seed);
        let s = 1.0 / (width as f64).sqrt();
        let weights = (0..depth).map(|_| (0..width * width).map(|_| s * rng.normal() as f64).collect()).collect();
        let x = (0..width * width).map(|_| 2.0 * rng.uniform() as f64 - 1.0).collect();
        let labels = (0..width).map(|_| rng.below(width)).collect();
        Chain { depth, width, weights, x, labels }
    }

    fn forward(&self) -> Cache {
        let k = self.width;
        let mut h = vec![self.x.clone()];
        let mut a = vec![Vec::new()];
        for n in 1..=self.depth {
            let w = &self.weights[n - 1];
            let prev = &h[n - 1];
            let mut z = vec![0.0; k * k];
            for s in 0..k {
                for j in 0..k {
                    z[s * k + j] = (0..k).map(|i| prev[s * k + i] * w[i * k + j]).sum();
                }
            }
            let act = if n < self.depth { z.iter().map(|v| v.tanh()).collect() } else { z.clone() };
            a.push(z);
            h.push(act);
        }
        Cache { a, h }
    }

    /// The summed cross-entropy of the batch.
    pub fn loss(&self) -> f64 {
        let k = self.width;
        let logits = &self.forward().h[self.depth];
        (0..k)
            .map(|s| {
                let row = &logits[s * k..(s + 1) * k];
                let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                max + row.iter().map(|v| (v - max).exp()).sum::<f64>().ln() - row[self.labels[s]]
            })
            .sum()
    }

    /// d cost / d a[N] for sample `s`: softmax minus the one-hot label.
    fn output_delta(&self, c: &Cache, s: usize) -> Vec<f64> {
        let k = self.width;
        let row = &c.a[self.depth][s * k..(s + 1) * k];
        let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let sum: f64 = row.iter().map(|v| (v - max).exp()).sum();
        (0..k).map(|q| (row[q] - max).exp() / sum - f64::from(u8::from(q == self.labels[s]))).collect()
    }

    /// Sum over every path from neuron `q` of layer `n` to the cost of the
    /// product of local derivatives: d cost / d a[n][q], recomputed with no
    /// memory of earlier calls (K^(N-n) terms).
    fn paths(&self, c: &Cache, out: &[f64], n: usize, q: usize, s: usize) -> f64 {
        if n == self.depth {
            return out[q];
        }
        let k = self.width;
        let slope = 1.0 - c.h[n][s * k + q].powi(2); // tanh'
        let w = &self.weights[n]; // W[n+1], from layer n to n+1
        slope * (0..k).map(|r| w[q * k + r] * self.paths(c, out, n + 1, r, s)).sum::<f64>()
    }

    /// The naive gradient: for every weight, every path, from scratch.
    pub fn grad_paths(&self) -> Vec<Vec<f64>> {
        let k = self.width;
        let c = self.forward();
        let outs: Vec<Vec<f64>> = (0..k).map(|s| self.output_delta(&c, s)).collect();
        (1..=self.depth)
            .map(|n| {
                let mut g = vec![0.0; k * k];
                for i in 0..k {
                    for j in 0..k {
                        // d cost / d W[n][i][j] = sum_s h[n-1][s][i] * (paths from a[n][j]).
                        g[i * k + j] = (0..k).map(|s| c.h[n - 1][s * k + i] * self.paths(&c, &outs[s], n, j, s)).sum();
                    }
                }
                g
            })
            .collect()
    }

    /// Central differences of [`Chain::loss`] in f64, step `eps`.
    pub fn grad_finite(&self, eps: f64) -> Vec<Vec<f64>> {
        let mut net = self.clone();
        (0..self.depth)
            .map(|n| {
                (0..self.width * self.width)
                    .map(|e| {
                        let w0 = net.weights[n][e];
                        net.weights[n][e] = w0 + eps;
                        let up = net.loss();
                        net.weights[n][e] = w0 - eps;
                        let down = net.loss();
                        net.weights[n][e] = w0;
                        (up - down) / (2.0 * eps)
                    })
                    .collect()
            })
            .collect()
    }

    /// The engine's gradient (f32, reverse mode on the tape).
    pub fn grad_tape(&self) -> Result<Vec<Vec<f32>>> {
        let k = self.width;
        let f32s = |v: &[f64]| Tensor::from_vec(v.iter().map(|&x| x as f32).collect(), &[k, k]);
        let tape = Tape::new();
        let ws: Vec<Var> = self.weights.iter().map(|w| Ok(tape.leaf(f32s(w)?))).collect::<Result<_>>()?;
        let mut h = Var::constant(f32s(&self.x)?);
        for (n, w) in ws.iter().enumerate() {
            let a = tape.matmul(&h, w)?;
            h = if n + 1 < self.depth { tape.tanh(&a) } else { a };
        }
        let loss = tape.softmax_cross_entropy(&h, &Targets::Classes(self.labels.clone()), Reduction::Sum)?;
        let grads = tape.backward(&loss)?;
        Ok(ws.iter().map(|w| grads.get(w).expect("every weight reaches the loss").data().to_vec()).collect())
    }
}

/// Least-squares line `y = slope * x + intercept`.
pub fn fit_line(xs: &[f64], ys: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let sxy: f64 = xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum();
    let sxx: f64 = xs.iter().map(|x| (x - mx).powi(2)).sum();
    let slope = if sxx > 0.0 { sxy / sxx } else { 0.0 };
    (slope, my - slope * mx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Three methods, one gradient.
        #[test]
        fn paths_tape_and_finite_differences_agree(depth in 1usize..=4, width in 1usize..=5, seed in any::<u64>()) {
            let net = Chain::random(depth, width, seed);
            let (paths, tape, finite) = (net.grad_paths(), net.grad_tape().unwrap(), net.grad_finite(1e-5));
            for n in 0..depth {
                for e in 0..width * width {
                    let (p, t, f) = (paths[n][e], tape[n][e] as f64, finite[n][e]);
                    prop_assert!((p - f).abs() <= 1e-6 * (1.0 + f.abs()), "paths {p} vs finite {f} at layer {} element {e}", n + 1);
                    prop_assert!((t - p).abs() <= 1e-4 * (1.0 + p.abs()), "tape {t} vs paths {p} at layer {} element {e}", n + 1);
                }
            }
        }
    }

    #[test]
    fn fit_line_recovers_a_line() {
        let xs = [1.0, 2.0, 3.0, 4.0];
        let ys: Vec<f64> = xs.iter().map(|x| 3.0 * x - 1.0).collect();
        let (s, i) = fit_line(&xs, &ys);
        assert!((s - 3.0).abs() < 1e-12 && (i + 1.0).abs() < 1e-12);
    }
}
