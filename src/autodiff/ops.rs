//! Forward functions: compute a value and record how to differentiate it.
//! Each has its backward rule in `backward.rs`.

use super::op::{Input, Op, Reduction, Targets};
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::gemm::Transpose;
use crate::tensor::{BinaryOp, Tensor};

fn input(v: &Var) -> Input {
    Input { id: v.id, value: v.value.clone() }
}

/// A unary op whose backward needs only `x`'s id and one saved tensor.
macro_rules! unary {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $saved:ident, |$x:ident| $forward:expr, save_input = $save_input:literal) => {
        $(#[$doc])*
        pub fn $name(&self, $x: &Var) -> Var {
            let value = { let $x = &$x.value; $forward };
            let saved = if $save_input { $x.value.clone() } else { value.clone() };
            self.record_infallible(stringify!($name), value, $x, || Op::$variant { x: $x.id.unwrap(), $saved: saved })
        }
    };
}

impl Tape {
    /// `op(a) * op(b)` for 2-d values; transposes are read in place.
    pub fn matmul_t(&self, a: &Var, ta: Transpose, b: &Var, tb: Transpose) -> Result<Var> {
        self.check("matmul", &[Some(a), Some(b)])?;
        let value = a.value.matmul_t(ta, &b.value, tb)?;
        self.record("matmul", value, &[Some(a), Some(b)], || Op::MatMul { a: input(a), b: input(b), ta, tb })
    }

    /// The matrix product `a * b` of two 2-d values.
    pub fn matmul(&self, a: &Var, b: &Var) -> Result<Var> {
        self.matmul_t(a, Transpose::No, b, Transpose::No)
    }

    /// Elementwise `a op b` with broadcasting (a bias row or column, a scalar).
    pub fn binary(&self, a: &Var, op: BinaryOp, b: &Var) -> Result<Var> {
        let value = a.value.binary(&b.value, op)?;
        self.record(op.name(), value, &[Some(a), Some(b)], || Op::Binary { op, a: input(a), b: input(b) })
    }

    /// `a + b`, broadcast (see [`Tape::binary`]).
    pub fn add(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(a, BinaryOp::Add, b)
    }

    /// `a - b`, broadcast.
    pub fn sub(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(a, BinaryOp::Sub, b)
    }

    /// `a * b` elementwise, broadcast.
    pub fn mul(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(a, BinaryOp::Mul, b)
    }

    /// `a / b` elementwise, broadcast.
    pub fn div(&self, a: &Var, b: &Var) -> Result<Var> {
        self.binary(a, BinaryOp::Div, b)
    }

    /// `c * x`.
    pub fn scale(&self, x: &Var, c: f32) -> Var {
        self.record_infallible("scale", x.value.scale(c), x, || Op::Scale { x: x.id.unwrap(), c })
    }

    /// `x + c`.
    pub fn add_scalar(&self, x: &Var, c: f32) -> Var {
        self.record_infallible("add_scalar", x.value.add_scalar(c), x, || Op::AddScalar { x: x.id.unwrap() })
    }

    unary!(
        /// `e^x`, elementwise.
        exp, Exp, out, |x| x.exp(), save_input = false
    );
    unary!(
        /// Natural logarithm (of positive values).
        log, Log, input, |x| x.ln(), save_input = true
    );
    unary!(
        /// `max(x, 0)`, elementwise; its gradient at 0 is taken as 0.
        relu, Relu, input, |x| x.relu(), save_input = true
    );
    unary!(
        /// The hyperbolic tangent, elementwise.
        tanh, Tanh, out, |x| x.tanh(), save_input = false
    );
    unary!(
        /// The logistic function `1 / (1 + e^-x)`, elementwise.
        sigmoid, Sigmoid, out, |x| x.sigmoid(), save_input = false
    );

    /// Sum of every element, as a scalar.
    pub fn sum(&self, x: &Var) -> Var {
        let value = Tensor::scalar(x.value.sum_all());
        let in_shape = x.shape().to_vec();
        self.record_infallible("sum", value, x, || Op::Sum {
            x: x.id.unwrap(),
            axis: None,
            keepdim: false,
            scale: 1.0,
            in_shape,
        })
    }

    /// Mean of every element, as a scalar.
    pub fn mean(&self, x: &Var) -> Result<Var> {
        let n = x.value.numel();
        if n == 0 {
            return Err(Error::Empty { op: "mean", shape: x.shape().to_vec() });
        }
        self.sum_scaled("mean", x, None, false, 1.0 / n as f32)
    }

    /// Sum along `axis`; with `keepdim` the axis stays, with length 1.
    pub fn sum_axis(&self, x: &Var, axis: usize, keepdim: bool) -> Result<Var> {
        self.sum_scaled("sum_axis", x, Some(axis), keepdim, 1.0)
    }

    /// Mean along `axis` (an error if it is empty); `keepdim` as in
    /// [`Tape::sum_axis`].
    pub fn mean_axis(&self, x: &Var, axis: usize, keepdim: bool) -> Result<Var> {
        let n = *x.shape().get(axis).ok_or_else(|| Error::Axis { op: "mean", axis, shape: x.shape().to_vec() })?;
        if n == 0 {
            return Err(Error::Empty { op: "mean", shape: x.shape().to_vec() });
        }
        self.sum_scaled("mean_axis", x, Some(axis), keepdim, 1.0 / n as f32)
    }

    fn sum_scaled(&self, name: &'static str, x: &Var, axis: Option<usize>, keepdim: bool, scale: f32) -> Result<Var> {
        let sum = match axis {
            Some(a) => x.value.sum_axis(a, keepdim)?,
            None => Tensor::scalar(x.value.sum_all()),
        };
        let value = if scale == 1.0 { sum } else { sum.scale(scale) };
        let in_shape = x.shape().to_vec();
        self.record(name, value, &[Some(x)], || Op::Sum { x: x.id.unwrap(), axis, keepdim, scale, in_shape })
    }

    /// The same values with another shape of the same element count.
    pub fn reshape(&self, x: &Var, shape: &[usize]) -> Result<Var> {
        let value = x.value.reshape(shape)?;
        let in_shape = x.shape().to_vec();
        self.record("reshape", value, &[Some(x)], || Op::Reshape { x: x.id.unwrap(), in_shape })
    }

    /// Softmax along the last axis.
    pub fn softmax(&self, x: &Var) -> Result<Var> {
        let value = x.value.softmax()?;
        let out = value.clone();
        self.record("softmax", value, &[Some(x)], || Op::Softmax { x: x.id.unwrap(), out })
    }

    /// Log-softmax along the last axis.
    pub fn log_softmax(&self, x: &Var) -> Result<Var> {
        let value = x.value.log_softmax()?;
        let out = value.clone();
        self.record("log_softmax", value, &[Some(x)], || Op::LogSoftmax { x: x.id.unwrap(), out })
    }

    /// Cross-entropy of softmax(`logits`) against `targets`, fused so that
    /// the gradient is the stable `probs - targets`. `logits` is `[rows, classes]`.
    pub fn softmax_cross_entropy(&self, logits: &Var, targets: &Targets, reduction: Reduction) -> Result<Var> {
        let (rows, classes) = logits.value.dims2("softmax_cross_entropy")?;
        let log_p = logits.value.log_softmax()?;
        let lp = log_p.data();
        let total: f64 = match targets {
            Targets::Classes(labels) => {
                if labels.len() != rows {
                    return Err(Error::Shape {
                        op: "softmax_cross_entropy",
                        lhs: vec![rows, classes],
                        rhs: vec![labels.len()],
                    });
                }
                if let Some(&bad) = labels.iter().find(|&&c| c >= classes) {
                    return Err(Error::Invalid {
                        op: "softmax_cross_entropy",
                        message: format!("class index {bad} is out of range for {classes} classes"),
                    });
                }
                labels.iter().enumerate().map(|(r, &c)| -(lp[r * classes + c] as f64)).sum()
            }
            Targets::Probabilities(t) => {
                logits.value.expect_same_shape(t, "softmax_cross_entropy")?;
                t.data().iter().zip(lp).map(|(&t, &l)| if t == 0.0 { 0.0 } else { -(t as f64) * l as f64 }).sum()
            }
        };
        let per = match reduction {
            Reduction::Sum => 1.0,
            Reduction::Mean => 1.0 / rows.max(1) as f64,
        };
        let value = Tensor::scalar((total * per) as f32);
        self.record("softmax_cross_entropy", value, &[Some(logits)], || Op::SoftmaxCrossEntropy {
            x: logits.id.unwrap(),
            probs: log_p.exp(),
            targets: targets.clone(),
            reduction,
        })
    }
}
