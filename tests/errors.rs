//! The library's one error type, seen from outside: whatever fails, `?`
//! makes it a `nabla::Error`; its text is the line the `nabla` command
//! prints; and `source()` leads from the context (the pipeline file, the
//! stage) down to the typed causes (the reader's error, the I/O error).

use nabla::data::DataError;
use nabla::error::{FileReadError, ReadError};
use nabla::nn::{Layer, LayerSpec, Sequential};
use nabla::pipeline::{RunError, RunOptions};
use std::path::{Path, PathBuf};

/// A fresh folder for one test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nabla-errors-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A pipeline training a linear model on the MNIST folder `root`.
fn pipeline(root: &Path) -> String {
    format!(
        r#"version = 1
name = "errors"
seed = 0

[data]
dataset = "mnist"
root = "{}"

[model]
kind = "linear"

[train]
optimizer = "sgd"
lr = 1e-5
iterations = 2
batch_size = 0
loss = "sum"
eval_every = 1
"#,
        root.display()
    )
}

#[test]
fn a_failed_stage_keeps_the_readers_error_and_the_io_error_under_it() {
    let dir = scratch("stage");
    let mnist = dir.join("mnist");
    std::fs::create_dir_all(&mnist).unwrap();
    // A link to nothing: found by its name, then unreadable.
    let images = mnist.join("train-images-idx3-ubyte");
    std::os::unix::fs::symlink(dir.join("gone"), &images).unwrap();
    std::fs::write(mnist.join("train-labels-idx1-ubyte"), b"").unwrap();
    let file = dir.join("p.toml");
    let loaded = nabla::pipeline::parse(&file, &pipeline(&mnist), &[]).unwrap();
    let opts = RunOptions { out: Some(dir.join("out")), progress: false, resume: false, wait: false };
    let err = nabla::pipeline::run(&loaded, &opts).unwrap_err();

    // What the user reads: the file, the stage, the data file, the reason.
    let text = err.to_string();
    let head = format!("{}: data: {}: the IDX file cannot be read: ", file.display(), images.display());
    assert!(text.starts_with(&head), "{text}");
    assert!(!dir.join("out").exists(), "a failed run wrote its folder");

    // What a program walks: each source, outermost first.
    let RunError::Stage { stage: "data", source, .. } = &err else { panic!("not the data stage: {err:?}") };
    assert!(matches!(**source, nabla::Error::Other(_)), "{source:?}");
    let chain: Vec<&(dyn std::error::Error + 'static)> =
        std::iter::successors(Some(&err as &(dyn std::error::Error + 'static)), |&e| e.source()).collect();
    assert!(chain.len() >= 5, "stage, library error, reader's error, read error, I/O error: {chain:?}");
    let data = chain.iter().find_map(|e| e.downcast_ref::<DataError>()).expect("the reader's error is in the chain");
    let DataError::Read(FileReadError { path, what: "the IDX file", source: ReadError::Io(_) }) = data else {
        panic!("{data:?}")
    };
    assert_eq!(path, &images);
    let io = chain.last().unwrap().downcast_ref::<std::io::Error>().expect("the I/O error ends the chain");
    assert_eq!(io.kind(), std::io::ErrorKind::NotFound);

    // Lifted into the library's error by `?`, it reads the same and finds the same.
    let lifted: nabla::Error = err.into();
    assert_eq!(lifted.to_string(), text);
    assert!(lifted.find::<DataError>().is_some());
    assert_eq!(lifted.find::<std::io::Error>().map(|e| e.kind()), Some(std::io::ErrorKind::NotFound));
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Every public reader's failure is a `nabla::Error` (or converts into one
/// with `?`), with the file it names kept as a field.
#[test]
fn readers_and_builders_fail_with_the_library_error() {
    fn weights(path: &Path) -> nabla::Result<usize> {
        Ok(nabla::weights::read(path)?.iter().count())
    }
    fn mnist(root: &Path) -> nabla::Result<usize> {
        Ok(nabla::data::mnist::load(root)?.train.len())
    }
    fn network(input: &[usize]) -> nabla::Result<usize> {
        Ok(Sequential::new(input, &[LayerSpec::new(Layer::Flatten)])?.param_count())
    }

    let dir = scratch("readers");
    let missing = dir.join("w.pth");
    let err = weights(&missing).unwrap_err();
    let nabla::Error::Read(FileReadError { path, what: "the weights file", source: ReadError::Io(io) }) = &err else {
        panic!("{err:?}")
    };
    assert_eq!((path, io.kind()), (&missing, std::io::ErrorKind::NotFound));
    assert!(err.to_string().starts_with(&format!("{}: the weights file cannot be read: ", missing.display())));

    std::fs::write(&missing, b"not weights").unwrap();
    let err = weights(&missing).unwrap_err();
    let nabla::Error::File { path, source } = &err else { panic!("{err:?}") };
    assert_eq!(path, &missing);
    assert!(matches!(source.downcast_ref::<nabla::Error>(), Some(nabla::Error::Format { .. })), "{source:?}");

    let err = mnist(&dir.join("nowhere")).unwrap_err();
    assert_eq!(err.to_string(), format!("{}: MNIST folder not found", dir.join("nowhere").display()));
    assert!(matches!(err.find::<DataError>(), Some(DataError::Format { .. })), "{err:?}");

    let err = network(&[]).unwrap_err();
    assert_eq!(err.to_string(), "the data's examples have no usable shape: []");
    assert!(err.find::<nabla::nn::sequential::LayerError>().is_some(), "{err:?}");

    let err = Layer::Linear { out: 3, bias: true }.output(&[2, 4]).unwrap_err();
    assert!(matches!(err, nabla::Error::Invalid { op: "linear", .. }), "{err:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}
