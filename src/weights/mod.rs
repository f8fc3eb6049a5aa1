//! Weight files: safetensors, and PyTorch's `torch.save` checkpoints (`.pth`:
//! the zip format of PyTorch 1.6 and later, and the older format of pickles
//! and raw storages in a row), read without Python. Both give
//! [`Params`] under the file's own names; strict checking against a model
//! (missing, unexpected, wrongly shaped tensors, all listed) is the model's
//! job (`AlexNet::check`, `Params::load_safetensors`).

mod pickle;
mod pth;

pub use pickle::{PickleError, Value};
pub use pth::read_pth;

use crate::nn::Params;
use std::path::Path;

/// Read every tensor of a `.pth` or `.safetensors` file (by its contents).
pub fn read(path: &Path) -> Result<Params, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))?;
    parse(&bytes).map_err(|e| format!("{}: {e}", path.display()))
}

/// Read every tensor of a weights file already in memory.
pub fn parse(bytes: &[u8]) -> Result<Params, String> {
    if bytes.starts_with(b"PK\x03\x04") {
        return read_pth(bytes);
    }
    if bytes.starts_with(&pth::LEGACY_MAGIC) {
        return pth::read_legacy(bytes);
    }
    // safetensors: an 8-byte header length, then a JSON header.
    let file = safetensors::SafeTensors::deserialize(bytes)
        .map_err(|e| format!("neither a torch zip checkpoint nor a safetensors file ({e})"))?;
    let mut params = Params::new();
    for (name, view) in file.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!("tensor '{name}' is {:?}; only F32 is read", view.dtype()));
        }
        params.insert(&name, crate::Tensor::from_le_bytes(view.data(), view.shape()).map_err(|e| e.to_string())?);
    }
    Ok(params)
}
