//! The tape and the values that flow through it.

use super::op::Op;
use crate::tensor::Tensor;
use std::cell::RefCell;

/// Position of a node on its tape.
pub type NodeId = usize;

/// A value computed on a tape. `id` is `Some` when the value needs a gradient
/// (it is, or depends on, a leaf of a recording tape).
#[derive(Clone, Debug)]
pub struct Var {
    pub(crate) value: Tensor,
    pub(crate) id: Option<NodeId>,
}

impl Var {
    /// A value that needs no gradient (inputs, targets).
    pub fn constant(value: Tensor) -> Var {
        Var { value, id: None }
    }

    pub fn value(&self) -> &Tensor {
        &self.value
    }

    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    pub fn id(&self) -> Option<NodeId> {
        self.id
    }

    pub fn requires_grad(&self) -> bool {
        self.id.is_some()
    }
}

pub(crate) struct Node {
    pub op: Op,
    pub name: Option<String>,
}

/// Records operations for [`Tape::backward`]. Ops take `&self`, so model code
/// can hold the tape and many `Var`s at once.
pub struct Tape {
    pub(crate) nodes: RefCell<Vec<Node>>,
    recording: bool,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records, for training.
    pub fn new() -> Tape {
        Tape { nodes: RefCell::new(Vec::new()), recording: true }
    }

    /// A tape that never records: the inference path, with no tape cost.
    pub fn inference() -> Tape {
        Tape { nodes: RefCell::new(Vec::new()), recording: false }
    }

    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every node (keeps the allocation for the next step).
    pub fn clear(&self) {
        self.nodes.borrow_mut().clear();
    }

    /// A named leaf whose gradient is wanted: a parameter. Its gradient is
    /// then reachable by name from [`super::Grads`].
    pub fn param(&self, name: &str, value: &Tensor) -> Var {
        self.push_leaf(value.clone(), Some(name.to_string()))
    }

    /// An unnamed leaf whose gradient is wanted.
    pub fn leaf(&self, value: Tensor) -> Var {
        self.push_leaf(value, None)
    }

    fn push_leaf(&self, value: Tensor, name: Option<String>) -> Var {
        if !self.recording {
            return Var::constant(value);
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { op: Op::Leaf, name });
        Var { value, id: Some(nodes.len() - 1) }
    }

    /// Record `value` as the output of an op whose inputs are `parents`. The
    /// op is built only if some parent needs a gradient.
    pub(crate) fn record(&self, value: Tensor, parents: &[Option<NodeId>], op: impl FnOnce() -> Op) -> Var {
        if !self.recording || parents.iter().all(Option::is_none) {
            return Var::constant(value);
        }
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { op: op(), name: None });
        Var { value, id: Some(nodes.len() - 1) }
    }
}
