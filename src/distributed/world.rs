//! The MPI world, or a world of one rank without the `mpi` feature.

#[cfg(feature = "mpi")]
mod imp {
    use mpi::topology::{Communicator, SimpleCommunicator};
    use mpi::traits::*;

    /// Keeps MPI initialised; dropping it finalises MPI (hold it in `main`).
    pub struct Universe(#[allow(dead_code)] Option<mpi::environment::Universe>);

    /// Initialise MPI. The pipeline runs on a rayon thread, not the thread
    /// that initialised MPI, and one thread at a time calls MPI: that is
    /// MPI_THREAD_SERIALIZED.
    pub fn init() -> crate::error::Result<Universe> {
        // Only under a launcher: a plain `nabla` run stays one process
        // without starting MPI's singleton machinery.
        let launched = ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE"].iter().any(|v| std::env::var_os(v).is_some());
        if !launched || mpi::environment::is_initialized() {
            return Ok(Universe(None));
        }
        let (u, level) =
            mpi::initialize_with_threading(mpi::Threading::Serialized).ok_or("MPI could not be initialised")?;
        if level < mpi::Threading::Serialized {
            return Err(format!("the MPI library offers thread level {level:?}; nabla needs Serialized").into());
        }
        Ok(Universe(Some(u)))
    }

    /// The world communicator, when MPI runs.
    pub(crate) fn world() -> Option<SimpleCommunicator> {
        (mpi::environment::is_initialized() && !mpi::environment::is_finalized()).then(SimpleCommunicator::world)
    }

    /// This process's rank in the job (0 without MPI).
    pub fn rank() -> usize {
        world().map_or(0, |w| w.rank() as usize)
    }

    /// How many ranks the job has (1 without MPI).
    pub fn size() -> usize {
        world().map_or(1, |w| w.size() as usize)
    }

    /// Wait until every rank gets here.
    pub fn barrier() {
        if let Some(w) = world() {
            w.barrier();
        }
    }

    /// End every rank of the job (MPI_Abort) after printing `message`:
    /// the other ranks may be waiting for this one in a collective and
    /// would otherwise wait for ever.
    pub fn abort(message: &str) -> ! {
        crate::say!("error (rank {} of {}): {message}", rank(), size());
        match world() {
            Some(w) => w.abort(1),
            None => std::process::exit(1),
        }
    }

    /// Every rank's `mine`, in rank order, on every rank.
    pub fn all_gather_bytes(mine: Vec<u8>) -> crate::Result<Vec<Vec<u8>>> {
        let Some(w) = world() else { return Ok(vec![mine]) };
        let n = w.size() as usize;
        let len =
            i32::try_from(mine.len()).map_err(|_| format!("{} bytes of results: too many to gather", mine.len()))?;
        let mut counts = vec![0i32; n];
        w.all_gather_into(&len, &mut counts[..]);
        let mut displs = Vec::with_capacity(n);
        let mut total = 0i32;
        for &c in &counts {
            displs.push(total);
            total = total.checked_add(c).ok_or("the ranks' results are over 2 GB together: too many to gather")?;
        }
        let mut all = vec![0u8; total as usize];
        {
            let mut part = mpi::datatype::PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
            w.all_gather_varcount_into(&mine[..], &mut part);
        }
        Ok(counts.iter().zip(&displs).map(|(&c, &d)| all[d as usize..(d + c) as usize].to_vec()).collect())
    }

    /// Replace `values` on every rank by the sum over ranks, added in rank
    /// order (((r0 + r1) + r2) + ...), so the result is the same bits on
    /// every rank and from run to run. Every rank must pass the same length.
    ///
    /// Rank r adds up part r of the values (a reduce-scatter: each rank
    /// sends every other its part, all at once), then every rank gathers
    /// every part. Each rank moves and adds 1/N of the data where a sum on
    /// rank 0 and a broadcast would put all of it through rank 0, and the
    /// bits are those of that sum: each value is added in the same order.
    pub fn sum_in_rank_order<T>(values: &mut [T])
    where
        T: mpi::datatype::Equivalence + Copy + Default + std::ops::AddAssign,
    {
        use mpi::datatype::{Partition, PartitionMut};
        let Some(w) = world() else { return };
        let (n, me) = (w.size() as usize, w.rank() as usize);
        // Messages count elements in an i32: send in pieces well below it.
        const PIECE: usize = 1 << 24;
        let mut incoming = vec![T::default(); values.len().min(PIECE) + n];
        for piece in values.chunks_mut(PIECE) {
            let parts: Vec<_> = (0..n).map(|r| crate::distributed::slice(piece.len(), r, n)).collect();
            let counts: Vec<i32> = parts.iter().map(|p| p.len() as i32).collect();
            let displs: Vec<i32> = parts.iter().map(|p| p.start as i32).collect();
            let mine = parts[me].clone();
            let len = mine.len();
            // Every rank's part `me`, one after another in rank order.
            {
                let received = &mut incoming[..n * len];
                let into: Vec<i32> = (0..n).map(|r| (r * len) as i32).collect();
                let mut recv = PartitionMut::new(received, vec![len as i32; n], into);
                w.all_to_all_varcount_into(&Partition::new(&*piece, &counts[..], &displs[..]), &mut recv);
            }
            let sum = &mut piece[mine];
            sum.copy_from_slice(&incoming[..len]);
            for r in 1..n {
                sum.iter_mut().zip(&incoming[r * len..(r + 1) * len]).for_each(|(a, b)| *a += *b);
            }
            incoming[..len].copy_from_slice(sum);
            let mut all = PartitionMut::new(&mut *piece, &counts[..], &displs[..]);
            w.all_gather_varcount_into(&incoming[..len], &mut all);
        }
    }
}

#[cfg(not(feature = "mpi"))]
mod imp {
    /// Nothing to keep alive without MPI.
    pub struct Universe;

    /// Without the `mpi` feature there is one rank.
    pub fn init() -> crate::error::Result<Universe> {
        Ok(Universe)
    }

    /// This process's rank in the job (0 without MPI).
    pub fn rank() -> usize {
        0
    }

    /// How many ranks the job has (1 without MPI).
    pub fn size() -> usize {
        1
    }

    /// Wait until every rank gets here.
    pub fn barrier() {}

    /// Print `message` and exit with status 1.
    pub fn abort(message: &str) -> ! {
        crate::say!("error: {message}");
        std::process::exit(1)
    }

    /// Every rank's `mine`, in rank order: here only this one's.
    pub fn all_gather_bytes(mine: Vec<u8>) -> crate::Result<Vec<Vec<u8>>> {
        Ok(vec![mine])
    }

    /// The sum over one rank: `values` as they are.
    pub fn sum_in_rank_order<T>(_values: &mut [T]) {}
}

pub use imp::*;
