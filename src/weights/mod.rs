//! Weight files: safetensors, and PyTorch's `torch.save` checkpoints (`.pth`:
//! the zip format of PyTorch 1.6 and later, and the older format of pickles
//! and raw storages in a row), read without Python. Both give
//! [`Params`] under the file's own names; strict checking against a model
//! (missing, unexpected, wrongly shaped tensors, all listed) is the model's
//! job (`AlexNet::check`, `Params::load_safetensors`).
//!
//! Every size a file declares is checked before it is used: the file
//! against [`MAX_FILE_BYTES`] before it is read, the pickle against its own
//! limits (`pickle.rs`), and each shape, stride, offset and byte count with
//! checked arithmetic.

mod pickle;
mod pth;

pub use pickle::{PickleError, Value};
pub use pth::read_pth;

use crate::error::{Error, Result};
use crate::params::Params;
use std::path::Path;

/// The largest weights file we read, and the most bytes its tensors may
/// take: torchvision's AlexNet, the largest we use, is 244 MB; 1 GiB leaves
/// room for a bigger backbone and refuses a sparse or endless file before
/// any of it is read.
pub const MAX_FILE_BYTES: u64 = 1 << 30;

/// Read every tensor of a `.pth` or `.safetensors` file (by its contents).
/// Only a regular file of at most [`MAX_FILE_BYTES`] is opened. An error
/// names the file: [`Error::Read`] when it cannot be read, else an
/// [`Error::File`] around [`parse`]'s error.
pub fn read(path: &Path) -> Result<Params> {
    let bytes = crate::files::read_capped(path, MAX_FILE_BYTES).map_err(|e| e.at(path, "the weights file"))?;
    parse(&bytes).map_err(|e| Error::file(path, e))
}

/// Read every tensor of a weights file already in memory. What is wrong in
/// it is an [`Error::Format`] (or, inside a zip, an [`Error::File`] naming
/// the archive's entry, around the pickle's [`PickleError`]).
pub fn parse(bytes: &[u8]) -> Result<Params> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read_pth(bytes);
    }
    if bytes.starts_with(&pth::LEGACY_MAGIC) {
        return pth::read_legacy(bytes);
    }
    // safetensors: an 8-byte header length, then a JSON header.
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| Error::format(format!("neither a torch zip checkpoint nor a safetensors file ({e})")))?;
    let mut params = Params::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(Error::format(format!("tensor '{name}' is {:?}; only F32 is read", view.dtype())));
        }
        // The crate checked the shape against the bytes (with checked
        // arithmetic); check again, as `Tensor::from_vec` multiplies freely.
        let numel = view.shape().iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if numel.and_then(|n| n.checked_mul(4)) != Some(view.data().len()) {
            return Err(Error::format(format!(
                "tensor '{name}': shape {:?} does not match its {} bytes",
                view.shape(),
                view.data().len()
            )));
        }
        params.insert(&name, crate::Tensor::from_le_bytes(view.data(), view.shape())?);
    }
    Ok(params)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_weights_file_is_refused_before_reading_when_it_cannot_be_one() {
        let dir = std::env::temp_dir().join(format!("nabla-weights-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("w.pth");
        assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
        let err = super::read(&fifo).unwrap_err();
        assert!(matches!(err.find(), Some(crate::files::ReadError::NotRegular("FIFO"))), "{err}");
        let err = err.to_string();
        assert!(err.contains("w.pth: the weights file is a FIFO, not a regular file"), "{err}");
        let sparse = dir.join("big.pth");
        std::fs::File::create(&sparse).unwrap().set_len(5 << 29).unwrap();
        let err = super::read(&sparse).unwrap_err().to_string();
        assert!(err.contains("big.pth: the weights file is 2684354560 bytes, more than the 1073741824"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
