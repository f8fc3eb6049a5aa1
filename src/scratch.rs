//! Scratch vectors kept per thread between calls. A convolution needs a
//! column matrix of several MB per chunk of images; allocating it afresh
//! each call costs zeroing or page faults that rival the copy itself.

use std::cell::RefCell;

thread_local! {
    static FREE: RefCell<Vec<Vec<f32>>> = const { RefCell::new(Vec::new()) };
}

/// Lend `f` a vector from this thread's cache (any length, any contents;
/// `f` resizes it as it needs), and keep it for the next caller.
pub fn with_vec<R>(f: impl FnOnce(&mut Vec<f32>) -> R) -> R {
    let mut v = FREE.with(|free| free.borrow_mut().pop()).unwrap_or_default();
    let r = f(&mut v);
    FREE.with(|free| free.borrow_mut().push(v));
    r
}

/// Lend `f` `len` floats from this thread's cache, holding whatever they
/// held: `f` writes each before it reads it. The vector only grows, so a
/// caller asking for the same length again (a plane after a plane) neither
/// allocates nor zeroes; an allocation per small call queues the threads on
/// the one malloc arena (`memory::keep_freed_memory`).
pub fn with_slice<R>(len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    with_vec(|v| {
        if v.len() < len {
            v.resize(len, 0.0);
        }
        f(&mut v[..len])
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn vectors_come_back_and_nest() {
        let cap = super::with_vec(|v| {
            v.resize(1000, 1.0);
            super::with_vec(|w| assert!(w.as_ptr() != v.as_ptr()));
            v.capacity()
        });
        super::with_vec(|v| assert!(v.capacity() >= cap.min(1000)));
    }

    #[test]
    fn slices_have_the_length_asked_for() {
        assert_eq!(super::with_slice(10, |s| s.len()), 10);
        assert_eq!(super::with_slice(3, |s| s.len()), 3);
        assert_eq!(super::with_slice(0, |s| s.len()), 0);
    }
}
