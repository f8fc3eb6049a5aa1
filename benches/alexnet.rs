//! `cargo bench --bench alexnet`: torchvision-shaped AlexNet (6 classes) on
//! 227 x 227 images: feature extraction (to the 9216 features) per image at
//! batch 1 and 16, and one SGD-with-momentum training step of the whole
//! network at batch 32. Runs `benches/peers/alexnet.py` (PyTorch) after, when
//! torch is installed, and prints the ratios. Lines:
//! `bench=alexnet case=.. impl=.. value=.. unit=ms`.

mod common;

use common::median_seconds;
use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::alexnet::AlexNet;
use nabla::optim::{Optimizer, Sgd};
use nabla::{Rng, Tensor};
use std::collections::BTreeMap;

fn main() {
    // As the `nabla` program does: reuse freed pages instead of faulting in new ones.
    nabla::memory::keep_freed_memory();
    let net = AlexNet::torchvision(6);
    let mut params = net.init(&mut Rng::new(0));
    let mut ours = BTreeMap::new();
    for batch in [1usize, 16] {
        let x = Var::constant(Tensor::uniform(&[batch, 3, 227, 227], -1.0, 1.0, &mut Rng::new(1)));
        // As the peer: three warm-up calls, then the median of 21 (batch 1) or 9.
        let features = || {
            net.features(&Tape::inference(), &params, &x).unwrap();
        };
        (0..2).for_each(|_| features());
        let t = median_seconds(if batch == 1 { 21 } else { 9 }, features);
        let case = format!("features_batch{batch}_per_image");
        println!("bench=alexnet case={case} impl=nabla value={:.2} unit=ms", t * 1e3 / batch as f64);
        ours.insert(case, t * 1e3 / batch as f64);
    }
    let x = Var::constant(Tensor::uniform(&[32, 3, 227, 227], -1.0, 1.0, &mut Rng::new(2)));
    let y = Targets::Classes((0..32).map(|i| i % 6).collect());
    let mut opt = Sgd::new(1e-3, 0.9).unwrap();
    let mut rng = Rng::new(3);
    let t = median_seconds(3, || {
        let tape = Tape::new();
        let grads = {
            let f = net.features(&tape, &params, &x).unwrap();
            let logits = net.classify(&tape, &params, &f, true, &mut rng).unwrap();
            let loss = tape.softmax_cross_entropy(&logits, &y, Reduction::Mean).unwrap();
            tape.backward(&loss).unwrap()
        };
        drop(tape);
        opt.step(&mut params, &grads).unwrap();
    });
    println!("bench=alexnet case=train_step_batch32 impl=nabla value={:.1} unit=ms", t * 1e3);
    ours.insert("train_step_batch32".to_string(), t * 1e3);

    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/alexnet.py");
    match std::process::Command::new("python3").arg(&script).output() {
        Ok(o) if o.status.success() => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                println!("{line}");
                let field = |k: &str| line.split_whitespace().find_map(|f| f.strip_prefix(k)).map(str::to_string);
                if let (Some(case), Some(v)) = (field("case="), field("value=").and_then(|v| v.parse::<f64>().ok())) {
                    if let Some(mine) = ours.get(&case) {
                        println!("bench=alexnet case={case} impl=ratio-vs-torch value={:.2} unit=x", v / mine);
                    }
                }
            }
        }
        _ => eprintln!("# python3 with torch not found: peer skipped (pip install torch)"),
    }
}
