//! How a parameter tensor starts.

use crate::tensor::{Rng, Tensor};

/// How a parameter tensor starts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// All zeros (biases, often).
    Zeros,
    /// Uniform in `[lo, hi)` (the report's part 4 uses `[0, 1)`).
    Uniform {
        /// Lower bound (included).
        lo: f32,
        /// Upper bound (excluded).
        hi: f32,
    },
    /// Normal (the report's part 8 uses `torch.randn`: mean 0, std 1).
    Normal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        std: f32,
    },
    /// PyTorch's default for `nn.Linear` and `nn.Conv2d`: uniform in
    /// `[-1/sqrt(fan_in), 1/sqrt(fan_in))`.
    FanIn,
}

impl Init {
    /// A tensor of `shape` drawn from `rng`; `fan_in` (inputs per output)
    /// matters only to [`Init::FanIn`].
    pub fn tensor(self, shape: &[usize], fan_in: usize, rng: &mut Rng) -> Tensor {
        match self {
            Init::Zeros => Tensor::zeros(shape),
            Init::Uniform { lo, hi } => Tensor::uniform(shape, lo, hi, rng),
            Init::Normal { mean, std } => Tensor::normal(shape, mean, std, rng),
            Init::FanIn => {
                let bound = 1.0 / (fan_in.max(1) as f32).sqrt();
                Tensor::uniform(shape, -bound, bound, rng)
            }
        }
    }
}
