//! Matrix products and transposes of 2-d tensors, through our SGEMM.

use super::Tensor;
use crate::error::{Error, Result};
use crate::gemm::{sgemm_new, Transpose};

impl Tensor {
    /// `op(self) * op(other)` for 2-d tensors; a transposed operand is read
    /// in place by the GEMM, never copied.
    pub fn matmul_t(&self, ta: Transpose, other: &Tensor, tb: Transpose) -> Result<Tensor> {
        let (ar, ac) = self.dims2("matmul")?;
        let (br, bc) = other.dims2("matmul")?;
        let (m, k) = if ta == Transpose::No { (ar, ac) } else { (ac, ar) };
        let (k2, n) = if tb == Transpose::No { (br, bc) } else { (bc, br) };
        if k != k2 {
            return Err(Error::Shape { op: "matmul", lhs: vec![m, k], rhs: vec![k2, n] });
        }
        let out = sgemm_new(ta, tb, m, n, k, self.data(), ac.max(1), other.data(), bc.max(1))?;
        Tensor::from_vec(out, &[m, n])
    }

    /// The matrix product `self * other` of two 2-d tensors.
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        self.matmul_t(Transpose::No, other, Transpose::No)
    }

    /// The transpose of a 2-d tensor (a copy, blocked for the cache).
    pub fn transpose(&self) -> Result<Tensor> {
        let (r, c) = self.dims2("transpose")?;
        let mut out = vec![0.0; r * c];
        const B: usize = 32;
        let src = self.data();
        for i0 in (0..r).step_by(B) {
            for j0 in (0..c).step_by(B) {
                for i in i0..(i0 + B).min(r) {
                    for j in j0..(j0 + B).min(c) {
                        out[j * r + i] = src[i * c + j];
                    }
                }
            }
        }
        Tensor::from_vec(out, &[c, r])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_and_transpose_agree() {
        let a = Tensor::from_vec((0..6).map(|x| x as f32).collect(), &[2, 3]).unwrap();
        let b = Tensor::from_vec((0..12).map(|x| x as f32).collect(), &[3, 4]).unwrap();
        let ab = a.matmul(&b).unwrap();
        assert_eq!(ab.shape(), &[2, 4]);
        assert_eq!(ab.data(), &[20.0, 23.0, 26.0, 29.0, 56.0, 68.0, 80.0, 92.0]);
        let at = a.transpose().unwrap();
        let via_t = at.matmul_t(Transpose::Yes, &b, Transpose::No).unwrap();
        assert_eq!(via_t, ab);
        let err = a.matmul(&a).unwrap_err();
        assert_eq!(err.to_string(), "matmul: shape mismatch: [2, 3] vs [2, 3]");
    }
}
