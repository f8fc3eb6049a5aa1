//! Runs across processes under `mpirun` (Open MPI through the `mpi` crate,
//! behind the cargo feature `mpi`): which rank this process is, how the
//! independent trainings of a sweep, trials or cross-validation are shared
//! out and gathered ([`share`]), and the gradient sum of data-parallel
//! training ([`grads`]).
//!
//! Without the feature, or in a process not started by `mpirun`, the world
//! is one rank: every function here is then the single-process behaviour
//! (run every job, sum nothing), so callers need no `cfg`.

pub mod grads;
pub mod infer;
pub mod share;
mod world;

pub use world::{abort, all_gather_bytes, barrier, init, rank, size, sum_in_rank_order, Universe};

/// Whether this process is rank 0: the one that prints progress and writes
/// the output folder and the checkpoints.
pub fn is_root() -> bool {
    rank() == 0
}

/// The rows `[start, end)` of a batch of `rows` that rank `r` of `n` takes:
/// contiguous, in rank order, sizes differing by at most one.
pub fn slice(rows: usize, r: usize, n: usize) -> std::ops::Range<usize> {
    r * rows / n..(r + 1) * rows / n
}

/// Rows `range` of a batch (its first axis).
pub(crate) fn rows(x: &crate::tensor::Tensor, range: std::ops::Range<usize>) -> crate::Result<crate::tensor::Tensor> {
    let per = x.shape()[1..].iter().product::<usize>();
    let mut shape = x.shape().to_vec();
    shape[0] = range.len();
    crate::tensor::Tensor::from_vec(x.data()[range.start * per..range.end * per].to_vec(), &shape)
}

#[cfg(test)]
mod tests {
    #[test]
    fn slices_cover_the_batch_in_rank_order() {
        for rows in [1, 2, 7, 64, 101] {
            for n in 1..=rows.min(5) {
                let parts: Vec<_> = (0..n).map(|r| super::slice(rows, r, n)).collect();
                assert_eq!(parts[0].start, 0);
                assert_eq!(parts[n - 1].end, rows);
                assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
                assert!(parts.iter().all(|p| p.len() >= rows / n && p.len() <= rows / n + 1));
            }
        }
    }
}
