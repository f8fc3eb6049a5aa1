//! Dropout on one data-parallel rank's rows of a batch.
//!
//! A rank runs the forward pass on its slice of the mini-batch only, but its
//! dropout masks must be the ones the single process would draw for those
//! rows. So the rank draws (and throws away) the masks of the rows before
//! and after its slice: every rank's generator moves as the single process's
//! does. `distributed::grads::step` says where the slice sits
//! ([`with_rows_around`]); [`crate::nn::Sequential`] asks ([`dropout`]). It
//! lives here, below `distributed`, so the layers need not import the
//! data-parallel step that imports them.

use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::tensor::Rng;
use std::cell::Cell;

thread_local! {
    /// While a rank runs its slice: the batch's rows before and after it.
    static AROUND: Cell<(usize, usize)> = const { Cell::new((0, 0)) };
}

/// Run `f` (a forward pass on a slice of a batch) with `around` rows of the
/// batch before and after the slice; back to none afterwards.
pub(crate) fn with_rows_around<T>(around: (usize, usize), f: impl FnOnce() -> T) -> T {
    AROUND.with(|a| a.set(around));
    let out = f();
    AROUND.with(|a| a.set((0, 0)));
    out
}

/// Dropout on this rank's rows of a batch: the masks of the rows before and
/// after the slice are drawn and thrown away, so each row's mask is the one
/// the single process would give it. (Outside [`with_rows_around`] there are
/// none: plain [`Tape::dropout`].)
pub(crate) fn dropout(tape: &Tape, h: &Var, p: f32, rng: &mut Rng) -> Result<Var> {
    let (before, after) = AROUND.with(Cell::get);
    // `Tape::dropout` draws one number per value, row by row, when p > 0.
    let per_row = h.value().shape()[1..].iter().product::<usize>();
    let skip = |rows: usize, rng: &mut Rng| {
        if p > 0.0 {
            (0..rows * per_row).for_each(|_| {
                rng.uniform();
            });
        }
    };
    skip(before, rng);
    let out = tape.dropout(h, p, true, rng)?;
    skip(after, rng);
    Ok(out)
}
