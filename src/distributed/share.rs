//! Independent jobs (the trainings of a sweep, of trials, of cross-validation
//! seeds) shared out over the ranks: rank r runs the jobs i with
//! `i % size == r`, then every rank receives every job's summary. The
//! assignment depends only on the job's index and the world size, and a
//! job computes the same on any rank, so the summaries equal a
//! single-process run's bit for bit (they travel as JSON, parsed with
//! serde_json's exact `float_roundtrip`).

use serde::{de::DeserializeOwned, Serialize};

/// The rank that runs job `i` in a world of `size` ranks.
pub fn owner(i: usize, size: usize) -> usize {
    i % size.max(1)
}

/// What [`share`] returns: every job's summary in job order (on every
/// rank), and the full result of the jobs this rank ran (None for others').
pub struct Shared<L, S> {
    /// Every job's summary, in job order.
    pub summaries: Vec<S>,
    /// The full result of each job this rank ran; None for the others'.
    pub local: Vec<Option<L>>,
}

/// Run jobs `0..count` shared over the ranks (all of them in one process,
/// or on every rank when `together`: jobs that are data-parallel need every
/// rank). `bad` turns a failure to exchange the summaries into the caller's error.
pub fn share<L, S, E>(
    count: usize,
    together: bool,
    mut job: impl FnMut(usize) -> Result<L, E>,
    summary: impl Fn(&L) -> S,
    bad: impl Fn(String) -> E,
) -> Result<Shared<L, S>, E>
where
    S: Serialize + DeserializeOwned,
{
    let (rank, size) = if together { (0, 1) } else { (super::rank(), super::size()) };
    let mut local: Vec<Option<L>> = (0..count).map(|_| None).collect();
    let mut mine: Vec<(usize, S)> = Vec::new();
    for i in (0..count).filter(|&i| owner(i, size) == rank) {
        let l = job(i)?;
        if size > 1 {
            mine.push((i, summary(&l)));
        }
        local[i] = Some(l);
    }
    if size == 1 {
        let summaries = local.iter().map(|l| summary(l.as_ref().expect("every job ran here"))).collect();
        return Ok(Shared { summaries, local });
    }
    let bytes = serde_json::to_vec(&mine).map_err(|e| bad(format!("cannot serialise the results: {e}")))?;
    let mut slots: Vec<Option<S>> = (0..count).map(|_| None).collect();
    for (r, part) in super::all_gather_bytes(bytes).map_err(|e| bad(e.to_string()))?.into_iter().enumerate() {
        let got: Vec<(usize, S)> =
            serde_json::from_slice(&part).map_err(|e| bad(format!("rank {r} sent unreadable results: {e}")))?;
        for (i, s) in got {
            if i >= count || owner(i, size) != r || slots[i].is_some() {
                return Err(bad(format!("rank {r} sent the results of job {i}, which is not its own")));
            }
            slots[i] = Some(s);
        }
    }
    let summaries = slots
        .into_iter()
        .enumerate()
        .map(|(i, s)| s.ok_or_else(|| bad(format!("no rank sent the results of job {i}"))))
        .collect::<Result<_, E>>()?;
    Ok(Shared { summaries, local })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_rank_runs_every_job_in_order() {
        let mut ran = Vec::new();
        let s = share(
            4,
            false,
            |i| {
                ran.push(i);
                Ok::<_, String>(i * 10)
            },
            |l| *l + 1,
            |e| e,
        )
        .unwrap();
        assert_eq!(ran, [0, 1, 2, 3]);
        assert_eq!(s.summaries, [1, 11, 21, 31]);
        assert_eq!(s.local, [Some(0), Some(10), Some(20), Some(30)]);
    }

    #[test]
    fn a_failing_job_is_the_error() {
        let r = share(3, false, |i| if i == 1 { Err("job 1".to_string()) } else { Ok(i) }, |l| *l, |e| e);
        assert_eq!(r.err().as_deref(), Some("job 1"));
    }

    #[test]
    fn jobs_go_round_robin() {
        assert_eq!((0..5).map(|i| owner(i, 2)).collect::<Vec<_>>(), [0, 1, 0, 1, 0]);
        assert_eq!(owner(3, 1), 0);
    }
}
