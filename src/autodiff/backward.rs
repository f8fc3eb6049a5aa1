//! Every backward rule, in one place.
//!
//! `Tape::backward` walks the nodes from the loss back to the first leaf.
//! A node's gradient is complete when the walk reaches it, because the tape
//! is in execution order: everything that used a value was recorded after it.
//! Each rule turns the node's output gradient `g` into gradients for its
//! parents and **adds** them to what the parents already have.

use super::op::{Input, Op, Reduction, Targets};
use super::tape::{NodeId, Stamp, Tape, Var};
use crate::conv::{avg_pool2d_input_gradient, conv2d_backward, max_pool2d_input_gradient, Wanted};
use crate::error::{Error, Result};
use crate::gemm::Transpose;
use crate::tensor::{BinaryOp, Tensor};

/// Gradients of the leaves of a tape, by node and by parameter name.
#[derive(Debug)]
pub struct Grads {
    grads: Vec<Option<Tensor>>,
    names: Vec<(String, NodeId)>,
    /// The tape and recording the node ids refer to.
    stamp: Stamp,
}

impl Grads {
    /// Gradients computed elsewhere (summed over the ranks of a data-parallel
    /// step), reachable by name only: no `Var` of any tape maps to them.
    pub(crate) fn from_named(named: Vec<(String, Tensor)>) -> Grads {
        let (names, grads) = named.into_iter().enumerate().map(|(i, (n, g))| ((n, i), Some(g))).unzip();
        Grads { grads, names, stamp: Stamp::NONE }
    }

    /// The gradient of a leaf `Var` (None if it did not affect the loss, or
    /// if it belongs to another tape or recording than the loss: its id
    /// would name some other node).
    pub fn get(&self, v: &Var) -> Option<&Tensor> {
        if v.stamp != self.stamp {
            return None;
        }
        self.grads.get(v.id?)?.as_ref()
    }

    /// The gradient of the parameter recorded under `name`.
    pub fn by_name(&self, name: &str) -> Option<&Tensor> {
        let &(_, id) = self.names.iter().find(|(n, _)| n == name)?;
        self.grads[id].as_ref()
    }

    /// Every named parameter's gradient, in recording order.
    pub fn named(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.names.iter().filter_map(|(n, id)| Some((n.as_str(), self.grads[*id].as_ref()?)))
    }
}

/// Add `g` into the gradient slot of `id`.
fn accumulate(grads: &mut [Option<Tensor>], id: Option<NodeId>, g: Tensor) -> Result<()> {
    let Some(id) = id else { return Ok(()) };
    match &mut grads[id] {
        Some(acc) => acc.add_assign(&g),
        slot => {
            *slot = Some(g);
            Ok(())
        }
    }
}

fn flip(t: Transpose) -> Transpose {
    match t {
        Transpose::No => Transpose::Yes,
        Transpose::Yes => Transpose::No,
    }
}

impl Tape {
    /// Gradients of the scalar `loss` with respect to every leaf it depends on.
    pub fn backward(&self, loss: &Var) -> Result<Grads> {
        self.check("backward", &[Some(loss)])?;
        if loss.value.numel() != 1 {
            return Err(Error::Invalid {
                op: "backward",
                message: format!("the loss must be a scalar, got shape {:?}", loss.shape()),
            });
        }
        let nodes = self.nodes.borrow();
        let mut grads: Vec<Option<Tensor>> = vec![None; nodes.len()];
        let names = nodes.iter().enumerate().filter_map(|(i, n)| Some((n.name.clone()?, i))).collect();
        let stamp = self.stamp();
        let Some(root) = loss.id else {
            return Ok(Grads { grads, names, stamp });
        };
        grads[root] = Some(Tensor::full(loss.shape(), 1.0));
        for id in (0..=root).rev() {
            let op = &nodes[id].op;
            if matches!(op, Op::Leaf) {
                continue; // leaves keep their gradient
            }
            // Interior gradients are dropped once passed on.
            let Some(g) = grads[id].take() else { continue };
            backward_rule(op, &g, &mut grads)?;
        }
        Ok(Grads { grads, names, stamp })
    }
}

/// The backward rule of one op: `g` is the gradient of the op's output.
fn backward_rule(op: &Op, g: &Tensor, grads: &mut [Option<Tensor>]) -> Result<()> {
    match op {
        Op::Leaf => {}
        Op::MatMul { a, b, ta, tb } => {
            // C = op(A) op(B): dop(A) = dC op(B)^T, dop(B) = op(A)^T dC, and a
            // stored-transposed operand gets the transpose of that, written as
            // a product with swapped operands so no copy is made.
            if a.id.is_some() {
                let da = match ta {
                    Transpose::No => g.matmul_t(Transpose::No, &b.value, flip(*tb))?,
                    Transpose::Yes => b.value.matmul_t(*tb, g, Transpose::Yes)?,
                };
                accumulate(grads, a.id, da)?;
            }
            if b.id.is_some() {
                let db = match tb {
                    Transpose::No => a.value.matmul_t(flip(*ta), g, Transpose::No)?,
                    Transpose::Yes => g.matmul_t(Transpose::Yes, &a.value, *ta)?,
                };
                accumulate(grads, b.id, db)?;
            }
        }
        Op::Binary { op, a, b } => {
            // Broadcast operands get the sum of their copies' gradients.
            let to = |t: Tensor, x: &Input| t.sum_to(x.value.shape());
            let (da, db) = match op {
                BinaryOp::Add => (a.id.map(|_| g.clone()), b.id.map(|_| g.clone())),
                BinaryOp::Sub => (a.id.map(|_| g.clone()), b.id.map(|_| g.scale(-1.0))),
                BinaryOp::Mul => {
                    (a.id.map(|_| g.mul(&b.value)).transpose()?, b.id.map(|_| g.mul(&a.value)).transpose()?)
                }
                BinaryOp::Div => (
                    a.id.map(|_| g.div(&b.value)).transpose()?,
                    // d(a/b)/db = -a / b^2
                    b.id.map(|_| g.mul(&a.value)?.div(&b.value.mul(&b.value)?).map(|t| t.scale(-1.0))).transpose()?,
                ),
            };
            if let Some(da) = da {
                accumulate(grads, a.id, to(da, a)?)?;
            }
            if let Some(db) = db {
                accumulate(grads, b.id, to(db, b)?)?;
            }
        }
        Op::Scale { x, c } => accumulate(grads, Some(*x), g.scale(*c))?,
        Op::AddScalar { x } => accumulate(grads, Some(*x), g.clone())?,
        Op::Exp { x, out } => accumulate(grads, Some(*x), g.mul(out)?)?,
        Op::Log { x, input } => accumulate(grads, Some(*x), g.div(input)?)?,
        Op::Relu { x, input } => {
            // The derivative at exactly 0 is taken as 0 (as PyTorch does).
            let dx = g.zip_map(input, |g, v| v.simd_gt(wide::f32x8::ZERO).bitselect(g, wide::f32x8::ZERO))?;
            accumulate(grads, Some(*x), dx)?
        }
        Op::Tanh { x, out } => accumulate(grads, Some(*x), g.zip_map(out, |g, y| g * (wide::f32x8::ONE - y * y))?)?,
        Op::Sigmoid { x, out } => {
            let d = out.map(|y| y * (wide::f32x8::ONE - y));
            accumulate(grads, Some(*x), g.mul(&d)?)?
        }
        Op::Sum { x, axis, keepdim, scale, in_shape } => {
            // Broadcast g back over the summed axis (or everything).
            let g = match (axis, keepdim) {
                (Some(a), false) => {
                    let mut kept = in_shape.clone();
                    kept[*a] = 1;
                    g.reshape(&kept)?
                }
                _ => g.clone(),
            };
            let spread = Tensor::full(in_shape, *scale).mul(&g)?;
            accumulate(grads, Some(*x), spread)?
        }
        Op::Reshape { x, in_shape } => accumulate(grads, Some(*x), g.reshape(in_shape)?)?,
        Op::Softmax { x, out } => {
            // dx = y * (g - sum(g * y)) row by row.
            let last = out.rank() - 1;
            let dot = g.mul(out)?.sum_axis(last, true)?;
            accumulate(grads, Some(*x), out.mul(&g.sub(&dot)?)?)?
        }
        Op::LogSoftmax { x, out } => {
            // dx = g - softmax * sum(g) row by row.
            let last = out.rank() - 1;
            let total = g.sum_axis(last, true)?;
            accumulate(grads, Some(*x), g.sub(&out.exp().mul(&total)?)?)?
        }
        Op::SoftmaxCrossEntropy { x, probs, targets, reduction } => {
            let (rows, classes) = probs.dims2("softmax_cross_entropy")?;
            let mut d = probs.clone();
            match targets {
                Targets::Classes(labels) => {
                    let dd = d.data_mut();
                    for (r, &c) in labels.iter().enumerate() {
                        dd[r * classes + c] -= 1.0;
                    }
                }
                Targets::Probabilities(t) => {
                    // For soft targets whose rows need not sum to 1:
                    // dx = p * sum(t) - t.
                    d = d.mul(&t.sum_axis(1, true)?)?.sub(t)?;
                }
            }
            let per = match reduction {
                Reduction::Sum => 1.0,
                Reduction::Mean => 1.0 / rows.max(1) as f32,
            };
            accumulate(grads, Some(*x), d.scale(per * g.item()?))?
        }
        Op::Conv2d { x, w, b, geom } => {
            // The arithmetic is the convolution's own (`conv/backward.rs`).
            let wanted = Wanted { bias: b.is_some(), filters: w.id.is_some(), input: x.id.is_some() };
            let d = conv2d_backward(geom, x.value.data(), w.value.data(), g.data(), wanted)?;
            for (id, d, shape) in
                [(*b, d.bias, &[geom.oc][..]), (w.id, d.filters, w.value.shape()), (x.id, d.input, x.value.shape())]
            {
                if let Some(d) = d {
                    accumulate(grads, id, Tensor::from_vec(d, shape)?)?;
                }
            }
        }
        Op::MaxPool2d { x, in_shape, arg } => {
            // Each output's gradient goes to the input that was its maximum.
            let planes = (in_shape[2] * in_shape[3], g.shape()[2] * g.shape()[3]);
            let dx = max_pool2d_input_gradient(g.data(), arg, in_shape.iter().product(), planes);
            accumulate(grads, Some(*x), Tensor::from_vec(dx, in_shape)?)?
        }
        Op::AvgPool2d { x, in_shape, planes } => {
            let dx = avg_pool2d_input_gradient(g.data(), planes, in_shape.iter().product());
            accumulate(grads, Some(*x), Tensor::from_vec(dx, in_shape)?)?
        }
        Op::Dropout { x, mask } => accumulate(grads, Some(*x), g.mul(mask)?)?,
        Op::Refused { error } => return Err(Error::Invalid { op: "backward", message: error.clone() }),
        Op::LinearCrossEntropy { x, w, b, dx, dw, db } => {
            // The forward pass computed these for an output gradient of 1.
            let g = g.item()?;
            for (id, d) in [(x, dx), (w, dw), (b, db)] {
                if let Some(d) = d {
                    accumulate(grads, *id, if g == 1.0 { d.clone() } else { d.scale(g) })?;
                }
            }
        }
    }
    Ok(())
}
