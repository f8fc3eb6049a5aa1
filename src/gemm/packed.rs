//! A left operand packed once for many products. A convolution multiplies
//! the same filters by the columns of every image (and, on one image, every
//! thread multiplies them by its own columns): packing them once and sharing
//! the panels saves a copy of the filters per product.

use super::driver::{self, Problem};
use super::kernel::{self, Kernel};
use super::pack::Gather;
use super::{check_operand, GemmError, KernelChoice, Transpose, View};

/// `op(A)`, `m x k`, packed for the default kernel family.
pub struct PackedA {
    kernel: KernelChoice,
    m: usize,
    k: usize,
    data: Vec<f32>,
}

/// Run `$body` with `K` bound to the kernel type of `$choice` (the main
/// kernel of each family; pre-packing fixes the panel height MR).
macro_rules! with_kernel {
    ($choice:expr, $body:ident, $($arg:expr),*) => {
        match $choice {
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx512 => $body::<kernel::Avx512>($($arg),*),
            #[cfg(target_arch = "x86_64")]
            KernelChoice::Avx2 => $body::<kernel::Avx2Fma>($($arg),*),
            _ => $body::<kernel::Portable>($($arg),*),
        }
    };
}

/// op(A) packed into whole MR-row panels for kernel `K` (None when the
/// padded size does not fit in usize).
///
/// # Safety
/// `a` covers an `m x k` matrix (every `a.at(i, p)`, `i < m`, `p < k`, is
/// readable) and the CPU runs `K`.
unsafe fn pack<K: Kernel>(a: View, m: usize, k: usize) -> Option<Vec<f32>> {
    let len = m.checked_next_multiple_of(K::MR)?.checked_mul(k)?;
    let mut data = vec![0.0f32; len];
    // SAFETY: `data` holds the padded panels `pack_all_a` writes; the view
    // and CPU are the caller's promise.
    unsafe { driver::pack_all_a::<K>(&mut data, a, m, k) };
    Some(data)
}

/// # Safety
/// As for [`driver::gemm`], with A packed for `K`.
unsafe fn run<K: Kernel>(p: Problem) {
    // SAFETY: the caller's promise, forwarded.
    unsafe { driver::gemm::<K>(p) }
}

impl PackedA {
    /// Pack `op(A)` (A stored `m x k`, or `k x m` when `ta` is `Yes`, rows
    /// `lda` apart).
    pub fn new(ta: Transpose, m: usize, k: usize, a: &[f32], lda: usize) -> Result<PackedA, GemmError> {
        let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
        check_operand("A", ar, ac, lda, a.len())?;
        let view = View::of(a.as_ptr(), lda, ta);
        let kernel = KernelChoice::Auto.resolve();
        let data = if m == 0 || k == 0 {
            Vec::new()
        } else {
            // SAFETY: `check_operand` proved that the view covers op(A);
            // `resolve` only picks kernels this CPU runs.
            unsafe { with_kernel!(kernel, pack, view, m, k) }.ok_or(GemmError::Overflow {
                operand: "A",
                rows: ar,
                cols: ac,
                ld: lda,
            })?
        };
        Ok(PackedA { kernel, m, k, data })
    }

    /// Rows of op(A).
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Columns of op(A) (the depth of the products).
    pub fn depth(&self) -> usize {
        self.k
    }
}

/// [`super::sgemm`] with op(A) packed beforehand: `C = alpha * A * op(B) + beta * C`.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed(
    a: &PackedA,
    tb: Transpose,
    n: usize,
    alpha: f32,
    b: &[f32],
    ldb: usize,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    let (br, bc) = if tb == Transpose::No { (a.k, n) } else { (n, a.k) };
    check_operand("B", br, bc, ldb, b.len())?;
    // SAFETY: `check_operand` proved that the view covers op(B), `a.k x n`.
    unsafe { run_packed(a, n, alpha, View::of(b.as_ptr(), ldb, tb), None, beta, c, ldc) }
}

/// [`sgemm_packed`] with B gathered: `B[p][j] = src[rows[p] + cols[j]]`
/// (`rows` has A's depth k, `cols` has n entries, each below 2^31). A convolution passes its
/// zero-padded input and the offsets of its receptive fields, and the
/// product packs the column matrix straight from the image.
#[allow(clippy::too_many_arguments)]
pub fn sgemm_packed_gather(
    a: &PackedA,
    alpha: f32,
    src: &[f32],
    rows: &[u32],
    cols: &[u32],
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    let n = cols.len();
    if rows.len() != a.k {
        return Err(GemmError::GatherRows { rows: rows.len(), depth: a.k });
    }
    let far = |o: &[u32]| o.iter().max().map_or(0, |&m| m as usize);
    // Every element read is `src[rows[p] + cols[j]]`, so the two largest
    // offsets bound them all. (The packer indexes with 32-bit signed offsets
    // from each row's start, so a column offset must also fit in an i32.)
    let reach = far(rows).checked_add(far(cols));
    if a.k > 0 && n > 0 && (reach.is_none_or(|r| r >= src.len()) || far(cols) > i32::MAX as usize) {
        return Err(GemmError::GatherRange { far: reach.unwrap_or(usize::MAX), len: src.len() });
    }
    let gather = Gather { src: src.as_ptr(), rows: rows.as_ptr(), cols: cols.as_ptr() };
    // SAFETY: every offset pair was checked above to land inside `src`, and
    // the tables hold `k` rows and `n` columns.
    unsafe { run_packed(a, n, alpha, View { ptr: src.as_ptr(), rs: 0, cs: 0 }, Some(gather), beta, c, ldc) }
}

/// The product of packed `a` and B (`b`, or `gather` when given) into C
/// (checked here).
///
/// # Safety
/// `b` (or `gather`, when given) must cover an `a.k x n` matrix: every
/// element `(p, j)`, `p < a.k`, `j < n`, readable.
#[allow(clippy::too_many_arguments)]
unsafe fn run_packed(
    a: &PackedA,
    n: usize,
    alpha: f32,
    b: View,
    gather: Option<Gather>,
    beta: f32,
    c: &mut [f32],
    ldc: usize,
) -> Result<(), GemmError> {
    let (m, k) = (a.m, a.k);
    check_operand("C", m, n, ldc, c.len())?;
    let p = Problem {
        m,
        n,
        k,
        alpha,
        // Never read: the panels come from `a_packed`.
        a: View { ptr: a.data.as_ptr(), rs: 0, cs: 0 },
        b,
        beta,
        c: c.as_mut_ptr(),
        ldc,
        a_packed: if a.data.is_empty() { std::ptr::null() } else { a.data.as_ptr() },
        b_gather: gather,
        a_rows: 0,
        a_row0: 0,
    };
    // SAFETY: C was checked to cover the product and is borrowed mutably;
    // A was packed for this kernel (available: `PackedA::new` resolved it)
    // with these m and k; B is the caller's promise.
    unsafe { with_kernel!(a.kernel, run, p) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::reference;

    #[test]
    fn gathered_products_match_the_reference() {
        // B gathered from a random source with random offsets (repeats
        // allowed), widths crossing panel and KC-block edges.
        let mut r = crate::rng::Rng::new(4);
        // The last two are big enough to split between threads: by rows, by columns.
        for (m, n, k) in [(1, 1, 1), (12, 33, 7), (30, 100, 600), (64, 65, 1100), (200, 40, 700), (40, 300, 500)] {
            let src: Vec<f32> = (0..5000).map(|_| r.normal()).collect();
            let rows: Vec<u32> = (0..k).map(|_| (r.uniform() * 2500.0) as u32).collect();
            let cols: Vec<u32> = (0..n).map(|_| (r.uniform() * 2499.0) as u32).collect();
            let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
            let b: Vec<f32> = (0..k * n).map(|i| src[(rows[i / n] + cols[i % n]) as usize]).collect();
            let packed = PackedA::new(Transpose::No, m, k, &a, k).unwrap();
            let mut c = vec![f32::NAN; m * (n + 3)];
            sgemm_packed_gather(&packed, 0.5, &src, &rows, &cols, 0.0, &mut c, n + 3).unwrap();
            let mut want = vec![0.0; m * (n + 3)];
            reference::sgemm_naive(Transpose::No, Transpose::No, m, n, k, 0.5, &a, k, &b, n, 0.0, &mut want, n + 3);
            for i in 0..m {
                for j in 0..n {
                    let (x, y) = (c[i * (n + 3) + j], want[i * (n + 3) + j]);
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k}: {x} vs {y}");
                }
            }
        }
    }

    #[test]
    fn packed_products_match_the_reference() {
        let mut r = crate::rng::Rng::new(9);
        for (m, n, k) in [(1, 1, 1), (13, 40, 7), (64, 300, 363), (100, 17, 1100), (25, 3, 530), (300, 40, 400)] {
            for ta in [Transpose::No, Transpose::Yes] {
                let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
                let b: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
                let lda = if ta == Transpose::No { k } else { m };
                let packed = PackedA::new(ta, m, k, &a, lda).unwrap();
                let mut c = vec![f32::NAN; m * n];
                sgemm_packed(&packed, Transpose::No, n, 1.0, &b, n, 0.0, &mut c, n).unwrap();
                let mut want = vec![0.0; m * n];
                reference::sgemm_naive(ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, n, 0.0, &mut want, n);
                for (x, y) in c.iter().zip(&want) {
                    assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{m}x{n}x{k} {ta:?}: {x} vs {y}");
                }
            }
        }
        let packed = PackedA::new(Transpose::No, 2, 3, &[0.0; 6], 3).unwrap();
        assert!(sgemm_packed_gather(&packed, 1.0, &[0.0; 9], &[0, 1, 2], &[0, 6], 0.0, &mut [0.0; 4], 2).is_ok());
        assert!(sgemm_packed_gather(&packed, 1.0, &[0.0; 9], &[0, 1, 2], &[0, 7], 0.0, &mut [0.0; 4], 2).is_err());
        assert!(sgemm_packed_gather(&packed, 1.0, &[0.0; 9], &[0, 1], &[0, 6], 0.0, &mut [0.0; 4], 2).is_err());
        assert!(sgemm_packed(&packed, Transpose::No, 4, 1.0, &[0.0; 11], 4, 0.0, &mut [0.0; 8], 4).is_err());
    }
}
