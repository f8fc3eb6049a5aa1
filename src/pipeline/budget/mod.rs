//! What a pipeline file asks of the machine, worked out before anything runs:
//! the memory its largest stage holds at once and the arithmetic all its
//! stages do. A file that needs more memory than this machine has, or more
//! work than it could finish in a day, is refused at `check`, naming the key
//! that asks for it and the size it implies, instead of aborting in the
//! allocator or running for a week.
//!
//! Estimates are in f64, so no product can wrap. The memory estimate
//! (`memory.rs`) is the largest phase of the run, an upper bound within
//! twice the measured peak; the work estimate adds every stage's.

mod memory;

use super::schema::Pipeline;
use super::validate::{data_shape, DataShape};

/// Arithmetic a file may ask for: ~14 hours at 200 GFLOP/s, ~1000 times
/// the longest experiment we ship (part 10's AlexNet trained end to end, ~1.3e13).
pub(crate) const MAX_FLOPS: f64 = 1e16;

/// Forward FLOPs of torchvision's AlexNet for one 227 x 227 image.
const ALEXNET_FLOPS: f64 = 1.45e9;

/// One part of the estimate, with the key that asks for it.
struct Term {
    key: &'static str,
    what: String,
    amount: f64,
}

/// The memory this process may use: 80% of the machine's, or 16 GiB when
/// that cannot be read.
pub(crate) fn memory_limit() -> f64 {
    let total_kib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| m.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<f64>().ok());
    total_kib.map_or(16.0 * (1u64 << 30) as f64, |k| 0.8 * k * 1024.0)
}

fn bytes(x: f64) -> String {
    match x {
        x if x >= 1e12 => format!("{:.1} TB", x / 1e12),
        x if x >= 1e9 => format!("{:.1} GB", x / 1e9),
        _ => format!("{:.0} MB", x / 1e6),
    }
}

/// The memory a run of `p` reaches at most, as `nabla check` prints it:
/// `memory: about 412 MB at most, while training, a step of 64 examples`
/// (in MB, 10^6 bytes, whatever the size, so scripts can read it).
pub(crate) fn memory_line(p: &Pipeline) -> String {
    let phase = memory::peak(p);
    format!("memory: about {:.0} MB at most, while {}", phase.total() / 1e6, phase.name)
}

/// Refuse what this machine cannot hold or finish.
pub(crate) fn check(p: &Pipeline) -> Result<(), String> {
    let phase = memory::peak(p);
    let limit = memory_limit();
    if phase.total() > limit {
        let big = phase.largest();
        return Err(format!(
            "{}: {} needs about {} of memory; while {}, the run would hold about {} at once, more than this machine's {}",
            if big.key.is_empty() { "memory" } else { big.key },
            big.what,
            bytes(big.bytes),
            phase.name,
            bytes(phase.total()),
            bytes(limit)
        ));
    }
    let work = work(p);
    let total: f64 = work.iter().map(|t| t.amount).sum();
    if total > MAX_FLOPS {
        let big = work.iter().max_by(|a, b| a.amount.total_cmp(&b.amount)).expect("a positive total has terms");
        return Err(format!(
            "{}: {} is about {:.1e} floating-point operations (~{:.0} hours at 200 GFLOP/s), more than the {MAX_FLOPS:.0e} \
             one run may take",
            big.key,
            big.what,
            big.amount,
            big.amount / 200e9 / 3600.0
        ));
    }
    Ok(())
}

/// The network's parameters and forward FLOPs per example; zeros when the
/// `[model]` does not build (validation has said why already).
fn network_size(m: &super::schema::Model, shape: &DataShape) -> (f64, f64) {
    let Ok(net) = super::model::build(m, &shape.example, shape.classes) else {
        return (0.0, 0.0);
    };
    let flops: f64 = net.nodes.iter().map(|n| n.layer.flops(&n.input, &n.output)).sum();
    (net.param_count() as f64, flops)
}

/// The steps of `t` on `train` examples, the examples of a step, and the
/// points of the learning curve (accuracy passes).
pub(crate) fn schedule(t: &super::schema::Train, train: usize) -> (f64, f64, f64) {
    let train = train as f64;
    let steps = t.total_steps(train as usize).unwrap_or(usize::MAX) as f64;
    let batch = if t.epochs > 0 && t.batch_size > 0 {
        t.batch_size as f64
    } else if t.epochs > 0 {
        (train / t.batches_per_epoch.max(1) as f64).ceil()
    } else if t.batch_size == 0 {
        train
    } else {
        t.batch_size as f64
    };
    let evals = if t.epochs > 0 && t.batch_size > 0 {
        t.epochs as f64
    } else if t.epochs > 0 {
        steps / t.steps_per_batch.max(1) as f64
    } else {
        steps / t.eval_every.max(1) as f64
    } + 1.0;
    (steps, batch, evals)
}

/// The training runs of `p`: every sweep value, trial and seed.
pub(crate) fn runs(p: &Pipeline) -> f64 {
    p.crossval.as_ref().map_or(1, |c| c.seeds.len()) as f64
        * (1 + p.trials.len() + p.sweep.as_ref().map_or(0, |s| s.values.len())) as f64
}

/// Work terms, done one after another, so they add.
fn work(p: &Pipeline) -> Vec<Term> {
    let shape = data_shape(p);
    let (train, all) = (shape.train as f64, (shape.train + shape.validation + shape.test) as f64);
    let mut work = Vec::new();
    if p.backbone.is_some() {
        work.push(Term {
            key: "backbone",
            what: format!("AlexNet features of {all} images"),
            amount: all * ALEXNET_FLOPS,
        });
    }
    if let (Some(m), Some(t)) = (&p.model, &p.train) {
        let (_, flops) = network_size(m, &shape);
        let macs = flops / 2.0;
        let (steps, batch, evals) = schedule(t, shape.train);
        let runs = runs(p);
        let key = if t.epochs > 0 { "train.epochs" } else { "train.iterations" };
        let per_run = steps * 6.0 * batch * macs + evals * 2.0 * all * macs;
        work.push(Term {
            key,
            what: format!("{runs} training runs of {steps:.3e} steps on batches of {batch}"),
            amount: per_run * runs,
        });
    }
    if let Some(g) = &p.gradcheck {
        let entries = (g.directions.len() + g.random + shape.classes) as f64;
        work.push(Term {
            key: "gradcheck.random",
            what: format!("{entries} entries checked on {train} examples"),
            amount: entries * 2.0 * train * (shape.inputs * shape.classes) as f64,
        });
    }
    if let Some(c) = &p.contour {
        let evals = (c.grid * c.grid) as f64 * 2.0 + c.steps as f64 * 4.0;
        work.push(Term {
            key: "contour.steps",
            what: format!("{evals} cost evaluations on {train} examples"),
            amount: evals * train * shape.classes as f64 * 30.0,
        });
    }
    work
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pipeline(extra: &str) -> Pipeline {
        let text = format!(
            "version = 1\nname = \"t\"\n[model]\nkind = \"mlp\"\nhidden = [25]\n[train]\noptimizer = \"sgd\"\nlr = 1e-3\niterations = 10\n{extra}"
        );
        toml::from_str(&text).unwrap()
    }

    #[test]
    fn ordinary_files_pass() {
        check(&pipeline("")).unwrap();
        let mut p = pipeline("");
        p.train.as_mut().unwrap().iterations = 5000;
        check(&p).unwrap();
    }

    fn layers(layers: &str) -> Pipeline {
        let text = format!(
            "version = 1\nname = \"t\"\n[model]\nkind = \"sequential\"\n{layers}[[model.layers]]\ntype = \"flatten\"\n\
             [[model.layers]]\ntype = \"linear\"\nout = 10\n[train]\noptimizer = \"adam\"\nlr = 1e-3\niterations = 10\n\
             batch_size = 64\n"
        );
        toml::from_str(&text).unwrap()
    }

    /// Issue 32's networks: 30 convolutions of 16 channels (70 k parameters)
    /// were refused as needing 45.9 GB, and 300 ReLUs estimated at 14 GB, when
    /// every layer's activations of the accuracy pass were summed; measured,
    /// 12 such convolutions peaked at 0.8 GB and the ReLUs at 0.3 GB (on the
    /// whole of MNIST; `tests/memory.rs` measures the estimates).
    #[test]
    fn deep_networks_pass_and_are_not_summed_layer_by_layer() {
        let conv = "[[model.layers]]\ntype = \"conv2d\"\nout = 16\nkernel = 3\npadding = 1\n\
                    [[model.layers]]\ntype = \"relu\"\n";
        for (name, p, most) in [
            ("30 convolutions", layers(&conv.repeat(30)), 1.5e9),
            ("300 ReLUs", layers(&"[[model.layers]]\ntype = \"relu\"\n".repeat(300)), 1.0e9),
        ] {
            check(&p).unwrap_or_else(|e| panic!("{name}: {e}"));
            let peak = memory::peak(&p);
            assert!(peak.total() < most, "{name}: {} bytes while {}", peak.total(), peak.name);
        }
    }

    #[test]
    fn huge_widths_and_step_counts_are_refused_with_their_key() {
        let mut p = pipeline("");
        p.model.as_mut().unwrap().hidden = vec![16_000_000];
        let e = check(&p).unwrap_err();
        assert!(e.starts_with("model.hidden:") && e.contains("memory"), "{e}");
        let mut p = pipeline("");
        p.train.as_mut().unwrap().iterations = 1 << 40;
        let e = check(&p).unwrap_err();
        assert!(e.starts_with("train.iterations:"), "{e}");
        p.train.as_mut().unwrap().eval_every = 1 << 30;
        let e = check(&p).unwrap_err();
        assert!(e.starts_with("train.iterations:") && e.contains("operations"), "{e}");
    }
}
