//! What a pipeline file asks of the machine, worked out before anything runs:
//! the memory its largest stage holds at once and the arithmetic all its
//! stages do. A file that needs more memory than this machine has, or more
//! work than it could finish in a day, is refused at `check`, naming the key
//! that asks for it and the size it implies, instead of aborting in the
//! allocator or running for a week.
//!
//! Estimates are in f64, so no product can wrap; they are upper bounds of
//! the right order (within a small factor), not predictions of the exact
//! peak.

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

/// Refuse what this machine cannot hold or finish.
pub(crate) fn check(p: &Pipeline) -> Result<(), String> {
    let (memory, work) = estimate(p);
    let limit = memory_limit();
    if let Some(big) = memory.iter().max_by(|a, b| a.amount.total_cmp(&b.amount)) {
        if big.amount > limit {
            return Err(format!(
                "{}: {} needs about {} of memory, more than this machine's {}",
                big.key,
                big.what,
                bytes(big.amount),
                bytes(limit)
            ));
        }
    }
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

/// The network's size per example: parameters, activations (every layer's
/// output), widest activation and forward FLOPs; zeros when the `[model]`
/// does not build (validation has said why already).
fn network_size(m: &super::schema::Model, shape: &DataShape) -> (f64, f64, f64, f64) {
    let Ok(net) = super::model::build(m, &shape.example, shape.classes) else {
        return (0.0, 0.0, 0.0, 0.0);
    };
    let size = |s: &[usize]| s.iter().map(|&d| d as f64).product::<f64>();
    let units: f64 = net.nodes.iter().map(|n| size(&n.output)).sum();
    let widest = net.nodes.iter().map(|n| size(&n.output)).fold(shape.inputs as f64, f64::max);
    let flops: f64 = net.nodes.iter().map(|n| n.layer.flops(&n.input, &n.output)).sum();
    (net.param_count() as f64, units, widest, flops)
}

/// Memory terms (each held at once, so the largest decides) and work terms
/// (done one after another, so they add).
fn estimate(p: &Pipeline) -> (Vec<Term>, Vec<Term>) {
    let shape = data_shape(p);
    let (train, all) = (shape.train as f64, (shape.train + shape.validation + shape.test) as f64);
    let mut memory = Vec::new();
    let mut work = Vec::new();
    let data_key = if p.data.dataset == super::schema::Dataset::Faces { "data.size" } else { "data" };
    let examples = all * shape.inputs as f64 * 4.0 + all * shape.pixels as f64 * 4.0;
    memory.push(Term { key: data_key, what: format!("{all} examples of {} values", shape.pixels), amount: examples });
    if p.backbone.is_some() {
        work.push(Term {
            key: "backbone",
            what: format!("AlexNet features of {all} images"),
            amount: all * ALEXNET_FLOPS,
        });
    }

    if let (Some(m), Some(t)) = (&p.model, &p.train) {
        let (params, units, widest, flops) = network_size(m, &shape);
        let macs = flops / 2.0;
        let key = if m.kind == super::schema::ModelKind::Sequential { "model.layers" } else { "model.hidden" };
        // Weights, gradients, two Adam moments, the initial copy and the saved one.
        memory.push(Term { key, what: format!("{params:.3e} parameters"), amount: params * 4.0 * 6.0 });
        // Accuracy runs a split through the network in pieces of at most
        // 2^26 values of its widest layer.
        let split = shape.train.max(shape.validation).max(shape.test) as f64;
        let rows = split.min((f64::from(1u32 << 26) / widest.max(1.0)).max(1.0));
        memory.push(Term {
            key,
            what: format!("the activations of {rows} examples through layers of {units} values"),
            amount: rows * units * 4.0 * 3.0,
        });
        let steps = t.total_steps(shape.train).unwrap_or(usize::MAX) as f64;
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
        // A training step's activations and their gradients.
        memory.push(Term {
            key: if t.batch_size == 0 { key } else { "train.batch_size" },
            what: format!("a step's activations of {batch} examples through layers of {units} values"),
            amount: batch * units * 4.0 * 3.0,
        });
        let runs = p.crossval.as_ref().map_or(1, |c| c.seeds.len()) as f64
            * (1 + p.trials.len() + p.sweep.as_ref().map_or(0, |s| s.values.len())) as f64;
        let key = if t.epochs > 0 { "train.epochs" } else { "train.iterations" };
        memory.push(Term {
            key,
            what: format!("{steps:.3e} steps make a learning curve of {evals:.3e} points (for each of {runs} runs)"),
            amount: evals * 48.0 * runs,
        });
        let per_run = steps * 6.0 * batch * macs + evals * 2.0 * all * macs;
        work.push(Term {
            key,
            what: format!("{runs} training runs of {steps:.3e} steps on batches of {batch}"),
            amount: per_run * runs,
        });
    }
    if let Some(g) = &p.gradcheck {
        let entries = (g.directions.len() + g.random + shape.classes) as f64;
        memory.push(Term {
            key: "gradcheck",
            what: format!("f64 logits of {train} examples"),
            amount: train * 8.0 * shape.classes as f64,
        });
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
    if let Some(s) = &p.scaling {
        let points =
            s.depths.iter().map(|&n| (n, s.width_for_depths)).chain(s.widths.iter().map(|&k| (s.depth_for_widths, k)));
        let most = points.map(|(n, k)| n as f64 * (k * k) as f64).fold(0.0, f64::max);
        memory.push(Term {
            key: "scaling.widths",
            what: "the largest chain's weights and activations".into(),
            amount: most * 8.0 * 6.0,
        });
    }
    (memory, work)
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
