//! Data sets: readers that validate what they read and say which file, and
//! what in it, was wrong.
//!
//! - `idx.rs`: the IDX format of MNIST (gzipped or raw);
//! - `mnist.rs`: MNIST split as in the report (train 60000; the 10000 test
//!   images split into validation, odd indices, and test, even indices).

pub mod faces;
pub mod idx;
pub mod mnist;

use crate::tensor::Tensor;
use std::path::PathBuf;

/// Examples `[n, inputs]` and their class indices.
#[derive(Clone, Debug)]
pub struct Split {
    pub images: Tensor,
    pub labels: Vec<usize>,
}

impl Split {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Split {
        let width = self.images.shape()[1];
        let src = self.images.data();
        let mut rows = Vec::with_capacity(indices.len() * width);
        for &i in indices {
            rows.extend_from_slice(&src[i * width..(i + 1) * width]);
        }
        let images = Tensor::from_vec(rows, &[indices.len(), width]).expect("whole rows");
        Split { images, labels: indices.iter().map(|&i| self.labels[i]).collect() }
    }

    /// Subtract each row's mean and divide by its largest absolute value.
    pub fn normalize_per_row(&mut self) {
        let width = self.images.shape()[1];
        for row in self.images.data_mut().chunks_mut(width) {
            let mean = row.iter().map(|&v| v as f64).sum::<f64>() / width.max(1) as f64;
            row.iter_mut().for_each(|v| *v -= mean as f32);
            let max = row.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            if max > 0.0 {
                row.iter_mut().for_each(|v| *v /= max);
            }
        }
    }

    /// The first `n` rows (or all, if fewer).
    pub fn head(&self, n: usize) -> Split {
        self.select(&(0..n.min(self.len())).collect::<Vec<_>>())
    }
}

/// A classification data set split three ways, with what the figures need
/// to know about its images.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub train: Split,
    pub validation: Split,
    pub test: Split,
    /// One name per class ("0".."9", or the actors).
    pub class_names: Vec<String>,
    /// Image channels (1 or 3) and side; inputs = channels * side * side.
    pub channels: usize,
    pub side: usize,
    /// Files left out because they could not be read (when asked to skip).
    pub skipped: usize,
}

impl Dataset {
    pub fn inputs(&self) -> usize {
        self.channels * self.side * self.side
    }

    pub fn classes(&self) -> usize {
        self.class_names.len()
    }
}

/// A data file that could not be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: {message}")]
    Format { path: PathBuf, message: String },
}

impl DataError {
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
        DataError::Format { path: path.into(), message: message.into() }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io { path: path.into(), source }
    }
}
