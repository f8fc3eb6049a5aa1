//! `torch.save`'s zip format: `<name>/data.pkl` holds the pickled state
//! dict, whose tensors point at raw little-endian storages
//! `<name>/data/<key>` in the same archive (stored, not compressed).

use super::pickle::{self, Value};
use crate::nn::Params;
use crate::tensor::Tensor;
use std::io::Read;

/// Bytes per element of the storage types we read.
fn element_size(dtype: &str) -> Option<usize> {
    match dtype {
        "FloatStorage" => Some(4),
        _ => None,
    }
}

/// Read every tensor of a state dict saved with `torch.save`.
pub fn read_pth(bytes: &[u8]) -> Result<Params, String> {
    let mut zip =
        zip::ZipArchive::new(std::io::Cursor::new(bytes)).map_err(|e| format!("not a valid zip archive: {e}"))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .ok_or("no data.pkl in the archive (a legacy pre-1.6 torch file? re-save it with a current PyTorch, or as safetensors)")?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    let read_entry =
        |zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, limit: u64| -> Result<Vec<u8>, String> {
            let entry = zip.by_name(name).map_err(|e| format!("{name}: {e}"))?;
            if entry.size() > limit {
                return Err(format!("{name}: {} bytes, more than the {limit} expected", entry.size()));
            }
            let mut out = Vec::new();
            entry.take(limit).read_to_end(&mut out).map_err(|e| format!("{name}: {e}"))?;
            Ok(out)
        };
    let pickled = read_entry(&mut zip, &pkl, bytes.len() as u64)?;
    let root = pickle::load(&pickled).map_err(|e| format!("{pkl}: {e}"))?;
    let Value::Dict(items) = root else { return Err(format!("{pkl}: the pickle is not a dict of tensors")) };
    let mut params = Params::new();
    let mut storages: std::collections::HashMap<String, Vec<u8>> = std::collections::HashMap::new();
    for (key, value) in items {
        let Value::Str(name) = key else { return Err(format!("{pkl}: a key is not a string: {key:?}")) };
        let Value::Tensor { storage, offset, size, stride } = value else {
            return Err(format!("{pkl}: '{name}' is not a tensor"));
        };
        let Value::Storage { dtype, key: skey, numel } = *storage else { unreachable!("checked when rebuilt") };
        let width = element_size(&dtype)
            .ok_or_else(|| format!("'{name}': storage type {dtype} is not supported (only FloatStorage)"))?;
        let raw = match storages.get(&skey) {
            Some(r) => r,
            None => {
                let limit = numel.checked_mul(width).ok_or_else(|| format!("'{name}': storage size overflows"))? as u64;
                let data = read_entry(&mut zip, &format!("{prefix}data/{skey}"), limit)?;
                if data.len() != numel * width {
                    return Err(format!(
                        "'{name}': storage {skey} holds {} bytes, {} expected",
                        data.len(),
                        numel * width
                    ));
                }
                storages.entry(skey.clone()).or_insert(data)
            }
        };
        // Only dense row-major views are read (what state dicts hold).
        let count: usize = size.iter().product();
        let mut expect = 1;
        let dense = size.len() == stride.len()
            && size.iter().zip(&stride).rev().all(|(&s, &st)| {
                let ok = s == 1 || st == expect;
                expect *= s;
                ok
            });
        if !dense || offset + count > numel {
            return Err(format!("'{name}': a view (size {size:?}, stride {stride:?}, offset {offset}) that is not a dense slice of its storage"));
        }
        let tensor = Tensor::from_le_bytes(&raw[offset * 4..(offset + count) * 4], &size).map_err(|e| e.to_string())?;
        params.insert(&name, tensor);
    }
    Ok(params)
}
