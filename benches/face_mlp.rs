//! `cargo bench --bench face_mlp`: the report's part 8 training, timed: a
//! 1024-25-6 ReLU MLP, Adam (lr 1e-3), mean cross-entropy, 5 epochs of 6
//! mini-batches x 1000 steps over 387 training images (65-row batches), on
//! random inputs of the real shapes. Prints the seconds for one seed's
//! 30000 steps, and the per-step time:
//! `bench=face_mlp impl=nabla case=... value=.. unit=s`.
//! PyTorch's figure comes from `benches/peers/face_mlp.py` (when torch is
//! installed; it prints the same line with impl=torch).

mod common;

use common::{median_seconds, value};
use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::{Activation, Init, Mlp, Params};
use nabla::optim::{Adam, Optimizer};
use nabla::{Rng, Tensor};

fn main() {
    let mut rng = Rng::new(0);
    let net = Mlp::new(&[1024, 25, 6], Activation::Relu).unwrap();
    let mut params = Params::new();
    let normal = Init::Normal { mean: 0.0, std: 1.0 };
    net.init(&mut params, normal, normal, &mut rng);
    let batches: Vec<(Var, Targets)> = (0..6)
        .map(|_| {
            (
                Var::constant(Tensor::uniform(&[65, 1024], 0.0, 1.0, &mut rng)),
                Targets::Classes((0..65).map(|i| i % 6).collect()),
            )
        })
        .collect();
    let mut opt = Adam::new(1e-3).unwrap();
    let tape = Tape::new();
    let mut step = |b: usize| {
        let (x, y) = &batches[b % 6];
        let grads = {
            let loss = net.loss(&tape, &params, x, y, Reduction::Mean).unwrap();
            tape.backward(&loss).unwrap()
        };
        tape.clear();
        opt.step(&mut params, &grads).unwrap();
    };
    let per_step = median_seconds(5, || (0..1000).for_each(&mut step)) / 1000.0;
    println!("bench=face_mlp impl=nabla case=adam_step_1024x25x6_batch65 value={:.2} unit=us", per_step * 1e6);
    let seed = median_seconds(3, || (0..30_000).for_each(|i| step(i / 1000)));
    println!("bench=face_mlp impl=nabla case=one_seed_30000_steps value={seed:.3} unit=s");

    // PyTorch side by side, when it is installed.
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/face_mlp.py");
    let out = std::process::Command::new("python3").arg(&script).output();
    match out {
        Ok(o) if o.status.success() => {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                println!("{line}");
                if let Some(v) = value(line) {
                    println!(
                        "bench=face_mlp impl=ratio-vs-torch case=one_seed_30000_steps value={:.2} unit=x",
                        v / seed
                    );
                }
            }
        }
        _ => eprintln!("# python3 with torch not found: peer skipped (pip install torch)"),
    }
}
