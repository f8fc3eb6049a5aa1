//! How many threads an inner loop may use. A loop that already hands whole
//! pieces of work to every thread (the images of a batch) runs each piece
//! inside [`serial`], so the matrix products and copies inside it stay on
//! their thread instead of splitting again: nested splits cost
//! synchronisation and scatter one image's data over both cores' caches.

use rayon::prelude::*;
use std::cell::Cell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

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

/// Run `job(i)` once for every `i < count`, on the calling thread and on
/// rayon's pool, and return when all are done.
///
/// Why not `into_par_iter`: called from a thread outside the pool (a
/// library user's `main`, a bench), that hands the whole loop to the pool
/// and puts the caller to sleep until it ends: two wake-ups, 10-35 us per
/// loop on the 2-core CI machine, a tenth of a 256^3 product. Here the
/// caller starts on the first index at once and the pool's threads join as
/// they wake; each index goes to whoever claims it first, so a late or busy
/// pool only means the caller does more of the work. Inside the pool,
/// rayon's own fork-join is already cheap and is used as it is.
pub fn for_each_index(count: usize, job: impl Fn(usize) + Sync) {
    let helpers = threads().min(count).saturating_sub(1);
    if helpers == 0 {
        (0..count).for_each(job);
        return;
    }
    if rayon::current_thread_index().is_some() {
        (0..count).into_par_iter().for_each(&job);
        return;
    }
    let claims = Arc::new(Claims {
        count,
        next: AtomicUsize::new(0),
        done: AtomicUsize::new(0),
        panicked: AtomicBool::new(false),
    });
    let job: *const (dyn Fn(usize) + Sync + '_) = &job;
    // SAFETY: only the lifetime is erased, so the helpers (which may outlive
    // this call) can hold the pointer. They dereference it only to run an
    // index they claimed, and this function returns only after every index
    // was claimed (the caller claims all that are left) and finished (`done`
    // counts each after its call, panicked or not). A helper that wakes
    // later claims nothing and never dereferences it.
    let job = Job(unsafe {
        std::mem::transmute::<*const (dyn Fn(usize) + Sync + '_), *const (dyn Fn(usize) + Sync + 'static)>(job)
    });
    for _ in 0..helpers {
        let claims = Arc::clone(&claims);
        rayon::spawn(move || {
            if let Err(payload) = claims.work(job) {
                // Reported on the calling thread, once the loop has ended.
                drop(payload);
                claims.panicked.store(true, Ordering::Relaxed);
            }
        });
    }
    let mine = claims.work(job);
    let claimed = match mine {
        Ok(()) => count,
        // Claim what is left so nobody starts it; wait for what runs.
        Err(_) => claims.next.fetch_add(count, Ordering::Relaxed).min(count),
    };
    claims.wait(claimed);
    if let Err(payload) = mine {
        resume_unwind(payload);
    }
    if claims.panicked.load(Ordering::Relaxed) {
        panic!("a task of a parallel loop panicked");
    }
}

/// The job of a [`for_each_index`] loop, as the helpers hold it: a pointer,
/// not a reference, since it dangles once the loop has returned.
#[derive(Clone, Copy)]
struct Job(*const (dyn Fn(usize) + Sync));

// SAFETY: the pointee is `Sync` (shared by every thread that runs an index),
// and `for_each_index` keeps it alive while any index may still run.
unsafe impl Send for Job {}

/// The indices of one [`for_each_index`] loop: the next to claim, and how
/// many have finished.
struct Claims {
    count: usize,
    next: AtomicUsize,
    done: AtomicUsize,
    panicked: AtomicBool,
}

impl Claims {
    /// Claim and run indices until none are left, or one panics (caught, so
    /// the loop can still end before the panic goes on).
    fn work(&self, job: Job) -> std::thread::Result<()> {
        loop {
            let i = self.next.fetch_add(1, Ordering::Relaxed);
            if i >= self.count {
                return Ok(());
            }
            // SAFETY: index `i` is claimed and not yet counted done, so the
            // loop has not returned and the job is alive (see `Job`).
            let r = catch_unwind(AssertUnwindSafe(|| unsafe { (*job.0)(i) }));
            self.done.fetch_add(1, Ordering::Release);
            r?;
        }
    }

    /// Wait until `claimed` indices have finished.
    fn wait(&self, claimed: usize) {
        let mut spins = 0u32;
        while self.done.load(Ordering::Acquire) < claimed {
            // The others are running: their end is microseconds away.
            if spins < 1 << 12 {
                std::hint::spin_loop();
                spins += 1;
            } else {
                std::thread::yield_now();
            }
        }
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

    /// Every index runs once, from outside the pool (a test's own thread)
    /// and from inside it, whatever the count against the threads.
    #[test]
    fn each_index_runs_once() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for count in [0, 1, 2, 3, 17, 200] {
            let runs: Vec<AtomicUsize> = (0..count).map(|_| AtomicUsize::new(0)).collect();
            super::for_each_index(count, |i| {
                runs[i].fetch_add(1, Ordering::Relaxed);
            });
            rayon::scope(|_| super::for_each_index(count, |i| _ = runs[i].fetch_add(1, Ordering::Relaxed)));
            assert!(runs.iter().all(|r| r.load(Ordering::Relaxed) == 2), "{count}");
        }
    }

    /// A panicking task ends the loop with a panic on the caller, after the
    /// tasks already running have finished (they may write the caller's data).
    #[test]
    fn a_panic_reaches_the_caller() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        for bad in [0, 5] {
            let (started, ended) = (AtomicUsize::new(0), AtomicUsize::new(0));
            let r = std::panic::catch_unwind(|| {
                super::for_each_index(8, |i| {
                    started.fetch_add(1, Ordering::Relaxed);
                    assert_ne!(i, bad, "task {i} fails");
                    std::thread::sleep(std::time::Duration::from_millis(2));
                    ended.fetch_add(1, Ordering::Relaxed);
                })
            });
            assert!(r.is_err());
            assert_eq!(started.load(Ordering::Relaxed), ended.load(Ordering::Relaxed) + 1);
        }
    }
}
