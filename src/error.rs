//! The library's one error type. A tensor, tape or layer failure names the
//! operation and the values that were wrong; a file's names the file and,
//! where it can, the key in it; a failure of a module above this one (a data
//! set reader, the pipeline runner) is kept whole as its own typed error.
//!
//! The `Display` text is the whole message on one line, context first
//! (`p.toml: data: mnist/train-images-idx3-ubyte: the IDX file cannot be
//! read: No such file or directory (os error 2)`), as
//! the `nabla` command prints it. [`std::error::Error::source`] walks down
//! the same message to its typed causes, one context at a time, so a caller
//! can match on them (see [`Error::find`]) rather than parse the text.

pub use crate::files::{FileReadError, ReadError};
use crate::gemm::GemmError;
use std::error::Error as StdError;
use std::path::PathBuf;

/// The engine's `Result`: an [`Error`] on failure.
pub type Result<T> = std::result::Result<T, Error>;

/// Why an operation of the library failed. Its `Display` text is one line a
/// user can act on, such as `matmul: shape mismatch: [2, 5] vs [1024, 25]`.
///
/// The first variants are the engine's own (tensor, tape, layer, optimiser,
/// product): each names the operation (`op`, e.g. `"matmul"`) and the values
/// that were wrong. Then come files ([`Error::Read`], [`Error::File`]) and
/// values in them ([`Error::Format`]), checks explained in words
/// ([`Error::Message`]), and the typed errors of the modules above this one
/// ([`Error::Other`]: [`DataError`](crate::data::DataError),
/// [`LayerError`](crate::nn::sequential::LayerError),
/// [`ConfigError`](crate::pipeline::ConfigError),
/// [`RunError`](crate::pipeline::RunError), ...), which convert with `?`.
/// More variants may come, so a `match` on it needs a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Two operands whose shapes do not fit together.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}")]
    Shape {
        /// The operation.
        op: &'static str,
        /// The left (or only) operand's shape.
        lhs: Vec<usize>,
        /// The right operand's shape, or the shape asked for.
        rhs: Vec<usize>,
    },
    /// A flat buffer whose length is not the element count of its shape.
    #[error("{op}: {data} values cannot have shape {shape:?} ({numel} elements)")]
    DataLength {
        /// The operation.
        op: &'static str,
        /// The buffer's length.
        data: usize,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The element count of `shape`.
        numel: usize,
    },
    /// An axis past the tensor's rank.
    #[error("{op}: axis {axis} is out of range for shape {shape:?}")]
    Axis {
        /// The operation.
        op: &'static str,
        /// The axis asked for.
        axis: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// A tensor of the wrong rank (number of axes).
    #[error("{op}: expected a {expected}-d tensor, got shape {shape:?}")]
    Rank {
        /// The operation.
        op: &'static str,
        /// The rank the operation needs.
        expected: usize,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// A tensor with no elements where one is needed (a mean, an argmax).
    #[error("{op}: tensor is empty (shape {shape:?})")]
    Empty {
        /// The operation.
        op: &'static str,
        /// The tensor's shape.
        shape: Vec<usize>,
    },
    /// Any other bad argument or state, explained in `message`.
    #[error("{op}: {message}")]
    Invalid {
        /// The operation.
        op: &'static str,
        /// What was wrong, with the values involved.
        message: String,
    },
    /// A matrix product refused its operands (see [`GemmError`]).
    #[error(transparent)]
    Gemm(#[from] GemmError),
    /// A file that could not be read: missing, unreadable, not a regular
    /// file, or larger than it may be.
    #[error(transparent)]
    Read(#[from] FileReadError),
    /// Something about the file or folder `path` is wrong; `source` says
    /// what (often an [`Error::Format`], or an I/O or parser error).
    #[error("{}: {source}", path.display())]
    File {
        /// The file or folder.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A value in a file, or in bytes read from one, that is wrong: where
    /// (a field's or an entry's name) when that is one key, and what.
    #[error("{}{message}", key.as_ref().map_or(String::new(), |k| format!("{k}: ")))]
    Format {
        /// Where the value is, e.g. `data.train_limit`.
        key: Option<String>,
        /// What is wrong, with the values involved.
        message: String,
    },
    /// A check that failed, explained in words, with no typed cause to keep
    /// (a pipeline stage's own checks, a download's).
    #[error("{0}")]
    Message(String),
    /// The typed error of a module above this one, kept whole: find it with
    /// [`Error::find`] or `source()`. Each of those modules converts its error
    /// with a `From` impl of its own, so `?` lifts it into this.
    #[error("{0}")]
    Other(#[source] Box<dyn StdError + Send + Sync>),
}

/// A message alone, as [`Error::Message`]: what `?` makes of an internal
/// check's `String`.
impl From<String> for Error {
    fn from(message: String) -> Error {
        Error::Message(message)
    }
}

/// A message alone, as [`Error::Message`].
impl From<&str> for Error {
    fn from(message: &str) -> Error {
        Error::Message(message.to_string())
    }
}

impl Error {
    /// A failure about the file `path`: `source` says what (an error, or a
    /// message).
    pub fn file(path: impl Into<PathBuf>, source: impl Into<Box<dyn StdError + Send + Sync>>) -> Error {
        Error::File { path: path.into(), source: source.into() }
    }

    /// A wrong value, in no particular key.
    pub fn format(message: impl Into<String>) -> Error {
        Error::Format { key: None, message: message.into() }
    }

    /// This error and its causes, outermost first: what
    /// [`std::error::Error::source`] walks.
    pub fn chain(&self) -> impl Iterator<Item = &(dyn StdError + 'static)> {
        std::iter::successors(Some(self as &(dyn StdError + 'static)), |&e| e.source())
    }

    /// The first error of type `T` in [`Error::chain`]: e.g.
    /// `e.find::<nabla::data::DataError>()` for the reader's error under a
    /// failed pipeline stage, or `e.find::<std::io::Error>()` for the I/O
    /// error under that.
    ///
    /// ```
    /// use nabla::data::DataError;
    /// use std::path::Path;
    ///
    /// fn train_images(root: &Path) -> nabla::Result<usize> {
    ///     Ok(nabla::data::mnist::load(root)?.train.len()) // `?` makes the DataError an Error
    /// }
    ///
    /// let e = train_images(Path::new("no/such/folder")).unwrap_err();
    /// assert_eq!(e.to_string(), "no/such/folder: MNIST folder not found");
    /// let Some(DataError::Format { path, .. }) = e.find::<DataError>() else { panic!("{e:?}") };
    /// assert_eq!(path, Path::new("no/such/folder"));
    /// ```
    pub fn find<T: StdError + 'static>(&self) -> Option<&T> {
        self.chain().find_map(|e| e.downcast_ref::<T>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module above this one, with its own error (as `data` has).
    #[derive(Debug, thiserror::Error)]
    #[error("{}: {source}", path.display())]
    struct ReaderError {
        path: PathBuf,
        source: std::io::Error,
    }

    impl From<ReaderError> for Error {
        fn from(e: ReaderError) -> Error {
            Error::Other(Box::new(e))
        }
    }

    #[test]
    fn the_source_chain_leads_from_the_context_to_the_typed_causes() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let reader: Error = ReaderError { path: "mnist/train".into(), source: io }.into();
        let outer = Error::file("p.toml", reader);
        assert_eq!(outer.to_string(), "p.toml: mnist/train: No such file or directory");
        let texts: Vec<String> = outer.chain().map(|e| e.to_string()).collect();
        assert_eq!(
            texts,
            [
                "p.toml: mnist/train: No such file or directory",
                "mnist/train: No such file or directory",
                "mnist/train: No such file or directory",
                "No such file or directory",
            ]
        );
        assert_eq!(outer.find::<ReaderError>().unwrap().path, PathBuf::from("mnist/train"));
        assert_eq!(outer.find::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::NotFound);
        assert!(outer.find::<GemmError>().is_none());
    }

    #[test]
    fn file_and_value_errors_read_as_before() {
        let read = Error::from(ReadError::NotRegular("FIFO").at("w.pth".as_ref(), "the weights file"));
        assert_eq!(read.to_string(), "w.pth: the weights file is a FIFO, not a regular file");
        assert!(matches!(read.find::<ReadError>(), Some(ReadError::NotRegular("FIFO"))));
        let key = Error::Format { key: Some("data.train_limit".into()), message: "9 is too many".into() };
        assert_eq!(key.to_string(), "data.train_limit: 9 is too many");
        assert_eq!(Error::file("a.bin", Error::format("truncated")).to_string(), "a.bin: truncated");
        assert_eq!(Error::file("a.bin", "truncated").to_string(), "a.bin: truncated");
    }
}
