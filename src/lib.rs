//! nabla: a small deep-learning engine you can read in an afternoon.
//!
//! Data flows tensor -> gemm -> autodiff -> nn -> optim:
//! - [`tensor`]: the n-d f32 tensor, its elementwise ops and reductions;
//! - [`gemm`]: our own packed, cache-blocked SIMD SGEMM;
//! - [`autodiff`]: the reverse-mode tape and every backward rule;
//! - [`nn`]: layers and losses built on the tape;
//! - [`optim`]: SGD with momentum and Adam.

// Each unsafe operation sits in its own `unsafe` block with the reason it
// holds, even inside an `unsafe fn` (whose contract is its `# Safety` doc).
#![deny(unsafe_op_in_unsafe_fn)]

pub mod error;
pub mod fetch;
pub mod files;
pub mod gemm;
pub mod tensor;
pub mod weights;

pub use error::{Error, Result};
pub use tensor::{Rng, Tensor};
pub mod autodiff;
pub mod conv;
pub mod data;
pub mod memory;
pub mod nn;
pub mod optim;
pub mod parallel;
pub mod parsers;
pub mod pipeline;
pub mod plot;
pub mod report_page;
pub mod scratch;
