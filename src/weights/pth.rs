//! `torch.save`'s zip format: `<name>/data.pkl` holds the pickled state
//! dict, whose tensors point at raw little-endian storages
//! `<name>/data/<key>` in the same archive (stored, not compressed).

use super::pickle::{self, Value};
use crate::error::{Error, Result};
use crate::params::Params;
use crate::tensor::Tensor;
use std::io::Read;

/// Bytes per element of the storage types we read.
fn element_size(dtype: &str) -> Option<usize> {
    match dtype {
        "FloatStorage" => Some(4),
        _ => None,
    }
}

/// The largest `data.pkl` we read: a state dict's pickle holds names and
/// shapes only (about 150 bytes a tensor), so this is 400 000 tensors.
const MAX_PICKLE_BYTES: u64 = 64 << 20;

/// Read every tensor of a state dict saved with `torch.save`.
pub fn read_pth(bytes: &[u8]) -> Result<Params> {
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes))
        .map_err(|e| Error::format(format!("not a valid zip archive: {e}")))?;
    let names: Vec<String> = zip.file_names().filter_map(|n| n.ok().map(|n| n.into_owned())).collect();
    let pkl = names
        .iter()
        .find(|n| n.ends_with("/data.pkl") || *n == "data.pkl")
        .ok_or_else(|| Error::format("no data.pkl in the archive: not a torch.save checkpoint"))?
        .clone();
    let prefix = pkl.trim_end_matches("data.pkl").to_string();
    // An entry may be compressed and its declared size may lie: read at most
    // one byte past what it may hold, and refuse it if that byte arrives.
    let read_entry = |zip: &mut zip::ZipArchive<std::io::Cursor<&[u8]>>, name: &str, limit: u64| -> Result<Vec<u8>> {
        let entry = zip.by_name(name).map_err(|e| Error::file(name, e))?;
        let too_big = |size: u64| Error::file(name, format!("{size} bytes, more than the {limit} expected"));
        if entry.size() > limit {
            return Err(too_big(entry.size()));
        }
        let mut out = Vec::new();
        entry.take(limit + 1).read_to_end(&mut out).map_err(|e| Error::file(name, e))?;
        if out.len() as u64 > limit {
            return Err(too_big(out.len() as u64));
        }
        Ok(out)
    };
    let pickled = read_entry(&mut zip, &pkl, MAX_PICKLE_BYTES.min(bytes.len() as u64))?;
    let root = pickle::load(&pickled).map_err(|e| Error::file(&pkl, e))?;
    state_dict(root, &pkl, |key, limit| read_entry(&mut zip, &format!("{prefix}data/{key}"), limit as u64))
}

/// The elements `offset..offset + count` of a storage of `numel` that a
/// view (`size`, `stride`) covers, if it is a dense row-major slice of it
/// (what state dicts hold). Every product and sum is checked: a shape's
/// product may wrap, and an offset plus a count may pass `usize::MAX`.
fn dense_range(size: &[usize], stride: &[usize], offset: usize, numel: usize) -> Option<std::ops::Range<usize>> {
    if size.len() != stride.len() {
        return None;
    }
    let count = size.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s))?;
    // Strides of dims of size 1 do not matter; the others must be row-major.
    let mut expect = 1usize;
    for (&s, &st) in size.iter().zip(stride).rev() {
        if s != 1 && st != expect {
            return None;
        }
        expect = expect.checked_mul(s)?;
    }
    let end = offset.checked_add(count)?;
    (end <= numel).then_some(offset..end)
}

/// The tensors of the state dict `root` (its pickle named `pkl` in errors);
/// `fetch(key, bytes)` reads a raw storage of at most `bytes` bytes.
fn state_dict(root: Value, pkl: &str, mut fetch: impl FnMut(&str, usize) -> Result<Vec<u8>>) -> Result<Params> {
    let bad = |message: String| Error::format(message);
    let Value::Dict(items) = root else { return Err(bad(format!("{pkl}: the pickle is not a dict of tensors"))) };
    let mut params = Params::new();
    let mut storages: std::collections::HashMap<std::rc::Rc<str>, Vec<u8>> = std::collections::HashMap::new();
    // Bytes of storages read and of tensors built: views may share a
    // storage, so the tensors could otherwise copy it without end.
    let (mut stored, mut built) = (0usize, 0usize);
    let ceiling = super::MAX_FILE_BYTES as usize;
    for (key, value) in items.iter() {
        let Value::Str(name) = key else { return Err(bad(format!("{pkl}: a key is not a string: {key:?}"))) };
        let Value::Tensor { storage, offset, size, stride } = value else {
            return Err(bad(format!("{pkl}: '{name}' is not a tensor")));
        };
        let Value::Storage { dtype, key: skey, numel } = storage.as_ref() else { unreachable!("checked when rebuilt") };
        if params.get(name).is_ok() {
            return Err(bad(format!("{pkl}: '{name}' appears twice")));
        }
        let width = element_size(dtype)
            .ok_or_else(|| bad(format!("'{name}': storage type {dtype} is not supported (only FloatStorage)")))?;
        let bytes = numel
            .checked_mul(width)
            .filter(|&b| b <= ceiling.saturating_sub(stored))
            .ok_or_else(|| bad(format!("'{name}': storage {skey} of {numel} elements is larger than the {ceiling} bytes a weights file may hold")))?;
        let raw = match storages.get(skey) {
            Some(r) => r,
            None => {
                let data = fetch(skey, bytes)?;
                if data.len() != bytes {
                    return Err(bad(format!("'{name}': storage {skey} holds {} bytes, {bytes} expected", data.len())));
                }
                stored += bytes;
                storages.entry(skey.clone()).or_insert(data)
            }
        };
        let range = dense_range(size, stride, *offset, *numel).ok_or_else(|| {
            bad(format!("'{name}': a view (size {size:?}, stride {stride:?}, offset {offset}) that is not a dense slice of its storage"))
        })?;
        // Within the storage, so these cannot overflow: numel * width did not.
        let (start, end) = (range.start * width, range.end * width);
        built = built.saturating_add(end - start);
        if built > ceiling {
            return Err(bad(format!(
                "'{name}': the tensors need more than the {ceiling} bytes a weights file may hold"
            )));
        }
        let tensor = Tensor::from_le_bytes(&raw[start..end], size)?;
        params.insert(name, tensor);
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
pub fn read_legacy(bytes: &[u8]) -> Result<Params> {
    let bad = |message: String| Error::format(message);
    if !bytes.starts_with(&LEGACY_MAGIC) {
        return Err(bad("not a legacy torch.save file (its magic number is missing)".into()));
    }
    let next = |at: usize, what: &str| {
        pickle::load_at(bytes, at).map_err(|e| Error::Format { key: Some(what.into()), message: e.to_string() })
    };
    let (version, at) = next(LEGACY_MAGIC.len(), "format version")?;
    if !matches!(version, Value::Int(1001)) {
        return Err(bad(format!("legacy format version {version:?} is not 1001")));
    }
    let (info, at) = next(at, "system information")?;
    if let Value::Dict(items) = &info {
        let little = items.iter().find(|(k, _)| matches!(k, Value::Str(k) if &**k == "little_endian"));
        if matches!(little, Some((_, Value::Bool(false)))) {
            return Err(bad("saved on a big-endian machine: not supported".into()));
        }
    }
    let (root, at) = next(at, "state dict")?;
    let (keys, mut at) = next(at, "storage keys")?;
    let Value::List(keys) = keys else { return Err(bad("the storage keys are not a list".into())) };
    // Element sizes by storage key, from the tensors that use them.
    let mut widths = std::collections::HashMap::new();
    if let Value::Dict(items) = &root {
        for (_, v) in items.iter() {
            if let Value::Tensor { storage, .. } = v {
                if let Value::Storage { dtype, key, .. } = storage.as_ref() {
                    widths.insert(key.clone(), element_size(dtype));
                }
            }
        }
    }
    let mut raw: std::collections::HashMap<std::rc::Rc<str>, &[u8]> = std::collections::HashMap::new();
    for key in keys.iter() {
        let Value::Str(key) = key else { return Err(bad(format!("a storage key is not a string: {key:?}"))) };
        // `at` never passes the end: each step below stays inside `bytes`.
        let left = bytes.len() - at;
        let count =
            bytes.get(at..at + 8).ok_or_else(|| bad(format!("storage {key}: the file ends before its length")))?;
        let count = u64::from_le_bytes(count.try_into().expect("8 bytes"));
        let width = widths.get(key).copied().flatten().unwrap_or(4) as u64;
        let len = count.checked_mul(width).filter(|&n| n <= (left - 8) as u64).ok_or_else(|| {
            bad(format!("storage {key}: {count} elements, more than the {} bytes left in the file", left - 8))
        })? as usize;
        raw.insert(key.clone(), &bytes[at + 8..at + 8 + len]);
        at += 8 + len;
    }
    state_dict(root, "state dict", |key, limit| {
        let data = raw.get(key).ok_or_else(|| bad(format!("storage {key} is not in the file")))?;
        // The file may hold more than the pickle declared: take what it asks.
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

#[cfg(test)]
mod reader_tests {
    use super::*;

    /// A pickle `{name: tensor}` for each (name, offset, size), all views of
    /// one float storage "0" of `numel` elements, with row-major strides.
    /// Numbers are written as 8-byte LONG1, so any i64 fits.
    fn pickle(numel: i64, tensors: &[(&str, i64, &[i64])]) -> Vec<u8> {
        let int = |p: &mut Vec<u8>, v: i64| {
            p.extend_from_slice(b"\x8a\x08");
            p.extend_from_slice(&v.to_le_bytes());
        };
        let text = |p: &mut Vec<u8>, s: &str| {
            p.push(0x8c);
            p.push(s.len() as u8);
            p.extend_from_slice(s.as_bytes());
        };
        let mut p = b"\x80\x02}(".to_vec();
        for (name, offset, size) in tensors {
            text(&mut p, name);
            p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
            text(&mut p, "storage");
            p.extend_from_slice(b"ctorch\nFloatStorage\n");
            text(&mut p, "0");
            text(&mut p, "cpu");
            int(&mut p, numel);
            p.extend_from_slice(b"tQ");
            int(&mut p, *offset);
            p.push(b'(');
            size.iter().for_each(|&d| int(&mut p, d));
            p.extend_from_slice(b"t(");
            let mut strides = vec![1i64; size.len()];
            for i in (0..size.len().saturating_sub(1)).rev() {
                strides[i] = strides[i + 1].wrapping_mul(size[i + 1]);
            }
            strides.iter().for_each(|&s| int(&mut p, s));
            p.extend_from_slice(b"t\x89)tR");
        }
        p.extend_from_slice(b"u.");
        p
    }

    fn read(numel: i64, tensors: &[(&str, i64, &[i64])], storage: &[u8]) -> std::result::Result<Params, String> {
        let root = pickle::load(&pickle(numel, tensors)).map_err(|e| e.to_string())?;
        state_dict(root, "data.pkl", |_, limit| Ok(storage[..storage.len().min(limit)].to_vec()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn views_read_their_slice() {
        let storage: Vec<u8> = (0..8).flat_map(|i| (i as f32).to_le_bytes()).collect();
        let p = read(8, &[("a", 2, &[2, 2]), ("b", 0, &[8])], &storage).unwrap();
        assert_eq!(p.get("a").unwrap().data(), &[2.0, 3.0, 4.0, 5.0]);
        assert_eq!(p.get("b").unwrap().shape(), &[8]);
    }

    #[test]
    fn overflowing_offsets_counts_and_shapes_are_errors() {
        let storage = [0u8; 16];
        let dense = "not a dense slice of its storage";
        for (offset, size) in [
            (i64::MAX, &[2i64][..]),         // offset * 4 passes usize::MAX
            (i64::MAX, &[(1 << 61) + 1, 4]), // offset + count wraps to 3, inside the storage
            (0, &[1 << 62, 4]),              // the shape's product wraps to 0
            (0, &[(1 << 62) + 1, 4]),        // ... or to 4, the storage's size
            (3, &[1 << 31, 1 << 31, 4]),     // 2^64, wraps to 0 after an offset
            (5, &[0]),                       // an empty view past the end
        ] {
            let err = read(4, &[("t", offset, size)], &storage).unwrap_err();
            assert!(err.contains(dense), "offset {offset}, size {size:?}: {err}");
        }
        // A storage whose byte size overflows, or passes the ceiling.
        for numel in [i64::MAX, 1 << 40] {
            let err = read(numel, &[("t", 0, &[1])], &storage).unwrap_err();
            assert!(err.contains("larger than the 1073741824 bytes"), "{err}");
        }
        // The direct checks, with sizes no pickle could carry.
        assert_eq!(dense_range(&[2], &[1], usize::MAX, usize::MAX), None);
        assert_eq!(dense_range(&[usize::MAX, 2], &[2, 1], 0, usize::MAX), None);
        assert_eq!(dense_range(&[2, 1, 3], &[3, 99, 1], 1, 7), Some(1..7));
        assert_eq!(dense_range(&[2, 3], &[1, 2], 0, 6), None);
    }

    #[test]
    fn views_sharing_a_storage_cannot_multiply_it_past_the_ceiling() {
        // 257 views of one 4 MiB storage would be 1.03 GiB of tensors.
        let numel = 1 << 20;
        let names: Vec<String> = (0..257).map(|i| format!("t{i}")).collect();
        let size = [numel];
        let views: Vec<(&str, i64, &[i64])> = names.iter().map(|n| (n.as_str(), 0, &size[..])).collect();
        let storage = vec![0u8; 4 << 20];
        let err = read(numel, &views, &storage).unwrap_err();
        assert!(err.contains("'t256': the tensors need more than the 1073741824 bytes"), "{err}");
        assert_eq!(read(numel, &views[..2], &storage).unwrap().iter().count(), 2);
        let err = read(4, &[("t", 0, &[2]), ("t", 2, &[2])], &storage[..16]).unwrap_err();
        assert!(err.contains("'t' appears twice"), "{err}");
    }
}
