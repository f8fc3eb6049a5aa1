//! Named parameters: the state of a model.

use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Parameters by name, iterated in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    tensors: BTreeMap<String, Tensor>,
}

impl Params {
    pub fn new() -> Params {
        Params::default()
    }

    pub fn insert(&mut self, name: &str, value: Tensor) {
        self.tensors.insert(name.to_string(), value);
    }

    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Invalid { op: "params", message: format!("no parameter named '{name}'") })
    }

    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        self.tensors
            .get_mut(name)
            .ok_or_else(|| Error::Invalid { op: "params", message: format!("no parameter named '{name}'") })
    }

    /// Put the parameter `name` on the tape as a leaf (a constant on an
    /// inference tape).
    pub fn var(&self, tape: &Tape, name: &str) -> Result<Var> {
        Ok(tape.param(name, self.get(name)?))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        self.tensors.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(Tensor::numel).sum()
    }
}
