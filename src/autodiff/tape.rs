//! The tape and the values that flow through it.
//!
//! A `Var`'s node id is an index into one tape's list of one recording. So
//! each tape has a process-unique id, `clear()` starts a new generation, and
//! a `Var` carries both ([`Stamp`]): an op handed a `Var` of another tape,
//! or of a recording since cleared, returns an error instead of indexing the
//! wrong node (a wrong gradient, or a panic past the end).

use super::op::Op;
use crate::error::{Error, Result};
use crate::params::Params;
use crate::tensor::Tensor;
use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicU64, Ordering};

/// Position of a node on its tape.
pub type NodeId = usize;

/// Which tape, and which recording on it, a node belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    tape: u64,
    generation: u64,
}

impl Stamp {
    /// The stamp of values on no tape (constants; tape ids start at 1).
    pub(crate) const NONE: Stamp = Stamp { tape: 0, generation: 0 };
}

/// Tape ids handed out so far.
static TAPES: AtomicU64 = AtomicU64::new(0);

/// A value computed on a tape. `id` is `Some` when the value needs a gradient
/// (it is, or depends on, a leaf of a recording tape); it is only meaningful
/// on the tape and recording that `stamp` names.
#[derive(Clone, Debug)]
pub struct Var {
    pub(crate) value: Tensor,
    pub(crate) id: Option<NodeId>,
    pub(crate) stamp: Stamp,
}

impl Var {
    /// A value that needs no gradient (inputs, targets).
    pub fn constant(value: Tensor) -> Var {
        Var { value, id: None, stamp: Stamp::NONE }
    }

    /// The value this `Var` holds.
    pub fn value(&self) -> &Tensor {
        &self.value
    }

    /// The shape of its value.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }

    /// Its node on the tape, if it needs a gradient.
    pub fn id(&self) -> Option<NodeId> {
        self.id
    }

    /// Whether a gradient flows back through it: it is, or depends on, a
    /// leaf of a recording tape.
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
    id: u64,
    /// Bumped by `clear`: Vars of an earlier recording are refused.
    generation: Cell<u64>,
}

impl Default for Tape {
    fn default() -> Self {
        Tape::new()
    }
}

impl Tape {
    /// A tape that records, for training.
    pub fn new() -> Tape {
        Tape::with_recording(true)
    }

    /// A tape that never records: the inference path, with no tape cost.
    pub fn inference() -> Tape {
        Tape::with_recording(false)
    }

    fn with_recording(recording: bool) -> Tape {
        let id = TAPES.fetch_add(1, Ordering::Relaxed) + 1;
        Tape { nodes: RefCell::new(Vec::new()), recording, id, generation: Cell::new(0) }
    }

    /// The stamp of Vars recorded now.
    pub(crate) fn stamp(&self) -> Stamp {
        Stamp { tape: self.id, generation: self.generation.get() }
    }

    /// Fail unless every Var in `vars` that has a node has it on this tape's
    /// current recording. Constants (no node) go anywhere.
    pub(crate) fn check(&self, op: &'static str, vars: &[Option<&Var>]) -> Result<()> {
        let here = self.stamp();
        let Some(v) = vars.iter().flatten().find(|v| v.id.is_some() && v.stamp != here) else {
            return Ok(());
        };
        let message = if v.stamp.tape != here.tape {
            "a Var recorded on another tape was passed in (a Var belongs to the tape that made it)"
        } else {
            "a Var recorded before this tape's clear() was passed in (make it again after clearing)"
        };
        Err(Error::Invalid { op, message: message.to_string() })
    }

    /// Whether ops are recorded (false for [`Tape::inference`]).
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of recorded nodes.
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// Whether no node is recorded.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Forget every node (keeps the allocation for the next step). Vars
    /// recorded so far are refused from now on.
    pub fn clear(&self) {
        self.nodes.borrow_mut().clear();
        self.generation.set(self.generation.get() + 1);
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
        self.push(value, Op::Leaf, name)
    }

    fn push(&self, value: Tensor, op: Op, name: Option<String>) -> Var {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node { op, name });
        Var { value, id: Some(nodes.len() - 1), stamp: self.stamp() }
    }

    /// Record `value` as the output of op `name` whose inputs are `parents`
    /// (checked to be this tape's). The op is built only if some parent
    /// needs a gradient.
    pub(crate) fn record(
        &self,
        name: &'static str,
        value: Tensor,
        parents: &[Option<&Var>],
        op: impl FnOnce() -> Op,
    ) -> Result<Var> {
        self.check(name, parents)?;
        if !self.recording || parents.iter().flatten().all(|p| p.id.is_none()) {
            return Ok(Var::constant(value));
        }
        Ok(self.push(value, op(), None))
    }

    /// [`Tape::record`] for the ops that cannot return an error: a foreign
    /// parent gives a node whose backward rule is that error, so a gradient
    /// that would flow through it fails `backward` instead of going astray.
    pub(crate) fn record_infallible(&self, name: &'static str, value: Tensor, x: &Var, op: impl FnOnce() -> Op) -> Var {
        match self.record(name, value.clone(), &[Some(x)], op) {
            Ok(v) => v,
            Err(_) if !self.recording => Var::constant(value),
            Err(e) => self.push(value, Op::Refused { error: e.to_string() }, None),
        }
    }
}

// Defined here rather than in `params.rs`, which sits below the tape.
impl Params {
    /// Put the parameter `name` on the tape as a leaf (a constant on an
    /// inference tape).
    pub fn var(&self, tape: &Tape, name: &str) -> Result<Var> {
        Ok(tape.param(name, self.get(name)?))
    }
}
