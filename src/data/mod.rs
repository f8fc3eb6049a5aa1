//! Data sets: readers that validate what they read and say which file, and
//! what in it, was wrong.
//!
//! - `idx.rs`: the IDX format of MNIST (gzipped or raw);
//! - `mnist.rs`: MNIST split as in the report (train 60000; the 10000 test
//!   images split into validation, odd indices, and test, even indices).

pub mod faces;
pub mod idx;
pub mod mnist;

use std::path::PathBuf;

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
