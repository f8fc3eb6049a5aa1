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
use std::path::{Path, PathBuf};

/// Examples `[n, inputs]` and their class indices.
#[derive(Clone, Debug)]
pub struct Split {
    /// One example per row, `[n, inputs]`.
    pub images: Tensor,
    /// Each row's class.
    pub labels: Vec<usize>,
}

impl Split {
    /// The number of examples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether there are no examples.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The rows at `indices`, in that order. Panics on an index past the
    /// rows: callers pass orders they made, or checked when read back
    /// (`pipeline::checkpoint::check_permutation`).
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
        if width == 0 {
            return;
        }
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
    /// What the model is trained on.
    pub train: Split,
    /// What settings are chosen on.
    pub validation: Split,
    /// What is reported.
    pub test: Split,
    /// One name per class ("0".."9", or the actors).
    pub class_names: Vec<String>,
    /// Image channels (1 or 3) and side; inputs = channels * side * side.
    pub channels: usize,
    /// Image side in pixels (see `channels`).
    pub side: usize,
    /// Files left out because they could not be read (when asked to skip).
    pub skipped: usize,
}

impl Dataset {
    /// Values per example: `channels * side * side`.
    pub fn inputs(&self) -> usize {
        self.channels * self.side * self.side
    }

    /// The number of classes.
    pub fn classes(&self) -> usize {
        self.class_names.len()
    }

    /// One example's shape, `[channels, side, side]` (rows hold it flat).
    pub fn example_shape(&self) -> Vec<usize> {
        vec![self.channels, self.side, self.side]
    }
}

/// A data file that could not be used, with the file and the reason.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file could not be read: missing, unreadable, not a regular file,
    /// or larger than it may be.
    #[error(transparent)]
    Read(#[from] crate::files::FileReadError),
    /// The file was read but its contents are wrong.
    #[error("{path}: {message}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong, with the values involved.
        message: String,
    },
}

impl DataError {
    /// A file whose contents are wrong: `path` and what is wrong.
    pub fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> DataError {
        DataError::Format { path: path.into(), message: message.into() }
    }

    /// A file that could not be read.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> DataError {
        DataError::Io { path: path.into(), source }
    }
}

/// A data file's error as the library's [`Error`](crate::Error), kept whole
/// (`e.find::<DataError>()` gets it back; its `source()` is the I/O error).
impl From<DataError> for crate::error::Error {
    fn from(e: DataError) -> crate::error::Error {
        crate::error::Error::Other(Box::new(e))
    }
}

/// For tests that need the shared data sets (never committed): the folder
/// `rel` under `$NABLA_DATA_ROOT`, or else `../shared/data` beside the
/// crate. When it is absent, the test `test` is skipped with a loud line on
/// stderr, except on CI (`CI` set, as CI services do), where the data must
/// be there and its absence fails the test.
#[doc(hidden)]
pub fn shared_data_or_skip(rel: &str, test: &str) -> Option<PathBuf> {
    let root = std::env::var_os("NABLA_DATA_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    found_or_skip(&root.join(rel), test, std::env::var("CI").ok().as_deref())
}

fn found_or_skip(dir: &Path, test: &str, ci: Option<&str>) -> Option<PathBuf> {
    if dir.is_dir() {
        return Some(dir.to_path_buf());
    }
    // Any value but empty, "false" or "0" means CI.
    if ci.is_some_and(|v| !v.is_empty() && v != "false" && v != "0") {
        panic!("{test}: CI is set but the shared data {} is missing", dir.display());
    }
    // Straight to stderr: the test harness captures `eprintln!`.
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIP {test}: {} not found (set NABLA_DATA_ROOT, or put the shared data at ../shared/data)",
        dir.display()
    );
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_shared_data_skips_locally_and_fails_on_ci() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        assert_eq!(found_or_skip(&here, "t", Some("true")), Some(here.clone()));
        assert_eq!(found_or_skip(&here, "t", None), Some(here.clone()));
        let gone = here.join("no-such-data");
        assert_eq!(found_or_skip(&gone, "(the skip rule's own test)", None), None);
        assert_eq!(found_or_skip(&gone, "(the skip rule's own test)", Some("false")), None);
        for ci in ["true", "1"] {
            let failed = std::panic::catch_unwind(|| found_or_skip(&gone, "(the skip rule's own test)", Some(ci)));
            assert!(failed.is_err(), "CI={ci}: a missing data set passed");
        }
    }

    #[test]
    fn a_data_error_keeps_its_file_and_io_error_as_the_library_error() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e: crate::Error = DataError::io("mnist/t10k-labels-idx1-ubyte", io).into();
        assert_eq!(e.to_string(), "mnist/t10k-labels-idx1-ubyte: No such file or directory");
        let DataError::Io { path, .. } = e.find::<DataError>().expect("the reader's error") else { panic!("{e:?}") };
        assert_eq!(path, Path::new("mnist/t10k-labels-idx1-ubyte"));
        assert_eq!(e.find::<std::io::Error>().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    }

    #[test]
    fn select_and_normalize_take_whole_rows() {
        let s = Split { images: Tensor::from_vec(vec![1.0, 3.0, 5.0, 9.0], &[2, 2]).unwrap(), labels: vec![0, 1] };
        let picked = s.select(&[1, 0, 1]);
        assert_eq!(picked.images.data(), &[5.0, 9.0, 1.0, 3.0, 5.0, 9.0]);
        assert_eq!(picked.labels, [1, 0, 1]);
        let mut n = s.clone();
        n.normalize_per_row();
        assert_eq!(n.images.data(), &[-1.0, 1.0, -1.0, 1.0]);
        // Rows of no values are left alone (chunks of 0 would panic).
        let mut empty = Split { images: Tensor::from_vec(vec![], &[2, 0]).unwrap(), labels: vec![0, 1] };
        empty.normalize_per_row();
    }
}
