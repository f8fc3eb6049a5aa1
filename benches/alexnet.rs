//! `cargo bench --bench alexnet`: torchvision-shaped AlexNet (6 classes) on
//! 227 x 227 images: feature extraction (to the 9216 features) per image at
//! batch 1 and 16, and one SGD-with-momentum training step of the whole
//! network at batch 32, against PyTorch (`benches/peers/alexnet.py`, when
//! torch is installed). The machine's speed drifts over a minute, so the two
//! are measured in alternating rounds and each round gives a ratio; the
//! median ratio is reported. Lines: `bench=alexnet case=.. impl=.. value=.. unit=..`.

mod common;

use common::{field, median, median_seconds, value};
use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::alexnet::AlexNet;
use nabla::optim::{Optimizer, Sgd};
use nabla::{Rng, Tensor};
use std::collections::BTreeMap;

const ROUNDS: usize = 5;

/// Milliseconds by case.
type Times = BTreeMap<String, f64>;

/// One round of ours: case -> milliseconds.
fn ours(net: &AlexNet, params: &mut nabla::nn::Params) -> Times {
    let mut out = BTreeMap::new();
    for batch in [1usize, 16] {
        let x = Var::constant(Tensor::uniform(&[batch, 3, 227, 227], -1.0, 1.0, &mut Rng::new(1)));
        // As the peer: three warm-up calls, then the median of 21 (batch 1) or 9.
        let features = || {
            net.features(&Tape::inference(), params, &x).unwrap();
        };
        (0..2).for_each(|_| features());
        let t = median_seconds(if batch == 1 { 21 } else { 9 }, features);
        out.insert(format!("features_batch{batch}_per_image"), t * 1e3 / batch as f64);
    }
    let x = Var::constant(Tensor::uniform(&[32, 3, 227, 227], -1.0, 1.0, &mut Rng::new(2)));
    let y = Targets::Classes((0..32).map(|i| i % 6).collect());
    let mut opt = Sgd::new(1e-3, 0.9).unwrap();
    let mut rng = Rng::new(3);
    let t = median_seconds(3, || {
        let tape = Tape::new();
        let grads = {
            let f = net.features(&tape, params, &x).unwrap();
            let logits = net.classify(&tape, params, &f, true, &mut rng).unwrap();
            let loss = tape.softmax_cross_entropy(&logits, &y, Reduction::Mean).unwrap();
            tape.backward(&loss).unwrap()
        };
        drop(tape);
        opt.step(params, &grads).unwrap();
    });
    out.insert("train_step_batch32".to_string(), t * 1e3);
    out
}

/// One round of the peer: case -> milliseconds, or None without torch.
fn peer() -> Option<Times> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/alexnet.py");
    let o = std::process::Command::new("python3").arg(&script).output().ok().filter(|o| o.status.success())?;
    let mut out = BTreeMap::new();
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        if let (Some(case), Some(v)) = (field(line, "case"), value(line)) {
            out.insert(case.to_string(), v);
        }
    }
    Some(out)
}

fn main() {
    // As the `nabla` program does: reuse freed pages instead of faulting in new ones.
    nabla::memory::keep_freed_memory();
    let net = AlexNet::torchvision(6);
    let mut params = net.init(&mut Rng::new(0));
    let mut rounds: Vec<(Times, Option<Times>)> = Vec::new();
    let mut directs: Vec<Times> = Vec::new();
    for round in 0..ROUNDS {
        // As the `nabla` program runs a pipeline: on a thread of the pool.
        let mine = nabla::parallel::in_pool(|| ours(&net, &mut params));
        // The same with every convolution on the implicit-GEMM path (no Winograd).
        nabla::conv::winograd::set_enabled(false);
        let direct = nabla::parallel::in_pool(|| ours(&net, &mut params));
        nabla::conv::winograd::set_enabled(true);
        let theirs = peer();
        for (case, ms) in &mine {
            println!("bench=alexnet case={case} impl=nabla round={round} value={ms:.2} unit=ms");
            println!("bench=alexnet case={case} impl=nabla-direct round={round} value={:.2} unit=ms", direct[case]);
            if let Some(t) = theirs.as_ref().and_then(|t| t.get(case)) {
                println!("bench=alexnet case={case} impl=torch round={round} value={t:.2} unit=ms");
            }
        }
        let no_peer = theirs.is_none();
        rounds.push((mine, theirs));
        directs.push(direct);
        if no_peer {
            eprintln!("# python3 with torch not found: peer skipped (pip install torch)");
            break;
        }
    }
    for case in rounds[0].0.keys() {
        let mine = median(rounds.iter().map(|r| r.0[case]).collect());
        println!("bench=alexnet case={case} impl=nabla value={mine:.2} unit=ms");
        let gains: Vec<f64> = rounds.iter().zip(&directs).map(|(r, d)| d[case] / r.0[case]).collect();
        println!(
            "bench=alexnet case={case} impl=ratio-winograd-vs-direct value={:.2} unit=x rounds={}",
            median(gains.clone()),
            gains.len()
        );
        let ratios: Vec<f64> = rounds.iter().filter_map(|(m, t)| Some(t.as_ref()?.get(case)? / m[case])).collect();
        if !ratios.is_empty() {
            let lo = ratios.iter().cloned().fold(f64::INFINITY, f64::min);
            let hi = ratios.iter().cloned().fold(0.0, f64::max);
            println!(
                "bench=alexnet case={case} impl=ratio-vs-torch value={:.2} unit=x rounds={} min={lo:.2} max={hi:.2}",
                median(ratios.clone()),
                ratios.len()
            );
        }
    }
}
