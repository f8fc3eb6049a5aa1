//! Named parameters: the state of a model, a map from PyTorch-style names
//! (`fc1.weight`) to tensors.
//!
//! It sits below the tape, the layers and the weight readers, which all use
//! it and none of which it needs: layers read their weights from it by
//! name, optimisers update it by name, and `.pth` and safetensors files load
//! into it. ([`Params::var`], which puts a parameter on a tape, is defined
//! with the tape in `autodiff`.)

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;

/// Parameters by name, iterated in name order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Params {
    tensors: BTreeMap<String, Tensor>,
}

impl Params {
    /// An empty store.
    pub fn new() -> Params {
        Params::default()
    }

    /// Add or replace the tensor `name`.
    pub fn insert(&mut self, name: &str, value: Tensor) {
        self.tensors.insert(name.to_string(), value);
    }

    /// The tensor `name`, or an error naming it.
    pub fn get(&self, name: &str) -> Result<&Tensor> {
        self.tensors
            .get(name)
            .ok_or_else(|| Error::Invalid { op: "params", message: format!("no parameter named '{name}'") })
    }

    /// The tensor `name` to change in place (an optimiser step), or an
    /// error naming it.
    pub fn get_mut(&mut self, name: &str) -> Result<&mut Tensor> {
        self.tensors
            .get_mut(name)
            .ok_or_else(|| Error::Invalid { op: "params", message: format!("no parameter named '{name}'") })
    }

    /// Every `(name, tensor)`, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Tensor)> {
        self.tensors.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Every `(name, tensor)` to change in place, in name order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&str, &mut Tensor)> {
        self.tensors.iter_mut().map(|(k, v)| (k.as_str(), v))
    }

    /// The number of tensors.
    pub fn len(&self) -> usize {
        self.tensors.len()
    }

    /// Whether there are no tensors.
    pub fn is_empty(&self) -> bool {
        self.tensors.is_empty()
    }

    /// The first tensor holding a NaN or an infinity, with the value's index:
    /// weights that would train to chance without a word.
    pub fn first_non_finite(&self) -> Option<(&str, usize, f32)> {
        self.iter().find_map(|(name, t)| t.data().iter().position(|v| !v.is_finite()).map(|i| (name, i, t.data()[i])))
    }

    /// Total number of scalar parameters.
    pub fn numel(&self) -> usize {
        self.tensors.values().map(Tensor::numel).sum()
    }

    /// The parameters as a safetensors file (f32, little-endian).
    pub fn to_safetensors(&self) -> Vec<u8> {
        self.to_safetensors_with(None)
    }

    /// The same, with text metadata in the header.
    pub fn to_safetensors_with(&self, metadata: Option<std::collections::HashMap<String, String>>) -> Vec<u8> {
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = self
            .tensors
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec(), t.data().iter().flat_map(|v| v.to_le_bytes()).collect()))
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = bytes
            .iter()
            .map(|(n, shape, b)| {
                let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), b)
                    .expect("shape matches data");
                (n.clone(), view)
            })
            .collect();
        safetensors::serialize(views, metadata).expect("serialising to memory cannot fail")
    }

    /// Replace every parameter with the tensor of the same name in the
    /// safetensors `bytes`. Strict: a missing, unexpected, wrongly shaped or
    /// non-f32 tensor is an error listing every mismatch.
    pub fn load_safetensors(&mut self, bytes: &[u8]) -> Result<()> {
        let invalid = |message: String| Error::Invalid { op: "load weights", message };
        let file = safetensors::SafeTensors::deserialize(bytes)
            .map_err(|e| invalid(format!("not a valid safetensors file: {e}")))?;
        let mut problems = Vec::new();
        let mut loaded = BTreeMap::new();
        for (name, expected) in &self.tensors {
            match file.tensor(name) {
                Err(_) => problems.push(format!("missing tensor '{name}' {:?}", expected.shape())),
                Ok(view) if view.dtype() != safetensors::Dtype::F32 => {
                    problems.push(format!("tensor '{name}' is {:?}, expected F32", view.dtype()))
                }
                Ok(view) if view.shape() != expected.shape() => problems.push(format!(
                    "tensor '{name}' has shape {:?}, expected {:?}",
                    view.shape(),
                    expected.shape()
                )),
                Ok(view) => {
                    loaded.insert(name.clone(), Tensor::from_le_bytes(view.data(), view.shape())?);
                }
            }
        }
        let mut extra: Vec<String> =
            file.names().into_iter().filter(|n| !self.tensors.contains_key(*n)).map(str::to_string).collect();
        extra.sort();
        problems.extend(extra.into_iter().map(|n| format!("unexpected tensor '{n}'")));
        if !problems.is_empty() {
            return Err(invalid(problems.join("; ")));
        }
        self.tensors = loaded;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safetensors_round_trip_and_strict_loading() {
        let mut p = Params::new();
        p.insert("fc1.weight", Tensor::from_vec(vec![1.0, -2.0, 3.5, 0.25], &[2, 2]).unwrap());
        p.insert("fc1.bias", Tensor::from_vec(vec![0.5, -0.5], &[2]).unwrap());
        let bytes = p.to_safetensors();
        let mut q = p.clone();
        q.get_mut("fc1.bias").unwrap().data_mut()[0] = 9.0;
        q.load_safetensors(&bytes).unwrap();
        assert_eq!(p, q);

        let mut other = Params::new();
        other.insert("fc1.weight", Tensor::zeros(&[3, 2]));
        other.insert("fc2.weight", Tensor::zeros(&[1]));
        let err = other.load_safetensors(&bytes).unwrap_err().to_string();
        assert!(err.contains("tensor 'fc1.weight' has shape [2, 2], expected [3, 2]"), "{err}");
        assert!(err.contains("missing tensor 'fc2.weight'"), "{err}");
        assert!(err.contains("unexpected tensor 'fc1.bias'"), "{err}");
        let err = other.load_safetensors(&bytes[..20]).unwrap_err().to_string();
        assert!(err.contains("not a valid safetensors file"), "{err}");
    }
}
