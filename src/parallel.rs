//! How many threads an inner loop may use. A loop that already hands whole
//! pieces of work to every thread (the images of a batch) runs each piece
//! inside [`serial`], so the matrix products and copies inside it stay on
//! their thread instead of splitting again: nested splits cost
//! synchronisation and scatter one image's data over both cores' caches.

use std::cell::Cell;

thread_local! {
    static SERIAL: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` on a thread of rayon's pool (at once when already on one). A
/// thread outside the pool that starts a parallel loop hands it to the pool
/// and sleeps until it is done: two wake-ups per loop, and a forward pass of
/// AlexNet has ~15 loops. Started from inside, the loops are plain
/// fork-joins between the pool's threads (measured: ~3 % of a batch-1
/// forward pass on the 2-core CI machine).
pub fn in_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::scope(|_| f())
}

/// Run `f` with [`threads`] reporting 1 on this thread.
pub fn serial<R>(f: impl FnOnce() -> R) -> R {
    let before = SERIAL.with(|s| s.replace(true));
    let r = f();
    SERIAL.with(|s| s.set(before));
    r
}

/// `f`, inside [`serial`] when `cond`.
pub fn serial_if<R>(cond: bool, f: impl FnOnce() -> R) -> R {
    if cond {
        serial(f)
    } else {
        f()
    }
}

/// Threads an inner loop may split into: 1 inside [`serial`], else rayon's.
pub fn threads() -> usize {
    if SERIAL.with(Cell::get) {
        1
    } else {
        rayon::current_num_threads()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn serial_scopes_nest_and_end() {
        let outside = super::threads();
        super::serial(|| {
            assert_eq!(super::threads(), 1);
            super::serial(|| assert_eq!(super::threads(), 1));
            assert_eq!(super::threads(), 1);
        });
        assert_eq!(super::threads(), outside);
    }
}
