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
}
