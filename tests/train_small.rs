//! End to end through the public API: a small MLP learns a problem a linear
//! model cannot (two interleaved spirals), with Adam, on the tape.

use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::{Activation, Init, Mlp, Params};
use nabla::optim::{Adam, Optimizer, Sgd};
use nabla::{Rng, Tensor};

/// Two spirals of `n` points each, labels 0 and 1.
fn spirals(n: usize, rng: &mut Rng) -> (Tensor, Vec<usize>) {
    let mut xs = Vec::with_capacity(4 * n);
    let mut ys = Vec::with_capacity(2 * n);
    for class in 0..2 {
        for i in 0..n {
            let r = i as f32 / n as f32 * 2.0 + 0.1;
            let t = 1.75 * r * std::f32::consts::PI + class as f32 * std::f32::consts::PI;
            xs.push(r * t.cos() + 0.02 * rng.normal());
            xs.push(r * t.sin() + 0.02 * rng.normal());
            ys.push(class);
        }
    }
    (Tensor::from_vec(xs, &[2 * n, 2]).unwrap(), ys)
}

fn accuracy(mlp: &Mlp, params: &Params, x: &Tensor, y: &[usize]) -> f32 {
    let logits = mlp.forward(&Tape::inference(), params, &Var::constant(x.clone())).unwrap();
    let pred = logits.value().argmax_axis(1).unwrap();
    pred.iter().zip(y).filter(|(p, t)| p == t).count() as f32 / y.len() as f32
}

fn train(opt: &mut dyn Optimizer, steps: usize) -> f32 {
    let mut rng = Rng::new(11);
    let (x, y) = spirals(100, &mut rng);
    let mlp = Mlp::new(&[2, 32, 32, 2], Activation::Tanh).unwrap();
    let mut params = Params::new();
    mlp.init(&mut params, Init::FanIn, Init::Zeros, &mut rng);
    let (xv, targets) = (Var::constant(x.clone()), Targets::Classes(y.clone()));
    let tape = Tape::new();
    for _ in 0..steps {
        let grads = {
            let logits = mlp.forward(&tape, &params, &xv).unwrap();
            let loss = tape.softmax_cross_entropy(&logits, &targets, Reduction::Mean).unwrap();
            assert!(loss.value().item().unwrap().is_finite());
            tape.backward(&loss).unwrap()
        };
        tape.clear();
        opt.step(&mut params, &grads).unwrap();
    }
    accuracy(&mlp, &params, &x, &y)
}

#[test]
fn adam_learns_two_spirals() {
    let acc = train(&mut Adam::new(0.01).unwrap(), 1500);
    assert!(acc > 0.97, "accuracy {acc}");
}

#[test]
fn sgd_with_momentum_learns_two_spirals() {
    let acc = train(&mut Sgd::new(0.1, 0.9).unwrap(), 3000);
    assert!(acc > 0.9, "accuracy {acc}");
}
