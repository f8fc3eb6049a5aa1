//! The BLIS loop nest around a microkernel, and how threads share it.
//!
//! ```text
//! loop 5  jc: split n into NC-wide blocks            (B block lives in L3)
//!  loop 4  pc: split k into KC-deep blocks; pack B
//!   loop 3  ic: split m into MC-tall blocks; pack A   (lives in L2)
//!    loop 2  jr: NR-wide micro-panels of B            (one lives in L1)
//!     loop 1  ir: MR-tall micro-panels of A -> microkernel
//! ```
//!
//! Threads do not share the nest: a threaded product is cut into one share
//! per thread, rows of A or columns of B, and each thread packs and
//! multiplies its share start to end (`run_split`), so there is no barrier
//! per KC block. Products whose k dwarfs m and n (the MNIST gradient X^T * D,
//! k = 60000) instead split k in two: each thread streams its own half of the
//! big operand once into a private C, and the partial results are summed.
//! That split depends on the shape only (one thread runs both halves), so C
//! has the same bits on any number of threads; so do the shares, whose
//! elements each see the same KC blocks in the same order - except where a
//! share is a single B panel wide, or A is transposed and a share is cut by
//! rows with n <= NR: `blocking` then sizes KC from the share's own m, and
//! the bits can differ from one thread's (known, not yet fixed). Only products too
//! narrow to cut (`run_blocked` with several threads) split loop 3, or loop
//! 2 when m has too few MC blocks to go round.
//! Products below `PARALLEL_MIN_FLOPS` stay on the calling thread: forking
//! costs more than it saves there.
//!
//! A is normally packed per block; a transposed A feeding a single B panel
//! (X^T * D again) is read in place, since its columns already sit in memory
//! as the kernel wants them (see `APanels`).

use super::kernel::{Kernel, TileSize};
use super::pack::{Gather, View};
use rayon::prelude::*;
use std::cell::Cell;
use std::thread::LocalKey;

/// Below this many flops (2mnk) a product runs on one thread (~40 us of work).
const PARALLEL_MIN_FLOPS: usize = 1 << 23;

/// B blocks smaller than this many floats (1 MiB) are packed by one thread:
/// waking the others would cost more than the copy.
const PARALLEL_PACK_MIN: usize = 1 << 15;

/// A C of at least this many floats (16 MiB) written in one pass goes
/// around the caches (see `run_blocked`).
const STREAM_C_FLOATS: usize = 1 << 22;

/// The largest MR * NR of any kernel (for the edge-tile scratch buffer).
const MAX_TILE: usize = 512;

/// One product `C = alpha * op(A) * op(B) + beta * C`, operands already
/// resolved to strided views; C is row-major with row stride `ldc`.
#[derive(Clone, Copy)]
pub(crate) struct Problem {
    pub m: usize,
    pub n: usize,
    pub k: usize,
    pub alpha: f32,
    pub a: View,
    pub b: View,
    pub beta: f32,
    pub c: *mut f32,
    pub ldc: usize,
    /// op(A) already packed by [`pack_all_a`] (null: pack it here).
    pub a_packed: *const f32,
    /// With `a_packed`: rows of the whole packed A (0: this problem's m)
    /// and the row of it this problem starts at (a thread's share).
    pub a_rows: usize,
    pub a_row0: usize,
    /// B read through offset tables instead of `b` (see [`Gather`]).
    pub b_gather: Option<Gather>,
}

// SAFETY: the operands are lent for the whole call and only read; threads
// write disjoint tiles of C (see `run_blocked`, `run_split`, `run_split_k`).
unsafe impl Send for Problem {}
// SAFETY: as for Send: the threads that share a Problem read its operands
// and write disjoint tiles of C.
unsafe impl Sync for Problem {}

/// # Safety
/// `p.a` and `p.b` cover op(A) (`m x k`) and op(B) (`k x n`): every
/// `at(i, p)` / `at(p, j)` inside them is readable; or op(A) is at `p.a_packed`,
/// packed by [`pack_all_a`] for `K` with `p.a_rows.max(p.m)` rows and this k;
/// or op(B) is `p.b_gather`, whose offsets all land in its source. `p.c` is
/// valid for reads and writes of `C[i][j]` at `i * ldc + j` (`i < m`, `j < n`),
/// and nothing else accesses those elements during the call. The CPU runs `K`.
/// With `beta == 0`, `k > 0` and `alpha != 0`, C may start uninitialised:
/// every element is written before it is read (`sgemm_new` relies on this).
pub(crate) unsafe fn gemm<K: Kernel>(p: Problem) {
    // SAFETY: this function's contract (the entry points in `mod.rs` and
    // `packed.rs` prove it before calling); each block below is handed a piece
    // of the same operands, inside them.
    unsafe {
        if p.m == 0 || p.n == 0 {
            return;
        }
        if p.k == 0 || p.alpha == 0.0 {
            scale_c(&p);
            return;
        }
        // A streamed C (see `run_blocked`) is written by aligned stores only:
        // when its rows start inside a cache line, the columns up to the next
        // line go first as a product of their own, and the rest then starts
        // on a line (every row does, with `ldc` a multiple of 16). Only when
        // both parts, like the whole, sum k in one block: narrow parts may be
        // blocked otherwise (`blocking`), and their bits would then depend on
        // where C sits in memory.
        let lead = (p.c as usize).next_multiple_of(64).saturating_sub(p.c as usize) / 4;
        if streams::<K>(&p) && lead > 0 && p.n >= lead + K::NR && (p.c as usize).is_multiple_of(4) {
            let b_gather = p.b_gather.map(|g| g.from(0, lead));
            let first = Problem { n: lead, ..p };
            let rest =
                Problem { n: p.n - lead, b: View { ptr: p.b.at(0, lead), ..p.b }, b_gather, c: p.c.add(lead), ..p };
            if blocking::<K>(&first).0 >= p.k && blocking::<K>(&rest).0 >= p.k {
                gemm::<K>(first);
                return gemm::<K>(rest);
            }
        }
        let big = 2 * p.m * p.n * p.k >= PARALLEL_MIN_FLOPS;
        let threads = if big { crate::parallel::threads() } else { 1 };
        // Whether to split k is decided by the shape alone, and always into the
        // same parts, so the partial sums - and the bits of C - are the same on
        // any number of threads (one thread runs the parts in turn).
        if big
            && p.a_packed.is_null()
            && p.b_gather.is_none()
            && p.k >= 4 * p.m.max(p.n)
            && p.k >= SPLIT_K_PARTS * 2 * K::KC
        {
            run_split_k::<K>(p)
        } else if threads > 1 && p.m.max(p.n) >= threads * 2 * K::MR.max(K::NR) {
            run_split::<K>(p, threads)
        } else {
            run_blocked::<K>(p, threads)
        }
    }
}

/// Each thread takes its own share of the product and packs and multiplies
/// it start to end: one parallel region, no barrier per KC block, so one
/// thread's packing (bound by memory) runs while the other multiplies. The
/// larger operand is split (each thread streams half of it and reads the
/// smaller one whole): rows of A when m > n (a lone image's 13 x 13 layers,
/// whose filters outweigh their columns), else columns of B. Sharing one
/// packed B block between the threads instead (`run_blocked` with two
/// threads, the BLIS way) packs less but waits twice per KC block: on the
/// AVX2 machine of session 7 this was 13-37 % faster for AlexNet's conv and
/// fc shapes and 256^3, and the same from 1024^3. Each element of C sees the
/// same KC blocks in the same order as on one thread, so the bits do not
/// depend on the thread count.
///
/// # Safety
/// As for [`gemm`].
unsafe fn run_split<K: Kernel>(p: Problem, threads: usize) {
    // SAFETY: each share is a sub-problem of the caller's (rows `at..at + per`
    // of A and C, or columns of B and C), inside the operands the contract
    // covers; the shares write disjoint parts of C.
    unsafe {
        let by_rows = p.m > p.n;
        let (len, unit) = if by_rows { (p.m, K::MR) } else { (p.n, K::NR) };
        let per = len.div_ceil(unit).div_ceil(threads) * unit;
        crate::parallel::for_each_index(len.div_ceil(per), |t| {
            let p = &p; // capture the whole problem (Sync), not its raw-pointer field
            let at = t * per;
            let part = if by_rows {
                let a_rows = p.a_rows.max(p.m);
                // Packed A is indexed by row; unpacked A is a view moved down.
                let a = if p.a_packed.is_null() { View { ptr: p.a.at(at, 0), ..p.a } } else { p.a };
                Problem { m: per.min(p.m - at), a, a_rows, a_row0: p.a_row0 + at, c: p.c.add(at * p.ldc), ..*p }
            } else {
                let b = View { ptr: p.b.at(0, at), ..p.b };
                let b_gather = p.b_gather.map(|g| g.from(0, at));
                Problem { n: per.min(p.n - at), b, b_gather, c: p.c.add(at), ..*p }
            };
            run_blocked::<K>(part, 1);
        });
    }
}

/// `C = beta * C`, never reading C when beta is zero.
///
/// # Safety
/// `p.c` is valid for reads and writes of the `m x n` elements of C, rows `ldc` apart.
unsafe fn scale_c(p: &Problem) {
    // SAFETY: the caller vouches for each row of C: `n` elements at `i * ldc`.
    unsafe {
        for i in 0..p.m {
            let row = std::slice::from_raw_parts_mut(p.c.add(i * p.ldc), p.n);
            if p.beta == 0.0 {
                row.fill(0.0);
            } else if p.beta != 1.0 {
                row.iter_mut().for_each(|x| *x *= p.beta);
            }
        }
    }
}

/// Whether C is written around the caches: a C far larger than them that is
/// written once (beta 0, one KC block: the fully connected layers' weight
/// gradients, k = the batch). With ordinary stores each of its lines would
/// be read from memory before it is written, and evict something on the way.
fn streams<K: Kernel>(p: &Problem) -> bool {
    p.beta == 0.0 && p.k <= blocking::<K>(p).0 && p.m.saturating_mul(p.n) >= STREAM_C_FLOATS && p.ldc.is_multiple_of(16)
}

/// Split `total` into the fewest blocks of at most `max`, of equal size
/// rounded up to a multiple of `unit`, with a block count divisible by `ways`.
fn balanced_block(total: usize, max: usize, unit: usize, ways: usize) -> usize {
    let blocks = total.div_ceil(max).next_multiple_of(ways.max(1));
    total.div_ceil(blocks).next_multiple_of(unit).max(unit)
}

/// Parts of k in a split-k product.
const SPLIT_K_PARTS: usize = 2;

/// # Safety
/// As for [`gemm`].
unsafe fn run_split_k<K: Kernel>(p: Problem) {
    // SAFETY: each part reads columns `k0..k0 + kp` of op(A) and rows of op(B),
    // inside the operands; part 0 writes C and the others their own buffers
    // (`m x n`, rows `n` apart), so no two threads write the same element.
    unsafe {
        let part = balanced_block(p.k, p.k.div_ceil(SPLIT_K_PARTS), K::KC, 1);
        let parts: Vec<(usize, usize)> = (0..p.k).step_by(part).map(|k0| (k0, part.min(p.k - k0))).collect();
        // Part 0 writes C itself (with beta); the others fill private buffers.
        let mut partials: Vec<Vec<f32>> = parts.iter().skip(1).map(|_| vec![0.0f32; p.m * p.n]).collect();
        let outs: Vec<Problem> = std::iter::once(p)
            .chain(partials.iter_mut().map(|buf| Problem { beta: 0.0, c: buf.as_mut_ptr(), ldc: p.n, ..p }))
            .collect();
        crate::parallel::for_each_index(parts.len(), |t| {
            let (k0, kp) = parts[t];
            let p = &outs[t]; // capture the whole problem (Sync), not its raw-pointer field
            let a = View { ptr: p.a.at(0, k0), ..p.a };
            let b = View { ptr: p.b.at(k0, 0), ..p.b };
            run_blocked::<K>(Problem { k: kp, a, b, ..*p }, 1);
        });
        for part in &partials {
            for (i, src) in part.chunks_exact(p.n).enumerate() {
                let dst = std::slice::from_raw_parts_mut(p.c.add(i * p.ldc), p.n);
                dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
            }
        }
    }
}

/// How much of L2 (1 MiB per core on the CI machine) the block of A in use
/// may fill when the blocking is chosen for streaming rather than reuse
/// (measured on X^T * D: 512 KiB gave 1.8x matrixmultiply, 768 KiB 2.1-2.5x,
/// 1 MiB and more about 2x).
const STREAM_A_BYTES: usize = 768 * 1024;

/// Block sizes (kc, mc, nc) for one product.
///
/// With a single B panel (n <= NR: the 10 MNIST classes) B is tiny and A is
/// used once, so the product is a stream over A and the blocks are shaped
/// to read A in memory order: whole rows of a row-major A (kc = k), or whole
/// columns of a transposed one (mc = m). Otherwise the kernel's cache blocking
/// applies.
fn blocking<K: Kernel>(p: &Problem) -> (usize, usize, usize) {
    let nc = balanced_block(p.n, K::NC, K::NR, 1);
    let (kc_max, mc_max) = if p.n > K::NR || !p.a_packed.is_null() {
        (K::KC, K::MC)
    } else if p.a.cs == 1 {
        let kc = p.k.min(STREAM_A_BYTES / 4 / K::MR / 4);
        (kc, (STREAM_A_BYTES / 4 / kc).max(K::MR))
    } else {
        let mc = p.m.min(STREAM_A_BYTES / 4 / 64);
        ((STREAM_A_BYTES / 4 / mc).max(64), mc)
    };
    (balanced_block(p.k, kc_max, 1, 1), mc_max, nc)
}

/// Row blocks `(start, len)` of at most `mc_max` rows for loop 3: m is first
/// cut into `ways` parts of whole MR panels, as equal as they can be, then
/// each part into equal blocks, so every thread gets the same work (rounding
/// one block count up to a multiple of the threads would not: 1024 rows in
/// 96-row blocks is 11 blocks, 6 for one thread and 5 for the other).
fn row_blocks(m: usize, mr: usize, mc_max: usize, ways: usize) -> Vec<(usize, usize)> {
    let units = m.div_ceil(mr);
    let ways = ways.clamp(1, units.max(1));
    let mut blocks = Vec::new();
    let mut unit = 0;
    for w in 0..ways {
        let part = units / ways + usize::from(w < units % ways);
        let count = (part * mr).div_ceil(mc_max).max(1);
        for b in 0..count {
            let len = part / count + usize::from(b < part % count);
            let start = unit * mr;
            if len > 0 && start < m {
                blocks.push((start, (len * mr).min(m - start)));
            }
            unit += len;
        }
    }
    blocks
}

/// # Safety
/// As for [`gemm`].
unsafe fn run_blocked<K: Kernel>(p: Problem, threads: usize) {
    // SAFETY: every pointer handed on is an element of op(A), op(B) or C with
    // row and column inside the problem (`ic < m`, `pc < k`, `jc < n`); the
    // packed buffers are sized for the panels the packers write; the tasks write
    // disjoint row blocks (`blocks`) or column panels (`s0..s1`) of C.
    unsafe {
        let (kc_max, mc_max, nc_max) = blocking::<K>(&p);
        let stream = streams::<K>(&p);
        let blocks = row_blocks(p.m, K::MR, mc_max, threads);
        let m_blocks = blocks.len();
        with_buffer(&B_BUF, nc_max.next_multiple_of(K::NR) * kc_max, |bbuf| {
            for jc in (0..p.n).step_by(nc_max) {
                let nc = nc_max.min(p.n - jc);
                let panels = nc.div_ceil(K::NR);
                // Split loop 2 as well when loop 3 alone cannot feed every thread.
                let n_split = if m_blocks < threads { threads.min(panels) } else { 1 };
                for pc in (0..p.k).step_by(kc_max) {
                    let kc = kc_max.min(p.k - pc);
                    // With a single MR panel of A (m <= MR: the 10-class weight
                    // gradient dZ^T X), each B value is used once, so a row-major B
                    // is read in place and only its ragged last panel is packed.
                    let direct_b = p.b_gather.is_none() && p.b.cs == 1 && p.m <= K::MR;
                    let b_at = View { ptr: p.b.at(pc, jc), ..p.b };
                    let gather_at = p.b_gather.map(|g| g.from(pc, jc));
                    let packed = if direct_b { 1 } else { panels };
                    let bpack = &mut bbuf[..packed * K::NR * kc];
                    if direct_b {
                        let full = nc / K::NR * K::NR;
                        K::pack_b(bpack, View { ptr: b_at.at(0, full), ..b_at }, nc - full, kc);
                    } else {
                        // Each thread packs a run of whole panels.
                        let per = panels.div_ceil(if threads > 1 && panels >= 4 && kc * nc >= PARALLEL_PACK_MIN {
                            threads
                        } else {
                            1
                        });
                        let pack = |(g, run): (usize, &mut [f32])| {
                            let j0 = g * per * K::NR;
                            let cols = (per * K::NR).min(nc - j0);
                            match gather_at {
                                Some(gt) => K::pack_b_gather(run, gt.from(0, j0), cols, kc),
                                None => K::pack_b(run, View { ptr: b_at.at(0, j0), ..b_at }, cols, kc),
                            }
                        };
                        if per < panels {
                            bpack.par_chunks_mut(per * K::NR * kc).enumerate().for_each(pack);
                        } else {
                            pack((0, bpack));
                        }
                    }
                    let bpanels = if direct_b {
                        BPanels::InPlace { b: b_at, full: nc / K::NR, edge: bpack }
                    } else {
                        BPanels::Packed(bpack)
                    };
                    // A transposed A with a single B panel is a pure stream whose
                    // columns are already laid out as packed panels (MR neighbouring
                    // floats per k), so packing would only copy it once more.
                    let direct_a = p.a.rs == 1 && panels == 1 && p.a_packed.is_null();
                    // The first KC block applies beta; later ones accumulate.
                    let beta = if pc == 0 { p.beta } else { 1.0 };
                    let task = |t: usize| {
                        let p = &p; // capture the whole problem (Sync), not its raw-pointer field
                        let (ib, js) = (t / n_split, t % n_split);
                        let (ic, mc) = blocks[ib];
                        let per = panels.div_ceil(n_split);
                        let (s0, s1) = (js * per, ((js + 1) * per).min(panels));
                        if s0 >= s1 {
                            return;
                        }
                        let a = View { ptr: p.a.at(ic, pc), ..p.a };
                        let tile = Problem { m: mc, n: nc, k: kc, beta, c: p.c.add(ic * p.ldc + jc), ..*p };
                        if !p.a_packed.is_null() {
                            // Packed beforehand: KC block `pc` holds all of A's
                            // panels, so this row block starts `ic * kc` in.
                            let m_pad = p.a_rows.max(p.m).next_multiple_of(K::MR);
                            let at = p.a_packed.add(pc * m_pad + (p.a_row0 + ic) * kc);
                            let apack = std::slice::from_raw_parts(at, mc.next_multiple_of(K::MR) * kc);
                            macro_kernel::<K>(&tile, APanels::Packed(apack), &bpanels, s0..s1, stream);
                        } else if direct_a {
                            // The kernel walks the block a column at a time (one
                            // row of a row-major X per k step, 3 KB apart for
                            // MNIST), a pattern the hardware prefetchers did not
                            // follow on an Intel Xeon: fetched in memory order
                            // first, X^T D ran 2.3x faster there.
                            warm(a, mc, kc);
                            // Whole panels are read in place; only the ragged last
                            // one is packed (a full read there would overrun A).
                            let full = mc / K::MR * K::MR;
                            with_buffer(&A_BUF, K::MR * kc, |edge| {
                                K::pack_a(edge, View { ptr: a.at(full, 0), ..a }, mc - full, kc);
                                macro_kernel::<K>(&tile, APanels::InPlace { a, full, edge }, &bpanels, s0..s1, stream);
                            });
                        } else {
                            with_buffer(&A_BUF, mc.next_multiple_of(K::MR) * kc, |apack| {
                                K::pack_a(apack, a, mc, kc);
                                macro_kernel::<K>(&tile, APanels::Packed(apack), &bpanels, s0..s1, stream);
                            });
                        }
                    };
                    let tasks = m_blocks * n_split;
                    if threads > 1 && tasks > 1 {
                        (0..tasks).into_par_iter().for_each(task);
                    } else {
                        (0..tasks).for_each(task);
                    }
                }
            }
        });
    }
}

/// Ask for every cache line of a transposed A block (`mc` x `kc`, each of
/// its `kc` columns a run of `mc` floats in memory) in memory order.
///
/// A transposed A has `a.rs == 1`: each column's floats are contiguous.
/// (Prefetches never fault, whatever the address.)
fn warm(a: View, mc: usize, kc: usize) {
    for p in 0..kc {
        super::lane::prefetch_run(a.at(0, p), mc);
    }
}

/// Pack all of op(A) (`m x k`) as the blocked loops read it: for each KC
/// block of k (the blocking `blocking` picks), every MR-row panel, panel `r`
/// of the block starting at `r * MR * kc`; blocks follow each other. Holds
/// `m.next_multiple_of(MR) * k` floats.
///
/// # Safety
/// `a` covers an `m x k` matrix (every `a.at(i, p)`, `i < m`, `p < k`, is
/// readable) and the CPU runs `K`. (`dst` is a slice: a short one panics.)
pub(crate) unsafe fn pack_all_a<K: Kernel>(dst: &mut [f32], a: View, m: usize, k: usize) {
    // SAFETY: each KC block is columns `pc..pc + kc` of the `m x k` matrix the
    // caller vouches for, packed into its own chunk of `dst`.
    unsafe {
        let kc_max = balanced_block(k, K::KC, 1, 1);
        let m_pad = m.next_multiple_of(K::MR);
        // The KC blocks are independent: large operands pack them in parallel.
        let block = |(b, out): (usize, &mut [f32])| {
            let pc = b * kc_max;
            K::pack_a(out, View { ptr: a.at(0, pc), ..a }, m, kc_max.min(k - pc));
        };
        let blocks = &mut dst[..m_pad * k];
        if m_pad * k >= PARALLEL_PACK_MIN && crate::parallel::threads() > 1 {
            blocks.par_chunks_mut(m_pad * kc_max).enumerate().for_each(block);
        } else {
            blocks.chunks_mut(m_pad * kc_max).enumerate().for_each(block);
        }
    }
}

/// Where loop 1 finds its A panels.
enum APanels<'a> {
    /// Packed by `pack_a`: panel `r` at `r * MR * k`, step MR.
    Packed(&'a [f32]),
    /// A transposed A read in place (panel `r` at column `r * MR`, step =
    /// its row stride) for the first `full` rows; the rest packed in `edge`.
    InPlace { a: View, full: usize, edge: &'a [f32] },
}

/// Where loop 2 finds its B panels.
enum BPanels<'a> {
    /// Packed by `pack_b`: panel `s` at `s * NR * k`, step NR.
    Packed(&'a [f32]),
    /// A row-major B read in place (panel `s` at column `s * NR`, step = its
    /// row stride) for the first `full` panels; the last one packed in `edge`.
    InPlace { b: View, full: usize, edge: &'a [f32] },
}

/// Loops 2 and 1 over one block of A and the B panels `panels`.
///
/// # Safety
/// `t` is a block of a problem that meets [`gemm`]'s contract: the A panels
/// hold `t.m` rows (in whole MR panels) of `t.k` values, the B panels in
/// `panels` hold `t.k` rows of NR values (or of B's row stride, in place), and
/// `t.c` has the `t.m x t.n` elements of the block, rows `t.ldc` apart.
/// With `stream` (which needs `t.beta == 0` and `t.ldc` a multiple of 16),
/// whole tiles whose C starts on a 64-byte boundary are written by
/// non-temporal stores, fenced before returning.
unsafe fn macro_kernel<K: Kernel>(t: &Problem, a: APanels, b: &BPanels, panels: std::ops::Range<usize>, stream: bool) {
    // SAFETY: panel `s` of B and `r` of A lie inside the buffers (or operands) of
    // the contract; an MR x NR tile of C is written in place only when it lies
    // wholly inside the block, else through `scratch` (MAX_TILE floats), of which
    // only the existing rows and columns are copied out. A streamed tile starts
    // on 64 bytes and its rows are `ldc` (a multiple of 16 floats) apart, so
    // every row does, as `TileSize::Streamed` asks.
    unsafe {
        assert!(K::MR * K::NR <= MAX_TILE);
        debug_assert!(!stream || (t.beta == 0.0 && t.ldc.is_multiple_of(16)));
        for s in panels {
            let j0 = s * K::NR;
            let cols = K::NR.min(t.n - j0);
            let (bp, b_step) = match *b {
                BPanels::Packed(bpack) => (bpack.as_ptr().add(s * K::NR * t.k), K::NR),
                BPanels::InPlace { b, full, .. } if s < full => (b.at(0, j0), b.rs),
                BPanels::InPlace { edge, .. } => (edge.as_ptr(), K::NR),
            };
            for r in 0..t.m.div_ceil(K::MR) {
                let i0 = r * K::MR;
                let rows = K::MR.min(t.m - i0);
                let (ap, a_step) = match a {
                    APanels::Packed(apack) => (apack.as_ptr().add(r * K::MR * t.k), K::MR),
                    APanels::InPlace { a, full, .. } if i0 < full => (a.at(i0, 0), a.cs),
                    APanels::InPlace { edge, .. } => (edge.as_ptr(), K::MR),
                };
                let cp = t.c.add(i0 * t.ldc + j0);
                if rows == K::MR && cols == K::NR {
                    let size =
                        if stream && (cp as usize).is_multiple_of(64) { TileSize::Streamed } else { TileSize::Full };
                    K::tile(size, t.k, t.alpha, ap, a_step, bp, b_step, t.beta, cp, t.ldc);
                } else {
                    // Edge tile: compute the whole tile into scratch, copy the part
                    // that exists. C outside the matrix is never touched.
                    let mut scratch = [0.0f32; MAX_TILE];
                    let size = if rows <= K::SHORT {
                        TileSize::Short
                    } else if cols <= K::NARROW {
                        TileSize::Narrow
                    } else {
                        TileSize::Full
                    };
                    K::tile(size, t.k, t.alpha, ap, a_step, bp, b_step, 0.0, scratch.as_mut_ptr(), K::NR);
                    for i in 0..rows {
                        let src = &scratch[i * K::NR..i * K::NR + cols];
                        if t.beta == 0.0 {
                            // A copy, not a slice of C: with beta 0, C may not be initialised yet.
                            std::ptr::copy_nonoverlapping(src.as_ptr(), cp.add(i * t.ldc), cols);
                        } else {
                            let dst = std::slice::from_raw_parts_mut(cp.add(i * t.ldc), cols);
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d = s + t.beta * *d);
                        }
                    }
                }
            }
        }
        if stream {
            super::lane::fence();
        }
    }
}

thread_local! {
    static A_BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
    static B_BUF: Cell<Vec<f32>> = const { Cell::new(Vec::new()) };
}

/// Lend `f` a 64-byte-aligned scratch slice of `len` floats from a per-thread
/// cache. The buffer is taken out while in use, so a nested call on the same
/// thread (rayon may run another product while this one waits) gets its own.
fn with_buffer<R>(key: &'static LocalKey<Cell<Vec<f32>>>, len: usize, f: impl FnOnce(&mut [f32]) -> R) -> R {
    let mut buf = key.take();
    if buf.len() < len + 16 {
        buf = vec![0.0; len + 16];
    }
    let off = buf.as_ptr().align_offset(64).min(16);
    let r = f(&mut buf[off..off + len]);
    key.set(buf);
    r
}

#[cfg(test)]
mod tests {
    use super::row_blocks;

    #[test]
    fn row_blocks_cover_m_and_balance_threads() {
        for (m, mr, mc, ways) in
            [(1024, 12, 96, 2), (2048, 12, 96, 2), (5, 4, 128, 2), (60000, 24, 240, 2), (7, 6, 144, 1)]
        {
            let blocks = row_blocks(m, mr, mc, ways);
            let mut next = 0;
            for &(start, len) in &blocks {
                assert_eq!(start, next);
                assert!(len > 0 && len <= mc.next_multiple_of(mr));
                next += len;
            }
            assert_eq!(next, m, "{m} {mr} {mc} {ways}: {blocks:?}");
        }
        let b = row_blocks(1024, 12, 96, 2);
        let first: usize = b[..b.len() / 2].iter().map(|x| x.1).sum();
        assert!(b.len().is_multiple_of(2) && first.abs_diff(1024 - first) <= 12, "{b:?}");
    }
}
