//! nabla: a small deep-learning engine you can read in an afternoon: an n-d
//! f32 tensor, our own packed SIMD SGEMM, convolution as an implicit matrix
//! product, a reverse-mode autodiff tape with every backward rule in one
//! place, layers, optimisers, and readers for MNIST, image folders and
//! PyTorch weight files.
//!
//! # A tour, in the order data flows
//!
//! 1. [`tensor`]: [`Tensor`] is a shape and row-major `f32` storage behind
//!    an `Arc` (a clone is a reference-count bump); elementwise ops with
//!    broadcasting, reductions, softmax, and a seeded [`Rng`].
//! 2. [`gemm`]: [`gemm::sgemm`], `C = alpha op(A) op(B) + beta C`, in the
//!    BLIS design: packed panels, five blocked loops, a register-tiled SIMD
//!    microkernel picked for this CPU at run time. Every product in the
//!    engine runs through it.
//! 3. [`conv`]: convolution as a matrix product: each receptive field of an
//!    image is a column of offsets into the padded image, which the GEMM
//!    gathers as it packs (implicit GEMM); and max and average pooling.
//!    Forward and backward passes both live here, on slices, so the tape
//!    only records and dispatches.
//! 4. [`autodiff`]: the [`autodiff::Tape`] records each op on
//!    [`autodiff::Var`]s; [`autodiff::Tape::backward`] walks it in reverse
//!    and adds each node's gradient into its parents';
//!    [`autodiff::gradcheck()`] checks it against finite differences.
//! 5. [`nn`]: layers that keep no tensors: [`nn::Params`] holds every weight
//!    under a PyTorch-style name (`fc1.weight`) - it sits below the tape, so
//!    the tape, the layers, the weight readers and the optimisers all share
//!    it without importing each other; [`nn::Linear`],
//!    [`nn::Mlp`], [`nn::Sequential`] (any feed-forward stack of convolution,
//!    pooling, activation and linear layers), [`nn::alexnet::AlexNet`].
//! 6. [`optim`]: [`optim::Sgd`] (with momentum) and [`optim::Adam`] update
//!    `Params` from the tape's [`autodiff::Grads`], by name.
//!
//! Data comes in through [`data`] (IDX / MNIST, image folders) and
//! [`weights`] (`.pth` and safetensors, read without Python); [`pipeline`]
//! runs whole experiments declared in TOML (the `nabla` binary) and [`plot`]
//! draws their figures.
//!
//! Every failure is an [`Error`], or a module's own error that `?` turns
//! into one ([`data::DataError`], [`nn::sequential::LayerError`],
//! [`pipeline::ConfigError`], [`pipeline::RunError`], ...). An engine error
//! names the operation and the values that were wrong (`matmul: shape
//! mismatch: [2, 5] vs [1024, 25]`); a file's names the file and, where there
//! is one, the key in it. The text is the whole message on one line, context
//! first, as the `nabla` command prints it; [`std::error::Error::source`]
//! walks down the same message to the typed causes, so a failed pipeline
//! stage (`p.toml: data: ...`) leads to the reader's `DataError` and from
//! there to the `std::io::Error`. [`Error::find`] picks one out of that
//! chain.
//!
//! [`distributed`] runs training and evaluation under `mpirun` (feature
//! `mpi`), and [`fetch`] is the `nabla fetch` downloader. The rest is
//! machinery kept out of this page: reading user files with a size ceiling,
//! allocation and threading policy, scratch buffers, and the parsers' single
//! entry points for the fuzz targets.
//!
//! # Layers
//!
//! The modules form layers, each using only those below it: machinery,
//! `gemm` (on slices), `error`, `tensor`, `conv` (the arithmetic, forward and
//! backward), `Params`, `autodiff`, `nn` and `weights`, `optim`,
//! `distributed`, `data` and `plot`, `fetch`, `pipeline`. There are no
//! cycles, so each can be read knowing only what comes before it;
//! `tests/layering.rs` holds the order and fails on any path that reaches
//! upwards.
//!
//! # Example
//!
//! Train a small perceptron on points labelled by the sign of `x * y`, then
//! predict with it (the same code is in the README). `examples/` has more:
//! `mnist_mlp`, `alexnet_classify`, `custom_op` and `sgemm`, each run with
//! `cargo run --release --example NAME`.
//!
//! ```rust
//! use nabla::autodiff::{Reduction, Tape, Targets, Var};
//! use nabla::nn::{Activation, Init, Mlp, Params};
//! use nabla::optim::{Adam, Optimizer};
//! use nabla::{Rng, Tensor};
//!
//! fn main() -> nabla::Result<()> {
//!     // 200 points in [-1, 1) x [-1, 1), class 1 where x * y > 0.
//!     let mut rng = Rng::new(0);
//!     let x = Tensor::uniform(&[200, 2], -1.0, 1.0, &mut rng);
//!     let labels: Vec<usize> = x.data().chunks(2).map(|p| (p[0] * p[1] > 0.0) as usize).collect();
//!     let (inputs, targets) = (Var::constant(x), Targets::Classes(labels.clone()));
//!
//!     // 2 -> 16 -> 2 with tanh; the weights live in `params` ("fc1.weight", ...).
//!     let mlp = Mlp::new(&[2, 16, 2], Activation::Tanh)?;
//!     let mut params = Params::new();
//!     mlp.init(&mut params, Init::FanIn, Init::FanIn, &mut rng);
//!     let mut adam = Adam::new(0.05)?;
//!
//!     let tape = Tape::new();
//!     for _ in 0..300 {
//!         let loss = mlp.loss(&tape, &params, &inputs, &targets, Reduction::Mean)?;
//!         let grads = tape.backward(&loss)?; // the reverse pass over the recording
//!         tape.clear(); // the next step records afresh
//!         adam.step(&mut params, &grads)?;
//!     }
//!
//!     // An inference tape records nothing: the same model code predicts.
//!     let logits = mlp.forward(&Tape::inference(), &params, &inputs)?;
//!     let predicted = logits.value().argmax_axis(1)?;
//!     let correct = predicted.iter().zip(&labels).filter(|(p, y)| p == y).count();
//!     assert!(correct >= 180, "{correct} of 200 right");
//!     Ok(())
//! }
//! ```

// Each unsafe operation sits in its own `unsafe` block with the reason it
// holds, even inside an `unsafe fn` (whose contract is its `# Safety` doc).
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

// The modules in layer order, lowest first (`tests/layering.rs` holds it):
// each uses only those before it. Machinery (hidden: the binary, benches and
// fuzz targets need `memory`, `parallel`, `report_page` and `parsers`):
#[doc(hidden)]
#[macro_use]
pub mod terminal;
mod files;
mod lock;
#[doc(hidden)]
pub mod memory;
#[doc(hidden)]
pub mod parallel;
mod rng;
mod scratch;

// The engine:
pub mod gemm;

pub mod error;

pub mod tensor;

pub mod conv;

mod params;

pub mod autodiff;

pub mod nn;
pub mod weights;

pub mod optim;

pub mod distributed;

// Data in, figures out, whole experiments:
pub mod data;
pub mod plot;
#[doc(hidden)]
pub mod report_page;

pub mod fetch;

pub mod pipeline;

#[doc(hidden)]
pub mod parsers;

pub use error::{Error, Result};
pub use params::Params;
pub use tensor::{Rng, Tensor};

#[cfg(test)]
mod tests {
    /// The README's "Use it as a library" example is this crate's doctest:
    /// the same lines, so the README shows code that compiles and runs.
    #[test]
    fn the_readme_example_is_the_doctest() {
        let readme = include_str!("../README.md");
        let section = readme.split("## Use it as a library").nth(1).expect("README has the section");
        let in_readme = section.split("```rust\n").nth(1).and_then(|s| s.split("```").next()).expect("a rust block");
        let doc: String = include_str!("lib.rs")
            .lines()
            .filter_map(|l| l.strip_prefix("//!"))
            .map(|l| format!("{}\n", l.strip_prefix(' ').unwrap_or(l)))
            .collect();
        let in_doc = doc.split("```rust\n").nth(1).and_then(|s| s.split("```").next()).expect("a rust block");
        assert_eq!(in_readme, in_doc, "README.md's library example and lib.rs's doctest differ");
    }
}
