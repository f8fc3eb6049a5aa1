//! A fused last layer: `softmax_cross_entropy(x W^T + b)` in one pass over x.
//!
//! Why fuse: for softmax regression on MNIST, x is 60000 x 784 (188 MB) and
//! the step is bound by reading it. Unfused, x is read by the forward product
//! and again by the weight gradient. Here each block of rows is multiplied,
//! turned into probabilities, and multiplied back into the gradient while it
//! is still in cache, so x is read from memory once per step. With few
//! classes the two products use the skinny kernels of `gemm/skinny.rs`, which
//! read x in place instead of packing it.
//!
//! Because this op is a loss (its output is the scalar the tape starts from),
//! its gradients are computed during the forward pass, for the inputs that
//! need them; its backward rule (in `backward.rs`) only scales them by the
//! incoming gradient. On an inference tape no gradient is computed.

use super::op::{Op, Reduction, Targets};
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::gemm::skinny::{dt_x, x_wt, MAX_OUT};
use crate::gemm::{sgemm, KernelChoice, Transpose};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Rows per block: a block of x (144 x 784 floats, 450 KB) stays in L2, and
/// 144 is a multiple of every kernel's MR (4, 6, 12, 24), so packing never
/// meets a ragged panel.
const BLOCK_ROWS: usize = 144;

/// Blocks per group: the unit of parallel work and of the ordered sum.
const GROUP_BLOCKS: usize = 8;

/// Sums over the blocks of one group.
struct Partial {
    loss: f64,
    dw: Vec<f32>,
    db: Vec<f32>,
}

/// The operands of one fused pass.
struct Job<'a> {
    xs: &'a [f32],
    ws: &'a [f32],
    bs: &'a [f32],
    targets: &'a Targets,
    inputs: usize,
    out: usize,
    scale: f32,
    grads: bool,
    /// Few classes: dot products along the inputs beat a packed GEMM.
    skinny: bool,
}

impl Job<'_> {
    fn empty(&self) -> Partial {
        Partial {
            loss: 0.0,
            dw: vec![0.0; if self.grads { self.out * self.inputs } else { 0 }],
            db: vec![0.0; self.out],
        }
    }

    /// Rows `r0..r0 + rows`: loss into `acc`, and with gradients, dW and db
    /// into `acc` and dx into `dx`.
    fn block(&self, r0: usize, rows: usize, dx: Option<&mut [f32]>, acc: &mut Partial) -> Result<()> {
        let (inputs, out, scale) = (self.inputs, self.out, self.scale);
        let xb = &self.xs[r0 * inputs..(r0 + rows) * inputs];
        // Forward: logits of the block.
        let mut z = vec![0.0f32; rows * out];
        if self.skinny {
            x_wt(KernelChoice::Auto, xb, rows, inputs, self.ws, out, &mut z)?;
        } else {
            sgemm(
                Transpose::No,
                Transpose::Yes,
                rows,
                out,
                inputs,
                1.0,
                xb,
                inputs,
                self.ws,
                inputs,
                0.0,
                &mut z,
                out,
            )?;
        }
        // Softmax, loss, and dlogits = scale * (p * sum(t) - t), in place.
        for (r, row) in z.chunks_exact_mut(out).enumerate() {
            row.iter_mut().zip(self.bs).for_each(|(v, b)| *v += b);
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            match self.targets {
                Targets::Classes(labels) => {
                    // One exp per logit (they were a tenth of the MNIST step):
                    // p = e / sum(e), with e = exp(v - max) kept in the row.
                    let y = labels[r0 + r];
                    let shifted_y = row[y] - max;
                    let mut sum = 0.0f32;
                    for v in row.iter_mut() {
                        *v = (*v - max).exp();
                        sum += *v;
                    }
                    acc.loss -= (shifted_y - sum.ln()) as f64;
                    let per = scale / sum;
                    row.iter_mut().for_each(|v| *v *= per);
                    row[y] -= scale;
                }
                Targets::Probabilities(t) => {
                    let log_sum = row.iter().map(|v| (v - max).exp()).sum::<f32>().ln();
                    let log_p = |v: f32| (v - max) - log_sum;
                    let t = &t.data()[(r0 + r) * out..(r0 + r + 1) * out];
                    let mass: f32 = t.iter().sum();
                    let terms =
                        row.iter().zip(t).map(|(&v, &t)| if t == 0.0 { 0.0 } else { t as f64 * log_p(v) as f64 });
                    acc.loss -= terms.sum::<f64>();
                    row.iter_mut().zip(t).for_each(|(v, &t)| *v = scale * (log_p(*v).exp() * mass - t));
                }
            }
        }
        if !self.grads {
            return Ok(());
        }
        // dW += dz^T x, db += column sums of dz, dx = dz W.
        if self.skinny {
            dt_x(KernelChoice::Auto, &z, rows, out, xb, inputs, &mut acc.dw)?;
        } else {
            let dw = &mut acc.dw;
            sgemm(Transpose::Yes, Transpose::No, out, inputs, rows, 1.0, &z, out, xb, inputs, 1.0, dw, inputs)?;
        }
        for row in z.chunks_exact(out) {
            acc.db.iter_mut().zip(row).for_each(|(d, v)| *d += v);
        }
        if let Some(dx) = dx {
            sgemm(Transpose::No, Transpose::No, rows, inputs, out, 1.0, &z, out, self.ws, inputs, 0.0, dx, inputs)?;
        }
        Ok(())
    }
}

impl Tape {
    /// `softmax_cross_entropy(x W^T + b, targets)` with `x` `[n, in]`, `w`
    /// `[out, in]` (PyTorch's layout) and `b` `[out]`; the same value and
    /// gradients as the three ops it replaces.
    pub fn linear_cross_entropy(
        &self,
        x: &Var,
        w: &Var,
        b: &Var,
        targets: &Targets,
        reduction: Reduction,
    ) -> Result<Var> {
        let op = "linear_cross_entropy";
        self.check(op, &[Some(x), Some(w), Some(b)])?;
        let (n, inputs) = x.value.dims2(op)?;
        let (out, w_in) = w.value.dims2(op)?;
        if w_in != inputs || b.shape() != [out] {
            return Err(Error::Shape { op, lhs: x.shape().to_vec(), rhs: w.shape().to_vec() });
        }
        match targets {
            Targets::Classes(labels) if labels.len() != n => {
                return Err(Error::Shape { op, lhs: vec![n, out], rhs: vec![labels.len()] })
            }
            Targets::Classes(labels) => {
                if let Some(&bad) = labels.iter().find(|&&c| c >= out) {
                    return Err(Error::Invalid {
                        op,
                        message: format!("class index {bad} is out of range for {out} classes"),
                    });
                }
            }
            Targets::Probabilities(t) if t.shape() != [n, out] => {
                return Err(Error::Shape { op, lhs: vec![n, out], rhs: t.shape().to_vec() })
            }
            Targets::Probabilities(_) => {}
        }
        let grads = self.is_recording() && [x.id, w.id, b.id].iter().any(Option::is_some);
        let scale = match reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => 1.0 / n.max(1) as f32,
        };
        let job = Job {
            xs: x.value.data(),
            ws: w.value.data(),
            bs: b.value.data(),
            targets,
            inputs,
            out,
            scale,
            grads,
            skinny: out <= MAX_OUT,
        };
        let mut dx = if grads && x.id.is_some() { vec![0.0f32; n * inputs] } else { Vec::new() };
        // Fixed groups of blocks, summed in order afterwards: the result does
        // not depend on how rayon schedules them, so a seed gives the same
        // training run on any number of threads.
        let group_rows = BLOCK_ROWS * GROUP_BLOCKS;
        let groups = n.div_ceil(group_rows);
        let mut dx_groups: Vec<Option<&mut [f32]>> = dx.chunks_mut(group_rows * inputs).map(Some).collect();
        dx_groups.resize_with(groups, || None);
        let partials: Vec<Partial> = dx_groups
            .into_par_iter()
            .enumerate()
            .map(|(g, mut dx_group)| {
                let mut acc = job.empty();
                let first = g * group_rows;
                for r0 in (first..n.min(first + group_rows)).step_by(BLOCK_ROWS) {
                    let rows = BLOCK_ROWS.min(n - r0);
                    let dx_blk =
                        dx_group.as_deref_mut().map(|d| &mut d[(r0 - first) * inputs..(r0 - first + rows) * inputs]);
                    job.block(r0, rows, dx_blk, &mut acc)?;
                }
                Ok(acc)
            })
            .collect::<Result<_>>()?;
        let mut total = job.empty();
        for p in &partials {
            total.loss += p.loss;
            total.dw.iter_mut().zip(&p.dw).for_each(|(x, y)| *x += y);
            total.db.iter_mut().zip(&p.db).for_each(|(x, y)| *x += y);
        }
        let value = Tensor::scalar((total.loss * scale as f64) as f32);
        if !grads {
            return Ok(Var::constant(value));
        }
        let keep =
            |id: Option<usize>, data: Vec<f32>, shape: &[usize]| id.map(|_| Tensor::from_vec(data, shape)).transpose();
        let dx = keep(x.id, dx, &[n, inputs])?;
        let dw = keep(w.id, total.dw, &[out, inputs])?;
        let db = keep(b.id, total.db, &[out])?;
        self.record(op, value, &[Some(x), Some(w), Some(b)], || Op::LinearCrossEntropy {
            x: x.id,
            w: w.id,
            b: b.id,
            dx,
            dw,
            db,
        })
    }
}
