//! `cargo bench --bench lenet`: LeNet-5 on MNIST, against PyTorch
//! (`benches/peers/lenet.py`, when python3 can import torch).
//!
//! The network: conv 6@5x5 pad 2, relu, maxpool 2, conv 16@5x5, relu,
//! maxpool 2, flatten, linear 120, relu, linear 84, relu, linear 10;
//! PyTorch's default initialisation, Adam (lr 1e-3), mean cross-entropy.
//! Measured: (1) one training epoch of the 60000 training images in
//! shuffled mini-batches of 64 (the last one partial), each step exactly as
//! the pipeline's `train_loop` runs it (`Split::select` per batch,
//! `Var::constant`, one tape reused with `clear`), the median of 3 epochs
//! run in sequence on the same model; (2) inference on the 10000 test
//! images in batches of 1000, the median of 5.
//!
//! Lines: `bench=lenet_epoch impl=nabla value=<s> unit=s`,
//! `bench=lenet_infer impl=nabla ...`, the peer's lines, and
//! `bench=.. impl=ratio-vs-pytorch value=<peer / ours> unit=x` (> 1: we are
//! faster). `NABLA_BENCH_NO_PEER=1` skips the peer.

mod common;

use common::{field, median, value};

use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::data::Split;
use nabla::nn::{Init, Params, Sequential};
use nabla::optim::{Adam, Optimizer};
use nabla::Rng;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

const BATCH: usize = 64;
const INFER_BATCH: usize = 1000;

fn lenet5() -> Sequential {
    let specs = nabla::nn::presets::lenet5();
    Sequential::new(&[1, 28, 28], &specs).expect("LeNet-5 fits 28x28")
}

/// One epoch of shuffled mini-batches, as `train_loop` steps with a batch size.
fn epoch(net: &Sequential, params: &mut Params, opt: &mut Adam, train: &Split, order: &mut [usize], rng: &mut Rng) {
    let tape = Tape::new();
    let mut dropout = Rng::new(1);
    rng.shuffle(order);
    for idx in order.chunks(BATCH) {
        let part = train.select(idx);
        let (x, y) = (Var::constant(part.images), Targets::Classes(part.labels));
        let grads = {
            let loss = net.loss(&tape, params, &x, &y, Reduction::Mean, Some(&mut dropout)).unwrap();
            assert!(loss.value().item().unwrap().is_finite());
            tape.backward(&loss).unwrap()
        };
        tape.clear();
        opt.step(params, &grads).unwrap();
    }
}

/// Predicted classes of `split`, in batches of `INFER_BATCH`.
fn infer(net: &Sequential, params: &Params, split: &Split) -> Vec<usize> {
    let mut pred = Vec::with_capacity(split.len());
    for start in (0..split.len()).step_by(INFER_BATCH) {
        let end = (start + INFER_BATCH).min(split.len());
        let x = Var::constant(split.select(&(start..end).collect::<Vec<_>>()).images);
        let logits = net.forward(&Tape::inference(), params, &x, None).unwrap();
        pred.extend(logits.value().argmax_axis(1).unwrap());
    }
    pred
}

fn main() {
    // As the `nabla` program runs a pipeline: allocator tuned, on a pool thread.
    nabla::memory::keep_freed_memory();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let data = nabla::data::mnist::load(&root.join("data/mnist")).expect("MNIST in data/mnist");
    // The 10000 test images in their file order (validation is the odd indices, test the even).
    let mut test = Split { images: nabla::Tensor::zeros(&[0, 784]), labels: vec![] };
    {
        let (v, t) = (&data.validation, &data.test);
        let mut rows = Vec::with_capacity((v.len() + t.len()) * 784);
        for i in 0..v.len() + t.len() {
            let (s, j) = if i % 2 == 0 { (t, i / 2) } else { (v, i / 2) };
            rows.extend_from_slice(&s.images.data()[j * 784..(j + 1) * 784]);
            test.labels.push(s.labels[j]);
        }
        test.images = nabla::Tensor::from_vec(rows, &[test.labels.len(), 784]).unwrap();
    }
    let net = lenet5();
    let mut params = Params::new();
    net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(0));
    let mut opt = Adam::new(1e-3).unwrap();
    let epochs: usize = std::env::var("NABLA_LENET_EPOCHS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let (epoch_s, infer_s, accuracy) = nabla::parallel::in_pool(|| {
        let mut rng = Rng::new(0x6261_7463);
        let mut order: Vec<usize> = (0..data.train.len()).collect();
        let mut times = Vec::new();
        for _ in 0..epochs {
            let t = Instant::now();
            epoch(&net, &mut params, &mut opt, &data.train, &mut order, &mut rng);
            times.push(t.elapsed().as_secs_f64());
        }
        let pred = infer(&net, &params, &test); // warm-up
        let right = pred.iter().zip(&test.labels).filter(|(p, y)| p == y).count();
        let runs: Vec<f64> = (0..5)
            .map(|_| {
                let t = Instant::now();
                infer(&net, &params, &test);
                t.elapsed().as_secs_f64()
            })
            .collect();
        (median(times), median(runs), right as f64 / test.len() as f64)
    });
    eprintln!("# nabla: test accuracy after {epochs} epochs {:.2}%", accuracy * 100.0);
    println!("bench=lenet_epoch impl=nabla value={epoch_s:.3} unit=s");
    println!("bench=lenet_infer impl=nabla value={infer_s:.4} unit=s");

    if std::env::var_os("NABLA_BENCH_NO_PEER").is_some_and(|v| !v.is_empty() && v != "0") {
        return;
    }
    let has_torch = Command::new("python3").args(["-c", "import torch"]).output().is_ok_and(|o| o.status.success());
    if !has_torch {
        eprintln!("# python3 with torch not found: peer skipped (pip install torch)");
        return;
    }
    let Ok(out) = Command::new("python3").arg(root.join("benches/peers/lenet.py")).output() else { return };
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        println!("{line}");
        let (Some(bench), Some(v)) = (field(line, "bench"), value(line)) else {
            continue;
        };
        let ours = match bench {
            "lenet_epoch" => epoch_s,
            "lenet_infer" => infer_s,
            _ => continue,
        };
        println!("bench={bench} impl=ratio-vs-pytorch value={:.2} unit=x", v / ours);
    }
}
