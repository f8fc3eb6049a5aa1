//! Softmax and log-softmax along the last axis, shifted by the row maximum
//! so that large logits do not overflow.

use super::Tensor;
use crate::error::{Error, Result};

impl Tensor {
    fn rows_of_last_axis(&self, op: &'static str) -> Result<usize> {
        match self.shape().last() {
            Some(&n) if n > 0 => Ok(n),
            _ => Err(Error::Empty { op, shape: self.shape().to_vec() }),
        }
    }

    /// Softmax along the last axis, computed from `x - max` so large values
    /// do not overflow.
    pub fn softmax(&self) -> Result<Tensor> {
        let n = self.rows_of_last_axis("softmax")?;
        let mut out = self.clone();
        for row in out.data_mut().chunks_exact_mut(n) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0f32;
            row.iter_mut().for_each(|x| {
                *x = (*x - max).exp();
                sum += *x;
            });
            row.iter_mut().for_each(|x| *x /= sum);
        }
        Ok(out)
    }

    /// Log-softmax along the last axis: `x - max - ln(sum(exp(x - max)))`,
    /// finite where the softmax itself would underflow to 0.
    pub fn log_softmax(&self) -> Result<Tensor> {
        let n = self.rows_of_last_axis("log_softmax")?;
        let mut out = self.clone();
        for row in out.data_mut().chunks_exact_mut(n) {
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // (x - max) is exact for nearby values; subtracting the full
            // log-sum-exp from x would lose bits when |x| is large.
            let log_sum = row.iter().map(|x| (x - max).exp()).sum::<f32>().ln();
            row.iter_mut().for_each(|x| *x = (*x - max) - log_sum);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let x = Tensor::from_vec(vec![1000.0, 1001.0, 1002.0, -5.0, 0.0, 5.0], &[2, 3]).unwrap();
        let p = x.softmax().unwrap();
        for row in p.data().chunks(3) {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
        }
        let lp = x.log_softmax().unwrap();
        for (a, b) in lp.data().iter().zip(p.data()) {
            assert!((a.exp() - b).abs() < 1e-6);
        }
        assert!(Tensor::zeros(&[2, 0]).softmax().is_err());
    }
}
