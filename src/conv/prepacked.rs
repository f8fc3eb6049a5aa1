//! Filters packed once and remembered, for inference.
//!
//! Extracting features runs the same filters over image after image, and
//! packing them for the matrix product was ~6 % of a forward pass at batch 1
//! (10 % of AlexNet's 13 x 13 layers). So the packing of an untracked weight
//! tensor is remembered, keyed by its storage. The cache holds a strong
//! reference to that storage: while an entry lives, `Tensor::data_mut`
//! copies before writing (the storage is shared) and the address cannot be
//! reused, so a hit is always the packing of the values the storage holds.

use crate::error::Result;
use crate::gemm::{PackedA, Transpose};
use crate::tensor::Tensor;
use std::sync::{Arc, Mutex};

/// Weight tensors remembered at most (AlexNet has 5 convolutions), and
/// floats held at most (weights and packings: 256 MiB).
const CAPACITY: usize = 16;
const BUDGET: usize = 64 << 20;

struct Entry {
    storage: Arc<Vec<f32>>,
    key: Key,
    packed: Vec<Arc<PackedA>>,
    /// Floats the entry keeps alive: the weights and their packing.
    floats: usize,
}

/// What a packing is of: `(rows, depth, groups)` of the direct product, or
/// the Winograd transform of `(out, in, kernel size)`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Key {
    Direct(usize, usize, usize),
    Winograd(usize, usize, usize),
}

/// Most recently used last.
static CACHE: Mutex<Vec<Entry>> = Mutex::new(Vec::new());

/// The filters of `w` packed for the product, one `ocg x rows` matrix per
/// group; remembered across calls when `remember` (untracked weights).
pub(crate) fn filters(w: &Tensor, ocg: usize, rows: usize, groups: usize, remember: bool) -> Result<Vec<Arc<PackedA>>> {
    let ws = w.data();
    remembered(w, Key::Direct(ocg, rows, groups), remember, w.numel(), || {
        (0..groups)
            .map(|g| {
                Ok(Arc::new(PackedA::new(Transpose::No, ocg, rows, &ws[g * ocg * rows..(g + 1) * ocg * rows], rows)?))
            })
            .collect()
    })
}

/// The Winograd transforms of the `k x k` filters `w [oc, c, k, k]`, packed
/// (see `conv::winograd`); remembered like [`filters`].
pub(crate) fn winograd_filters(w: &Tensor, oc: usize, c: usize, k: usize, remember: bool) -> Result<Vec<Arc<PackedA>>> {
    use super::winograd::{pack_filters, positions, transform_filters};
    remembered(w, Key::Winograd(oc, c, k), remember, positions(k) * oc * c, || {
        pack_filters(&transform_filters(w.data(), oc, c, k)?, oc, c, k)
    })
}

fn remembered(
    w: &Tensor,
    key: Key,
    remember: bool,
    packed_floats: usize,
    pack: impl FnOnce() -> Result<Vec<Arc<PackedA>>>,
) -> Result<Vec<Arc<PackedA>>> {
    if !remember {
        return pack();
    }
    let storage = w.storage();
    let hit = |e: &Entry| Arc::ptr_eq(&e.storage, storage) && e.key == key;
    {
        let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = cache.iter().position(hit) {
            let e = cache.remove(i);
            let found = e.packed.clone();
            cache.push(e);
            return Ok(found);
        }
    }
    let packed = pack()?;
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let floats = storage.len() + packed_floats;
    cache.push(Entry { storage: storage.clone(), key, packed: packed.clone(), floats });
    let held = |c: &[Entry]| c.iter().map(|e| e.floats).sum::<usize>();
    while cache.len() > CAPACITY || held(&cache) > BUDGET {
        cache.remove(0);
    }
    Ok(packed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_weight_changed_in_place_is_packed_again() {
        let mut w = Tensor::from_vec((0..12).map(|i| i as f32).collect(), &[3, 4]).unwrap();
        let first = filters(&w, 3, 4, 1, true).unwrap();
        assert!(Arc::ptr_eq(&first[0], &filters(&w, 3, 4, 1, true).unwrap()[0]), "the second call is a hit");
        // The cache shares the storage, so writing copies it: a new key.
        w.data_mut()[0] = 100.0;
        let again = filters(&w, 3, 4, 1, true).unwrap();
        assert!(!Arc::ptr_eq(&first[0], &again[0]));
        let (mut c, mut want) = (vec![0.0; 3], vec![0.0; 3]);
        crate::gemm::sgemm_packed(&again[0], Transpose::No, 1, 1.0, &[1.0; 4], 1, 0.0, &mut c, 1).unwrap();
        crate::gemm::sgemm(Transpose::No, Transpose::No, 3, 1, 4, 1.0, w.data(), 4, &[1.0; 4], 1, 0.0, &mut want, 1)
            .unwrap();
        assert_eq!(c, want);
    }
}
