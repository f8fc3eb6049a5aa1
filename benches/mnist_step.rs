//! `cargo bench --bench mnist_step`: one full-batch training iteration of
//! the report's softmax regression (parts 4-5): forward over all 60000 MNIST
//! images, summed cross-entropy, backward, gradient-descent update.
//!
//! When `python3` with numpy is available it also runs
//! `benches/peers/mnist_step.py` (numpy f32 / f64, and PyTorch if installed)
//! in three rounds alternating with ours, and prints the medians and the
//! ratios of the medians. Lines:
//! `bench=mnist_step impl=.. value=.. unit=ms` and `.. impl=ratio-vs-.. unit=x`.

mod common;

use common::{field, median, median_seconds, value};
use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::{Activation, Init, Mlp, Params};
use nabla::optim::{Optimizer, Sgd};
use nabla::Rng;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = nabla::data::mnist::load(&root.join("data/mnist")).expect("MNIST in data/mnist");
    let net = Mlp::new(&[784, 10], Activation::Relu).unwrap();
    let mut params = Params::new();
    net.init(&mut params, Init::Uniform { lo: 0.0, hi: 1.0 }, Init::Uniform { lo: 0.0, hi: 1.0 }, &mut Rng::new(0));
    let x = Var::constant(data.train.images.clone());
    let y = Targets::Classes(data.train.labels.clone());
    let mut opt = Sgd::new(1e-5, 0.0).unwrap();
    let tape = Tape::new();
    let mut step = || {
        let grads = {
            let loss = net.loss(&tape, &params, &x, &y, Reduction::Sum).unwrap();
            tape.backward(&loss).unwrap()
        };
        tape.clear();
        opt.step(&mut params, &grads).unwrap();
    };

    // Peers, if python3 and numpy are here, in rounds alternating with ours
    // (the machine's speed drifts over a minute). OpenBLAS is given its best
    // kernels (see /work/.library notes: the two variables slow it).
    let script = root.join("benches/peers/mnist_step.py");
    let has_numpy = Command::new("python3").args(["-c", "import numpy"]).output().is_ok_and(|o| o.status.success());
    if !has_numpy {
        eprintln!("# python3 with numpy not found: peers skipped (pip install numpy)");
    }
    let mut ours = Vec::new();
    let mut peers: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for _ in 0..3 {
        ours.push(median_seconds(11, &mut step) * 1e3);
        if !has_numpy {
            continue;
        }
        let out = Command::new("python3")
            .arg(&script)
            .env_remove("OPENBLAS_CORETYPE")
            .env_remove("OPENBLAS_L2_SIZE")
            .output();
        let Ok(out) = out else { continue };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            if let (Some(name), Some(v)) = (field(line, "impl"), value(line)) {
                peers.entry(name.to_string()).or_default().push(v);
            }
        }
    }
    let ours = median(ours);
    println!("bench=mnist_step impl=nabla value={ours:.2} unit=ms");
    for (name, values) in peers.into_iter().filter(|(_, v)| v.len() == 3) {
        let v = median(values);
        println!("bench=mnist_step impl={name} value={v:.2} unit=ms");
        println!("bench=mnist_step impl=ratio-vs-{name} value={:.2} unit=x", v / ours);
    }
}
