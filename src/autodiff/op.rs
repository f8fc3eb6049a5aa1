//! What a node remembers for its backward rule. Parents that do not need a
//! gradient are `None`; their rule is skipped.

use super::tape::NodeId;
use crate::gemm::Transpose;
use crate::tensor::{BinaryOp, Tensor};

/// An input to an op: its node (if it needs a gradient) and its value.
#[derive(Clone, Debug)]
pub(crate) struct Input {
    pub id: Option<NodeId>,
    pub value: Tensor,
}

/// How a loss over a batch is reduced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Sum over samples (the report's cost, parts 2-6).
    Sum,
    /// Mean over samples (PyTorch's default, parts 8-10).
    Mean,
}

/// Targets of a classification loss.
#[derive(Clone, Debug)]
pub enum Targets {
    /// One class index per row.
    Classes(Vec<usize>),
    /// A row of class probabilities per row (one-hot or soft), same shape as
    /// the logits.
    Probabilities(Tensor),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// A parameter or input whose gradient is wanted.
    Leaf,
    MatMul {
        a: Input,
        b: Input,
        ta: Transpose,
        tb: Transpose,
    },
    Binary {
        op: BinaryOp,
        a: Input,
        b: Input,
    },
    Scale {
        x: NodeId,
        c: f32,
    },
    AddScalar {
        x: NodeId,
    },
    Exp {
        x: NodeId,
        out: Tensor,
    },
    Log {
        x: NodeId,
        input: Tensor,
    },
    Relu {
        x: NodeId,
        input: Tensor,
    },
    Tanh {
        x: NodeId,
        out: Tensor,
    },
    Sigmoid {
        x: NodeId,
        out: Tensor,
    },
    /// Sum over one axis (`Some`) or all elements (`None`), optionally scaled
    /// (mean is a sum scaled by 1 / count).
    Sum {
        x: NodeId,
        axis: Option<usize>,
        keepdim: bool,
        scale: f32,
        in_shape: Vec<usize>,
    },
    Reshape {
        x: NodeId,
        in_shape: Vec<usize>,
    },
    Softmax {
        x: NodeId,
        out: Tensor,
    },
    LogSoftmax {
        x: NodeId,
        out: Tensor,
    },
    SoftmaxCrossEntropy {
        x: NodeId,
        probs: Tensor,
        targets: Targets,
        reduction: Reduction,
    },
    Conv2d {
        x: Input,
        w: Input,
        b: Option<NodeId>,
        geom: crate::conv::ConvGeom,
    },
    MaxPool2d {
        x: NodeId,
        in_shape: Vec<usize>,
        /// Index within its plane of each output's maximum.
        arg: std::sync::Arc<Vec<u32>>,
    },
    AvgPool2d {
        x: NodeId,
        in_shape: Vec<usize>,
        /// One plane's geometry.
        planes: crate::conv::Planes,
    },
    Dropout {
        x: NodeId,
        mask: Tensor,
    },
    /// An op that was handed a Var of another tape (or recording) and could
    /// not return the error: its backward rule returns it.
    Refused {
        error: String,
    },
    /// The fused last layer (`fused.rs`): gradients already computed for a
    /// unit output gradient.
    LinearCrossEntropy {
        x: Option<NodeId>,
        w: Option<NodeId>,
        b: Option<NodeId>,
        dx: Option<Tensor>,
        dw: Option<Tensor>,
        db: Option<Tensor>,
    },
}
