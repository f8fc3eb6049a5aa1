//! A left operand packed once for many products. A convolution multiplies
//! the same filters by the columns of every image (and, on one image, every
//! thread multiplies them by its own columns): packing them once and sharing
//! the panels saves a copy of the filters per product.

use super::driver::{self, Problem};
use super::kernel::{self, Kernel};
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

unsafe fn pack<K: Kernel>(a: View, m: usize, k: usize) -> Vec<f32> {
    let mut data = vec![0.0f32; m.next_multiple_of(K::MR) * k];
    driver::pack_all_a::<K>(&mut data, a, m, k);
    data
}

unsafe fn run<K: Kernel>(p: Problem) {
    driver::gemm::<K>(p)
}

impl PackedA {
    /// Pack `op(A)` (A stored `m x k`, or `k x m` when `ta` is `Yes`, rows
    /// `lda` apart).
    pub fn new(ta: Transpose, m: usize, k: usize, a: &[f32], lda: usize) -> Result<PackedA, GemmError> {
        let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
        check_operand("A", ar, ac, lda, a.len())?;
        let view = View::of(a.as_ptr(), lda, ta);
        let kernel = KernelChoice::Auto.resolve();
        // Safety: the view was checked to cover op(A); the kernel is available.
        let data = if m == 0 || k == 0 { Vec::new() } else { unsafe { with_kernel!(kernel, pack, view, m, k) } };
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
    let (m, k) = (a.m, a.k);
    let (br, bc) = if tb == Transpose::No { (k, n) } else { (n, k) };
    check_operand("B", br, bc, ldb, b.len())?;
    check_operand("C", m, n, ldc, c.len())?;
    let b = View::of(b.as_ptr(), ldb, tb);
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
    };
    // Safety: B and C were checked to cover the product; A was packed for
    // this kernel with these m and k.
    unsafe { with_kernel!(a.kernel, run, p) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gemm::reference;

    #[test]
    fn packed_products_match_the_reference() {
        let mut r = crate::tensor::Rng::new(9);
        for (m, n, k) in [(1, 1, 1), (13, 40, 7), (64, 300, 363), (100, 17, 1100), (25, 3, 530)] {
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
        assert!(sgemm_packed(&packed, Transpose::No, 4, 1.0, &[0.0; 11], 4, 0.0, &mut [0.0; 8], 4).is_err());
    }
}
