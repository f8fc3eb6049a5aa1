//! SGEMM, ours: `C = alpha * op(A) * op(B) + beta * C` on row-major f32
//! ([`sgemm`]; [`sgemm_with`] names the kernel family).
//!
//! # The idea: BLIS
//!
//! The product is cut into blocks that fit each level of cache, and each
//! block is copied ("packed") into the order the innermost code reads it.
//! In BLIS's names, the loop nest of `driver.rs` is:
//!
//! ```text
//! loop 5  jc: split n into NC-wide blocks            (B block lives in L3)
//!  loop 4  pc: split k into KC-deep blocks; pack B    (shared by all threads)
//!   loop 3  ic: split m into MC-tall blocks; pack A   (per thread, lives in L2)
//!    loop 2  jr: NR-wide micro-panels of B            (one lives in L1)
//!     loop 1  ir: MR-tall micro-panels of A -> microkernel
//! ```
//!
//! The microkernel (`kernel.rs`) holds an MR x NR tile of C in SIMD
//! registers; for each of KC steps it loads MR values of A and NR of B and
//! does MR x NR multiply-adds, so it computes far more than it loads and runs
//! near the core's peak. Packing (`pack.rs`) makes both micro-panels
//! contiguous and zero-pads them to whole tiles, so the kernel has no edge
//! cases; it also absorbs transposes and leading dimensions (`op(A)` is read
//! through its strides), so no operand is ever copied transposed. The kernel
//! family is picked at run time from the CPU's features ([`KernelChoice`]:
//! AVX-512, AVX2 + FMA, or a portable `wide::f32x8` one), written once over
//! the lanes of `lane.rs`.
//!
//! # What else is here
//!
//! A convolution needs two more things (`packed.rs`): [`PackedA`] packs
//! filters once for many products ([`sgemm_packed`]), and
//! [`sgemm_packed_gather`] reads the right operand through a table of row
//! and column offsets ([`crate::conv::Fields`]: an image's receptive fields),
//! packing it without writing the column matrix out. `skinny.rs` has unpacked
//! kernels for products with a few dozen outputs, and
//! [`reference::sgemm_naive`] is the naive triple loop the tests compare
//! against. `examples/sgemm.rs` calls [`sgemm`] and checks it.
//!
//! Read more: Van Zee & van de Geijn, "BLIS: A Framework for Rapidly
//! Instantiating BLAS Functionality" (ACM TOMS 2015); Goto & van de Geijn,
//! "Anatomy of High-Performance Matrix Multiplication" (ACM TOMS 2008).
//!
//! Soundness: the loop nest and kernels work on raw pointers, so every safe
//! entry point (`sgemm_with`, `sgemm_new`, `sgemm_packed`, `sgemm_packed_gather`,
//! `PackedA::new`, `skinny::x_wt` / `dt_x`) first proves, with checked
//! arithmetic, that each operand's slice covers every element the product
//! touches, and that the CPU has the kernel's instruction set. Everything
//! behind them is `pub(crate)` and `unsafe fn` with its contract written out.

#![deny(clippy::undocumented_unsafe_blocks, clippy::missing_safety_doc)]

mod driver;
mod kernel;
mod lane;
mod pack;
mod packed;
pub mod reference;
pub(crate) mod skinny;

pub(crate) use lane::prefetch_run;
pub use packed::{sgemm_packed, sgemm_packed_gather, PackedA};

use driver::Problem;
use kernel::Kernel;
use pack::View;
use std::sync::OnceLock;

/// Operands up to this many floats (512 KiB) may take the skinny kernels.
const SKINNY_MAX_ELEMS: usize = 1 << 17;

/// Whether an operand is used as stored or transposed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transpose {
    /// Use the operand as stored.
    No,
    /// Use its transpose (read in place through strides, never copied).
    Yes,
}

/// Which microkernel family runs the product.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KernelChoice {
    /// The fastest this CPU supports (or `NABLA_GEMM_KERNEL` if set).
    Auto,
    /// `wide::f32x8`, compiled for the build target: runs anywhere.
    Portable,
    /// AVX2 + FMA, detected at run time.
    Avx2,
    /// AVX-512F, detected at run time.
    Avx512,
}

impl KernelChoice {
    /// The name `NABLA_GEMM_KERNEL` and `nabla kernels` use.
    pub fn name(self) -> &'static str {
        match self {
            KernelChoice::Auto => "auto",
            KernelChoice::Portable => "portable",
            KernelChoice::Avx2 => "avx2",
            KernelChoice::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run the kernel.
    pub fn is_available(self) -> bool {
        match self {
            KernelChoice::Auto | KernelChoice::Portable => true,
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma"),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => is_x86_feature_detected!("avx512f"),
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// Every kernel family this CPU can run, slowest first.
    pub fn available() -> Vec<KernelChoice> {
        [KernelChoice::Portable, KernelChoice::Avx2, KernelChoice::Avx512]
            .into_iter()
            .filter(|k| k.is_available())
            .collect()
    }

    /// `Auto` made concrete: `NABLA_GEMM_KERNEL` (portable, avx2, avx512) if
    /// set and available, else the fastest available.
    pub(crate) fn resolve(self) -> KernelChoice {
        if self != KernelChoice::Auto {
            return self;
        }
        static CHOICE: OnceLock<KernelChoice> = OnceLock::new();
        *CHOICE.get_or_init(|| {
            let avail = KernelChoice::available();
            let forced = std::env::var("NABLA_GEMM_KERNEL").ok();
            forced
                .and_then(|name| avail.iter().copied().find(|k| k.name() == name))
                .unwrap_or(*avail.last().expect("portable is always available"))
        })
    }
}

/// Why a product could not run. No product panics on bad arguments.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum GemmError {
    /// A leading dimension shorter than the rows it should step over.
    #[error("sgemm: leading dimension of {operand} is {ld} but its stored rows are {row_len} long")]
    LeadingDimension {
        /// `"A"`, `"B"` or `"C"`.
        operand: &'static str,
        /// The leading dimension given.
        ld: usize,
        /// The stored row length it must cover.
        row_len: usize,
    },
    /// An operand slice too short for the matrix it is said to hold.
    #[error("sgemm: {operand} is stored as {rows}x{cols} (leading dimension {ld}), needing {needed} elements, but the slice holds {len}")]
    TooShort {
        /// `"A"`, `"B"` or `"C"`.
        operand: &'static str,
        /// Stored rows.
        rows: usize,
        /// Stored columns.
        cols: usize,
        /// Leading dimension.
        ld: usize,
        /// Elements the matrix spans: `(rows - 1) * ld + cols`.
        needed: usize,
        /// Elements the slice holds.
        len: usize,
    },
    /// A gathered operand whose row table does not match the product's depth.
    #[error("sgemm: gathered B has {rows} row offsets but A's depth is {depth}")]
    GatherRows {
        /// Row offsets given.
        rows: usize,
        /// The product's depth k.
        depth: usize,
    },
    /// A gathered operand whose offsets reach past its source.
    #[error("sgemm: gathered B reaches element {far} of a source holding {len}")]
    GatherRange {
        /// The farthest element an offset pair reaches.
        far: usize,
        /// Elements the source holds.
        len: usize,
    },
    /// A kernel family asked for that this CPU cannot run.
    #[error("sgemm: kernel '{0}' is not supported by this CPU")]
    KernelUnavailable(&'static str),
    /// An operand whose extent overflows `usize`.
    #[error("sgemm: {operand} is stored as {rows}x{cols} with leading dimension {ld}, which spans more elements than memory can hold")]
    Overflow {
        /// `"A"`, `"B"` or `"C"`.
        operand: &'static str,
        /// Stored rows.
        rows: usize,
        /// Stored columns.
        cols: usize,
        /// Leading dimension.
        ld: usize,
    },
    /// A skinny product asked for more outputs than its kernels take.
    #[error("sgemm: the skinny product takes 1 to {max} outputs with kernel '{kernel}', got {out}")]
    SkinnyOut {
        /// Outputs asked for.
        out: usize,
        /// The most the kernel takes.
        max: usize,
        /// The kernel family.
        kernel: &'static str,
    },
}

/// Check that a row-major `rows x cols` matrix with leading dimension `ld`
/// fits in a slice of `len` elements. The extent is computed with checked
/// arithmetic: a wrapped `(rows - 1) * ld + cols` would pass a short slice
/// to the unchecked loops (the product reads every one of those elements).
fn check_operand(operand: &'static str, rows: usize, cols: usize, ld: usize, len: usize) -> Result<(), GemmError> {
    if rows == 0 || cols == 0 {
        return Ok(());
    }
    if ld < cols {
        return Err(GemmError::LeadingDimension { operand, ld, row_len: cols });
    }
    let needed = (rows - 1).checked_mul(ld).and_then(|x| x.checked_add(cols)).ok_or(GemmError::Overflow {
        operand,
        rows,
        cols,
        ld,
    })?;
    if len < needed {
        return Err(GemmError::TooShort { operand, rows, cols, ld, needed, len });
    }
    Ok(())
}

/// [`check_operand`] for A and B as stored (`op(A)` is `m x k`, `op(B)` `k x n`).
#[allow(clippy::too_many_arguments)]
fn check_a_b(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
) -> Result<(), GemmError> {
    let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
    let (br, bc) = if tb == Transpose::No { (k, n) } else { (n, k) };
    check_operand("A", ar, ac, lda, a.len())?;
    check_operand("B", br, bc, ldb, b.len())
}

/// `C = alpha * op(A) * op(B) + beta * C`, all row-major. `op(A)` is `m x k`
/// (A is stored `m x k`, or `k x m` when `ta` is `Yes`), `op(B)` is `k x n`,
/// C is `m x n`; `lda`, `ldb`, `ldc` are the stored row lengths. With
/// `beta == 0`, C is only written (NaN in C does not leak into the result).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    sgemm_with(KernelChoice::Auto, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

/// [`sgemm`] with an explicit kernel family (tests run every family).
#[allow(clippy::too_many_arguments)]
pub fn sgemm_with(
    kernel: KernelChoice,
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    check_a_b(ta, tb, m, n, k, a, lda, b, ldb)?;
    check_operand("C", m, n, ldc, c.len())?;
    if !kernel.is_available() {
        return Err(GemmError::KernelUnavailable(kernel.name()));
    }
    match skinny_route(kernel, ta, tb, m, n, k, alpha, lda, ldb, beta, ldc) {
        Some(Skinny::XWt) => return skinny::x_wt(kernel, a, m, k, b, n, c),
        Some(Skinny::DtX) => {
            if beta == 0.0 {
                c[..m * n].fill(0.0);
            }
            return skinny::dt_x(kernel, a, k, m, b, n, c);
        }
        None => {}
    }
    // SAFETY: `check_operand` proved that A, B and C cover every element of
    // op(A), op(B) and C (the views and `ldc` are theirs), C is borrowed
    // mutably so nothing aliases it, and `is_available` proved the kernel.
    unsafe { blocked(kernel, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c.as_mut_ptr(), ldc) };
    Ok(())
}

/// `op(A) op(B)` (`m x n`, row-major) in a new vector: [`sgemm`] with alpha 1
/// and beta 0 into a vector it does not fill with zeros first. The blocked
/// product writes every element of C before it reads any when beta is 0, so
/// the fill would only be one more pass over C: for AlexNet's fc6 weight
/// gradient, 151 MB written by one thread before the product writes it again.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_new(
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
) -> Result<Vec<f32>, GemmError> {
    let len = m.checked_mul(n).ok_or(GemmError::Overflow { operand: "C", rows: m, cols: n, ld: n })?;
    let kernel = KernelChoice::Auto;
    if k == 0 || len == 0 || skinny_route(kernel, ta, tb, m, n, k, 1.0, lda, ldb, 0.0, n).is_some() {
        let mut c = vec![0.0; len];
        sgemm(ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, &mut c, n.max(1))?;
        return Ok(c);
    }
    check_a_b(ta, tb, m, n, k, a, lda, b, ldb)?;
    let mut c = Vec::new();
    c.try_reserve_exact(len).map_err(|_| GemmError::Overflow { operand: "C", rows: m, cols: n, ld: n })?;
    // SAFETY: A and B cover op(A) and op(B) (`check_operand`); C is the new
    // vector's `m * n` reserved floats, rows `n` apart, which the blocked
    // product with beta 0 and k > 0 writes in full before reading any (the
    // driver's contract), so they are initialised when the length is set.
    // `Auto` always resolves to an available kernel.
    unsafe {
        blocked(kernel, ta, tb, m, n, k, 1.0, a, lda, b, ldb, 0.0, c.as_mut_ptr(), n);
        c.set_len(len);
    }
    Ok(c)
}

/// The skinny kernels' products (see skinny.rs).
enum Skinny {
    /// `X W^T` with few outputs.
    XWt,
    /// `D^T X` with few outputs.
    DtX,
}

/// Which skinny kernel takes this product, if one does: products with at
/// most a few dozen outputs on operands that fit in L2 need no packing.
#[allow(clippy::too_many_arguments)]
fn skinny_route(
    kernel: KernelChoice,
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    lda: usize,
    ldb: usize,
    beta: f32,
    ldc: usize,
) -> Option<Skinny> {
    let small = |rows: usize, cols: usize| rows.checked_mul(cols).is_some_and(|e| e <= SKINNY_MAX_ELEMS);
    if alpha != 1.0 || k == 0 || m == 0 || n == 0 {
        return None;
    }
    let (max_x_wt, max_dt_x) = (skinny::x_wt_max_out(kernel), skinny::dt_x_max_out(kernel));
    if ta == Transpose::No
        && tb == Transpose::Yes
        && beta == 0.0
        && n <= max_x_wt
        && lda == k
        && ldb == k
        && ldc == n
        && small(m, k)
    {
        return Some(Skinny::XWt);
    }
    if ta == Transpose::Yes
        && tb == Transpose::No
        && (beta == 0.0 || beta == 1.0)
        && m <= max_dt_x
        && lda == m
        && ldb == n
        && ldc == n
        && small(k, n)
    {
        return Some(Skinny::DtX);
    }
    None
}

/// The blocked product (`driver.rs`) with the kernel `kernel` resolves to.
///
/// # Safety
/// A and B cover op(A) and op(B) (as `check_operand` proves), `c` is valid
/// for writes (and, when `beta != 0`, reads) of the `m x n` elements at
/// `i * ldc + j`, nothing else accesses them meanwhile, and the CPU runs the
/// kernel (`Auto` always resolves to one it runs).
#[allow(clippy::too_many_arguments)]
unsafe fn blocked(
    kernel: KernelChoice,
    ta: Transpose,
    tb: Transpose,
    m: usize,
    n: usize,
    k: usize,
    alpha: f32,
    a: &[f32],
    lda: usize,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: *mut f32,
    ldc: usize,
) {
    // Transposes become strides: packing reads op(A) and op(B) directly.
    let p = Problem {
        m,
        n,
        k,
        alpha,
        a: View::of(a.as_ptr(), lda, ta),
        b: View::of(b.as_ptr(), ldb, tb),
        beta,
        c,
        ldc,
        a_packed: std::ptr::null(),
        b_gather: None,
        a_rows: 0,
        a_row0: 0,
    };
    // SAFETY: this function's contract is the driver's.
    unsafe {
        match kernel.resolve() {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 if n <= <kernel::Avx512Narrow as Kernel>::NR => {
                driver::gemm::<kernel::Avx512Narrow>(p)
            }
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => driver::gemm::<kernel::Avx512>(p),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => driver::gemm::<kernel::Avx2Fma>(p),
            _ => driver::gemm::<kernel::Portable>(p),
        }
    }
}

#[cfg(test)]
mod tests;
