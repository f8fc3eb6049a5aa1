//! Train a multilayer perceptron on MNIST with plain library calls and print
//! its test accuracy. The four MNIST files are committed in `data/mnist/`.
//!
//! ```sh
//! cargo run --release --example mnist_mlp          # 2 epochs, about 96 %, 2 s
//! cargo run --release --example mnist_mlp -- 1 20  # 1 epoch of 20 batches (CI)
//! ```
//!
//! Arguments: epochs (default 2), and batches per epoch (default: all 600).

use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::data::mnist;
use nabla::nn::{Activation, Init, Mlp, Params};
use nabla::optim::{Adam, Optimizer};
use nabla::Rng;
use std::error::Error;
use std::path::Path;

const BATCH: usize = 100;

fn main() {
    if let Err(e) = run() {
        eprintln!("mnist_mlp: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), Box<dyn Error>> {
    let arg = |i: usize, default: usize| -> Result<usize, String> {
        std::env::args()
            .nth(i)
            .map_or(Ok(default), |s| s.parse().map_err(|_| format!("argument {i}: '{s}' is not a count")))
    };
    let (epochs, batches) = (arg(1, 2)?, arg(2, usize::MAX)?);

    // Data: 60000 training images as rows of 784 pixels in [0, 1], labels 0-9.
    let data = mnist::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("data/mnist"))?;

    // Model: 784 -> 128 -> 10 with ReLU. Its parameters live in `params`
    // under PyTorch-style names (fc1.weight, fc1.bias, fc2.weight, fc2.bias).
    let mlp = Mlp::new(&[mnist::PIXELS, 128, mnist::CLASSES], Activation::Relu)?;
    let mut rng = Rng::new(0);
    let mut params = Params::new();
    mlp.init(&mut params, Init::FanIn, Init::FanIn, &mut rng);
    let mut adam = Adam::new(1e-3)?;

    // Training: shuffle, then for each mini-batch record the forward pass on
    // the tape, take the gradients, and let Adam update the parameters.
    let tape = Tape::new();
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    for epoch in 1..=epochs {
        rng.shuffle(&mut order);
        let (mut total, mut steps) = (0.0, 0);
        for rows in order.chunks(BATCH).take(batches) {
            let batch = data.train.select(rows);
            let x = Var::constant(batch.images);
            let loss = mlp.loss(&tape, &params, &x, &Targets::Classes(batch.labels), Reduction::Mean)?;
            let grads = tape.backward(&loss)?;
            tape.clear(); // the next step records afresh
            adam.step(&mut params, &grads)?;
            total += loss.value().item()?;
            steps += 1;
        }
        println!("epoch {epoch}: mean training loss {:.4} over {steps} batches", total / steps.max(1) as f32);
    }

    // Evaluation: an inference tape records nothing, so the same model code
    // is the prediction path.
    let logits = mlp.forward(&Tape::inference(), &params, &Var::constant(data.test.images.clone()))?;
    let predicted = logits.value().argmax_axis(1)?;
    let correct = predicted.iter().zip(&data.test.labels).filter(|(p, y)| p == y).count();
    let n = data.test.len();
    println!("test accuracy: {:.2} % ({correct} of {n})", 100.0 * correct as f64 / n as f64);
    Ok(())
}
