//! `cargo bench --bench mlp_step`: one training step (forward, backward, SGD
//! update) of the report's two small networks, to keep per-op overhead in
//! view. Prints `bench=mlp_step case=.. impl=nabla value=.. unit=us`.
//! PyTorch's figure for the same steps comes from `benches/peers/mlp_step.py`.

mod common;

use common::median_seconds;
use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::{Activation, Init, Mlp, Params};
use nabla::optim::{Optimizer, Sgd};
use nabla::{Rng, Tensor};

/// One step. The tape is cleared before the update so that it no longer
/// shares the parameters' storage and the update writes in place.
fn step(
    tape: &Tape,
    loss: impl Fn(&Tape, &Params, &Targets, Reduction) -> nabla::Result<Var>,
    targets: &Targets,
    reduction: Reduction,
    params: &mut Params,
    opt: &mut Sgd,
) {
    let grads = {
        let loss = loss(tape, params, targets, reduction).unwrap();
        tape.backward(&loss).unwrap()
    };
    tape.clear();
    opt.step(params, &grads).unwrap();
}

fn main() {
    let mut rng = Rng::new(0);

    // Part 8's face network on one mini-batch of 70 images.
    let mlp = Mlp::new(&[1024, 25, 6], Activation::Relu).unwrap();
    let mut params = Params::new();
    mlp.init(&mut params, Init::FanIn, Init::FanIn, &mut rng);
    let x = Var::constant(Tensor::uniform(&[70, 1024], 0.0, 1.0, &mut rng));
    let y = Targets::Classes((0..70).map(|i| i % 6).collect());
    let mut opt = Sgd::new(1e-3, 0.9).unwrap();
    let tape = Tape::new();
    let t = median_seconds(2001, || {
        step(&tape, |t, p, y, r| mlp.loss(t, p, &x, y, r), &y, Reduction::Mean, &mut params, &mut opt)
    });
    println!("bench=mlp_step case=mlp_1024x25x6_batch70 impl=nabla value={:.1} unit=us", t * 1e6);

    // Parts 4-5: softmax regression over all 60000 MNIST-sized rows.
    let layer = Mlp::new(&[784, 10], Activation::Relu).unwrap();
    let mut params = Params::new();
    layer.init(&mut params, Init::Uniform { lo: 0.0, hi: 1.0 }, Init::Uniform { lo: 0.0, hi: 1.0 }, &mut rng);
    let x = Var::constant(Tensor::uniform(&[60000, 784], 0.0, 1.0, &mut rng));
    let y = Targets::Classes((0..60000).map(|i| i % 10).collect());
    let mut opt = Sgd::new(1e-5, 0.0).unwrap();
    let t = median_seconds(21, || {
        step(&tape, |t, p, y, r| layer.loss(t, p, &x, y, r), &y, Reduction::Sum, &mut params, &mut opt)
    });
    println!("bench=mlp_step case=softmax_784x10_batch60000 impl=nabla value={:.1} unit=us", t * 1e6);
}
