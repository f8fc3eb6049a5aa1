//! Microkernels: the innermost loop of the GEMM, one register-blocked tile.
//!
//! A kernel computes `C[0..MR, 0..NR] = alpha * Ap * Bp + beta * C` where `Ap`
//! is an MR-row panel of A packed k-major (`Ap[p * MR + i]`) and `Bp` an
//! NR-column panel of B packed k-major (`Bp[p * NR + j]`). Each step `p` loads
//! one row of `Bp` into NR / WIDTH vector registers, broadcasts each of the MR
//! values of `Ap`'s column and accumulates MR x NR products in registers. With
//! `beta == 0` the kernel never reads C (it may hold NaN).
//!
//! Each kernel also carries its cache blocking (BLIS names, see `driver.rs`).
//! The numbers are chosen for this project's CI machine (AMD EPYC, Zen 5
//! family 26: 48 KiB L1d and 1 MiB L2 per core, 32 MiB shared L3), and are
//! sensible on Zen 3 / Skylake-class parts too:
//! - KC: one B micro-panel (KC x NR) must stay in L1 while A micro-panels
//!   stream past it, so KC * NR * 4 bytes is kept near half of L1.
//! - MC: the packed A block (MC x KC) lives in L2 and is re-read once per B
//!   micro-panel, so MC * KC * 4 bytes is kept near a third of L2.
//! - NC: the packed B block (KC x NC) lives in L3 and is shared by the threads.

use super::lane::{self, Lane};
use super::pack::{self, Gather, View};

/// One microkernel and its blocking.
///
/// # Safety
/// Every method needs a CPU with the kernel's features (see
/// `KernelChoice::is_available`). `pack_a`, `pack_b` and `pack_b_gather`
/// need what `pack::pack_a`, `pack::pack_b` and `pack::pack_b_gather` need
/// (the source covers the block); `tile` needs what `tile_body` needs for
/// the MR x NR tile (or its `size` part): `a`, `b` readable for k steps,
/// `c` writable for the tile.
pub(crate) trait Kernel: Sync {
    const MR: usize;
    const NR: usize;
    const KC: usize;
    const MC: usize;
    const NC: usize;
    /// `pack::pack_a` at this kernel's MR (const generics need a literal).
    unsafe fn pack_a(dst: &mut [f32], a: View, mc: usize, kc: usize);
    /// `pack::pack_b` at this kernel's NR.
    unsafe fn pack_b(dst: &mut [f32], b: View, cols: usize, kc: usize);
    /// `pack::pack_b_gather` at this kernel's NR.
    unsafe fn pack_b_gather(dst: &mut [f32], b: Gather, cols: usize, kc: usize);
    /// Columns a [`TileSize::Narrow`] tile computes: half of NR when the
    /// register block has an even number of vectors, else NR.
    const NARROW: usize;
    /// Rows a [`TileSize::Short`] tile computes: half of MR.
    const SHORT: usize;
    /// C has row stride `ldc` and unit column stride.
    /// `a_step` is the distance between A's values for consecutive `p`: MR
    /// for a packed panel, or the row length when the kernel reads a
    /// transposed A in place; `b_step` likewise NR, or B's row length.
    #[allow(clippy::too_many_arguments)]
    unsafe fn tile(
        size: TileSize,
        k: usize,
        alpha: f32,
        a: *const f32,
        a_step: usize,
        b: *const f32,
        b_step: usize,
        beta: f32,
        c: *mut f32,
        ldc: usize,
    );
}

/// How much of an MR x NR tile to compute. The panels stay MR and NR wide
/// (`a_step`, `b_step` as for a whole tile); an edge tile that needs at
/// most half of them costs half a tile: the last panel of 13 x 13 = 169 =
/// 5 x 32 + 9 columns, or of 256 = 21 x 12 + 4 filters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum TileSize {
    Full,
    /// The whole tile with `beta == 0`, C written by non-temporal stores
    /// (`Lane::stream`: the caller vouches that the tile's rows start on
    /// 64-byte boundaries) and not fetched first: for a C far larger than
    /// the caches, written once.
    Streamed,
    /// The first `SHORT` rows.
    Short,
    /// The first `NARROW` columns.
    Narrow,
}

/// The one microkernel body; `MR` rows by `NV` vectors of lane `L`.
///
/// # Safety
/// The CPU runs `L`. `a` is readable at `a + p * a_step + i` and `b` for
/// WIDTH floats at `b + p * b_step + v * WIDTH`, for `p < k`, `i < MR`,
/// `v < NV`; C is writable (and, when `beta != 0`, readable) for WIDTH floats
/// at `c + i * ldc + v * WIDTH`, `i < MR`, `v < NV`. With `STREAM`, each
/// `c + i * ldc` is 64-byte aligned (so each vector is aligned to its size),
/// and C is written whatever `beta`.
#[inline(always)]
#[allow(clippy::too_many_arguments, clippy::needless_range_loop)]
unsafe fn tile_body<L: Lane, const MR: usize, const NV: usize, const STREAM: bool>(
    k: usize,
    alpha: f32,
    mut a: *const f32,
    a_step: usize,
    mut b: *const f32,
    b_step: usize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    // SAFETY: the pointers stay on the panel elements the contract makes
    // readable (`p < k`); C is touched only at the tile's elements; the
    // prefetches only hint at addresses in C's tile.
    unsafe {
        let w = L::WIDTH;
        // C is touched only after the k loop; start fetching its lines now so the
        // update does not stall on a cache miss per row (streamed stores need none).
        if !STREAM {
            for i in 0..MR {
                L::prefetch(c.add(i * ldc));
                L::prefetch(c.add(i * ldc + NV * w - 1));
            }
        }
        let mut acc = [[L::zero(); NV]; MR];
        for _ in 0..k {
            let mut bv = [L::zero(); NV];
            for v in 0..NV {
                bv[v] = L::load(b.add(v * w));
            }
            for i in 0..MR {
                let av = L::splat(*a.add(i));
                for v in 0..NV {
                    acc[i][v] = acc[i][v].fma(av, bv[v]);
                }
            }
            // Wrapping: after the last step the pointers may point past their
            // operand (a transposed A read in place), where `add` would be UB.
            a = a.wrapping_add(a_step);
            b = b.wrapping_add(b_step);
        }
        let alpha = L::splat(alpha);
        for i in 0..MR {
            for v in 0..NV {
                let p = c.add(i * ldc + v * w);
                let mut r = acc[i][v].mul(alpha);
                if STREAM {
                    r.stream(p);
                    continue;
                }
                if beta != 0.0 {
                    r = r.fma(L::splat(beta), L::load(p));
                }
                r.store(p);
            }
        }
    }
}

/// Declare a kernel: its lane, register block (MR rows by NV vectors), cache
/// blocking, and the CPU features its `#[target_feature]` wrapper enables.
macro_rules! kernel {
    ($(#[$doc:meta])* $name:ident, $lane:ty, [$($feature:literal),*], avx = $avx:literal,
     mr = $mr:literal, nv = $nv:literal, kc = $kc:literal, mc = $mc:literal, nc = $nc:literal) => {
        $(#[$doc])*
        pub(crate) struct $name;

        impl Kernel for $name {
            const MR: usize = $mr;
            const NR: usize = $nv * <$lane as Lane>::WIDTH;
            const KC: usize = $kc;
            const MC: usize = $mc;
            const NC: usize = $nc;
            const NARROW: usize = ($nv as usize).div_ceil(2) * <$lane as Lane>::WIDTH;
            const SHORT: usize = $mr / 2;
            // Packing is compiled with the kernel's features too, for wide moves.
            $(#[target_feature(enable = $feature)])*
            unsafe fn pack_a(dst: &mut [f32], a: View, mc: usize, kc: usize) {
                // SAFETY: the trait's contract (the view covers the block, the CPU runs this kernel).
                unsafe { pack::pack_a::<$mr, $avx>(dst, a, mc, kc) }
            }
            $(#[target_feature(enable = $feature)])*
            unsafe fn pack_b(dst: &mut [f32], b: View, cols: usize, kc: usize) {
                // SAFETY: the trait's contract (the view covers the block, the CPU runs this kernel).
                unsafe { pack::pack_b::<{ $nv * <$lane as Lane>::WIDTH }, $avx>(dst, b, cols, kc) }
            }
            $(#[target_feature(enable = $feature)])*
            unsafe fn pack_b_gather(dst: &mut [f32], b: Gather, cols: usize, kc: usize) {
                // SAFETY: the trait's contract (the offsets land in the source, the CPU runs this kernel).
                unsafe { pack::pack_b_gather::<{ $nv * <$lane as Lane>::WIDTH }, $avx, { <$lane as Lane>::WIDTH == 16 }>(dst, b, cols, kc) }
            }
            #[inline]
            unsafe fn tile(size: TileSize, k: usize, alpha: f32, a: *const f32, a_step: usize, b: *const f32, b_step: usize, beta: f32, c: *mut f32, ldc: usize) {
                /// # Safety
                /// As for [`tile_body`] with this block size; the CPU has the features enabled here.
                $(#[target_feature(enable = $feature)])*
                #[allow(clippy::too_many_arguments)]
                unsafe fn body<const MR: usize, const NV: usize, const STREAM: bool>(k: usize, alpha: f32, a: *const f32, a_step: usize, b: *const f32, b_step: usize, beta: f32, c: *mut f32, ldc: usize) {
                    // SAFETY: forwarded from this function's contract.
                    unsafe { tile_body::<$lane, MR, NV, STREAM>(k, alpha, a, a_step, b, b_step, beta, c, ldc) }
                }
                // SAFETY: the trait's contract; `size` only picks a part of the
                // MR x NR tile the caller vouches for (the first MR / 2 rows or NARROW columns).
                unsafe {
                    match size {
                        TileSize::Full => body::<$mr, $nv, false>(k, alpha, a, a_step, b, b_step, beta, c, ldc),
                        TileSize::Streamed => body::<$mr, $nv, true>(k, alpha, a, a_step, b, b_step, 0.0, c, ldc),
                        TileSize::Short => body::<{ $mr / 2 }, $nv, false>(k, alpha, a, a_step, b, b_step, beta, c, ldc),
                        TileSize::Narrow => body::<$mr, { ($nv as usize).div_ceil(2) }, false>(k, alpha, a, a_step, b, b_step, beta, c, ldc),
                    }
                }
            }
        }
    };
}

kernel! {
    /// Portable: 4 x 8 on `wide::f32x8`, compiled for the build target.
    Portable, wide::f32x8, [], avx = false, mr = 4, nv = 1, kc = 256, mc = 128, nc = 2048
}

#[cfg(target_arch = "x86_64")]
kernel! {
    /// AVX2 + FMA: 6 x 16, the BLIS Haswell shape (12 accumulators, 2 B
    /// vectors and a broadcast fill the 16 ymm registers). B micro-panel
    /// 16 KiB in L1, A block 144 KiB in L2.
    Avx2Fma, lane::Avx2, ["avx2,fma"], avx = true, mr = 6, nv = 2, kc = 256, mc = 144, nc = 4096
}

#[cfg(target_arch = "x86_64")]
kernel! {
    /// AVX-512: 12 x 32 (24 accumulators and 2 B vectors out of 32 zmm;
    /// broadcasts fold into the FMAs as memory operands). KC is larger than
    /// the L1 rule suggests: at 2048^3 the traffic of C (read and written once
    /// per KC block) dominated, and measured KC = 512 beat 192 by ~10 % on two
    /// threads; the 64 KiB B micro-panel then streams from L2, which keeps up.
    Avx512, lane::Avx512, ["avx512f"], avx = true, mr = 12, nv = 2, kc = 512, mc = 96, nc = 4096
}

#[cfg(target_arch = "x86_64")]
kernel! {
    /// AVX-512 for narrow products (n <= 16, e.g. the 10 MNIST classes):
    /// 24 x 16, so a 10-column B wastes 6 lanes rather than 22.
    Avx512Narrow, lane::Avx512, ["avx512f"], avx = true, mr = 24, nv = 1, kc = 256, mc = 240, nc = 4096
}
