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
        .ok_or("no data.pkl in the archive: not a torch.save checkpoint")?
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
    state_dict(root, &pkl, |key, limit| read_entry(&mut zip, &format!("{prefix}data/{key}"), limit as u64))
}

/// The tensors of the state dict `root` (its pickle named `pkl` in errors);
/// `fetch(key, bytes)` reads a raw storage of at most `bytes` bytes.
fn state_dict(
    root: Value,
    pkl: &str,
    mut fetch: impl FnMut(&str, usize) -> Result<Vec<u8>, String>,
) -> Result<Params, String> {
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
                let limit = numel.checked_mul(width).ok_or_else(|| format!("'{name}': storage size overflows"))?;
                let data = fetch(&skey, limit)?;
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

/// The first pickle of a pre-1.6 `torch.save` file: protocol 2, the magic
/// number 0x1950a86a20f9469cfc6c as LONG1, STOP.
pub const LEGACY_MAGIC: [u8; 15] = *b"\x80\x02\x8a\x0a\x6c\xfc\x9c\x46\xf9\x20\x6a\xa8\x50\x19\x2e";

/// Read a state dict saved in `torch.save`'s format from before PyTorch 1.6
/// (torchvision's older checkpoints): five pickles one after another - the
/// magic number, the format version (1001), facts about the saving machine,
/// the state dict (tensors naming storages by key), the list of storage
/// keys - then each storage in that order as an 8-byte little-endian count
/// of elements followed by the elements.
pub fn read_legacy(bytes: &[u8]) -> Result<Params, String> {
    if !bytes.starts_with(&LEGACY_MAGIC) {
        return Err("not a legacy torch.save file (its magic number is missing)".into());
    }
    let next = |at: usize, what: &str| pickle::load_at(bytes, at).map_err(|e| format!("{what}: {e}"));
    let (version, at) = next(LEGACY_MAGIC.len(), "format version")?;
    if version != Value::Int(1001) {
        return Err(format!("legacy format version {version:?} is not 1001"));
    }
    let (info, at) = next(at, "system information")?;
    if let Value::Dict(items) = &info {
        let little = items.iter().find(|(k, _)| *k == Value::Str("little_endian".into())).map(|(_, v)| v);
        if little == Some(&Value::Bool(false)) {
            return Err("saved on a big-endian machine: not supported".into());
        }
    }
    let (root, at) = next(at, "state dict")?;
    let (keys, mut at) = next(at, "storage keys")?;
    let Value::List(keys) = keys else { return Err("the storage keys are not a list".into()) };
    // Element sizes by storage key, from the tensors that use them.
    let mut widths = std::collections::HashMap::new();
    if let Value::Dict(items) = &root {
        for (_, v) in items {
            if let Value::Tensor { storage, .. } = v {
                if let Value::Storage { dtype, key, .. } = storage.as_ref() {
                    widths.insert(key.clone(), element_size(dtype));
                }
            }
        }
    }
    let mut raw: std::collections::HashMap<String, &[u8]> = std::collections::HashMap::new();
    for key in keys {
        let Value::Str(key) = key else { return Err(format!("a storage key is not a string: {key:?}")) };
        let count = bytes.get(at..at + 8).ok_or_else(|| format!("storage {key}: the file ends before its length"))?;
        let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        let width = widths.get(&key).copied().flatten().unwrap_or(4) as u64;
        let len = count.checked_mul(width).filter(|&n| n <= (bytes.len() - at - 8) as u64).ok_or_else(|| {
            format!("storage {key}: {count} elements, more than the {} bytes left in the file", bytes.len() - at - 8)
        })? as usize;
        raw.insert(key, &bytes[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    state_dict(root, "state dict", |key, limit| {
        let data = raw.get(key).ok_or_else(|| format!("storage {key} is not in the file"))?;
        Ok(data[..data.len().min(limit)].to_vec())
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_a_legacy_torch_save_file() {
        let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_legacy.pth")).unwrap();
        let p = super::read_legacy(&bytes).unwrap();
        assert_eq!(p.get("fc.weight").unwrap().data(), &[0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(p.get("fc.weight").unwrap().shape(), &[2, 3]);
        assert_eq!(p.get("fc.bias").unwrap().data(), &[0.5, -1.0]);
        // A view at offset 8 of a shared 16-float storage.
        let conv = p.get("conv.weight").unwrap();
        assert_eq!(conv.shape(), &[2, 1, 2, 2]);
        assert_eq!(conv.data(), &(8..16).map(|i| i as f32 / 4.0).collect::<Vec<_>>()[..]);
        // Cut anywhere, it is an error, never a panic.
        for cut in 0..bytes.len() {
            assert!(super::read_legacy(&bytes[..cut]).is_err(), "cut at {cut} read");
        }
    }
}
