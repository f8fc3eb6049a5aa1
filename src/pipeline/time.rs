//! `nabla time FILE.toml`: where a pipeline's network spends its time, layer
//! by layer, as `caffe time` reports it (the measuring is `nn::timing`).
//!
//! The network is built for the shapes the file implies, as `nabla check`
//! builds it, so no data set is read; inputs and weights are random. The
//! model is timed as it trains (forward on a recording tape, then backward,
//! then the file's optimiser). A `[backbone]` is timed too, forward only with
//! random weights: nabla runs it once per image, with no gradient, so it has
//! its own table and its own shares.
//!
//! The output is a table, or with `--json` one object (`TimeReport`
//! below; every time in milliseconds, every FLOP count for the whole batch).

use super::schema::{LossReduction, OptimizerName};
use super::{budget, model, validate, Loaded};
use crate::autodiff::Reduction;
use crate::gemm::KernelChoice;
use crate::nn::sequential::{describe, si};
use crate::nn::timing::{self, LayerTiming, NetworkTiming, Pass, TimingOptions};
use crate::nn::Sequential;
use crate::optim::{Adam, Optimizer, Sgd};
use serde::Serialize;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

/// Measured runs when `--iterations` is not given.
pub(crate) const DEFAULT_ITERATIONS: usize = 10;
/// Unmeasured runs before them.
pub(crate) const WARMUP: usize = 1;
/// The batch when `--batch` is not given and `train.batch_size` is 0 (the
/// whole training set) or the file does not train.
pub(crate) const DEFAULT_BATCH: usize = 64;
/// Flag limits (`--batch`, `--iterations`): larger is a typo.
pub(crate) const MAX_BATCH: usize = 1 << 20;
pub(crate) const MAX_ITERATIONS: usize = 1000;
/// The memory a timed network may hold (its weights with their gradients,
/// working copy and optimiser state, and its largest pass's activations,
/// gradients and workspace): 4 GiB, or less on a machine with less memory.
pub(crate) const MAX_MEMORY_BYTES: f64 = 4.0 * (1u64 << 30) as f64;
/// The arithmetic one `nabla time` may do: ~8 minutes at 200 GFLOP/s.
pub(crate) const MAX_WORK_FLOPS: f64 = 1e14;

const USAGE: &str = "\
usage: nabla time <pipeline.toml> [--batch N] [--iterations K] [--json] [--set section.key=value]...

Times each layer of the file's network (forward and backward, median of K runs after one
warm-up, on random inputs and weights at batch N), and the whole network's forward pass and
training step. N defaults to train.batch_size (64 when that is 0 or there is no [train]), K to 10.";

/// The backward FLOPs rule, as the report states it.
const BACKWARD_RULE: &str =
    "conv2d and linear: 2x forward (weight and input gradients), 1x for the network's first layer \
                             (its input is data: no input gradient); other layers: 1x forward";

/// The `--json` object.
#[derive(Debug, Serialize)]
pub(crate) struct TimeReport {
    /// The pipeline file and its `name`.
    pub file: String,
    pub name: String,
    /// The CPU's model name (`/proc/cpuinfo`), the SGEMM kernel in use (as
    /// `nabla kernels` lists them) and the threads of the pool.
    pub cpu: String,
    pub kernel: &'static str,
    pub threads: usize,
    /// Examples per run, measured runs, unmeasured runs first, and how the
    /// runs are summarised ("median").
    pub batch: usize,
    pub iterations: usize,
    pub warmup: usize,
    pub statistic: &'static str,
    pub backward_flops_rule: &'static str,
    /// The backbone, forward only; null without one.
    pub backbone: Option<Section>,
    /// The trained model.
    pub model: Section,
}

/// One network's figures.
#[derive(Debug, Serialize)]
pub(crate) struct Section {
    /// "training" (forward, backward) or "inference" (forward only).
    pub pass: &'static str,
    /// One example's input and output shapes.
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub layers: Vec<LayerRow>,
    /// The layers' forward plus backward times, summed.
    pub layers_ms: f64,
    pub whole: Whole,
}

/// One layer's figures.
#[derive(Debug, Serialize)]
pub(crate) struct LayerRow {
    /// Its parameters' prefix (`layers.0` or its `name`), its `type`, and
    /// its settings in a few words (`conv2d 6 5x5 pad 2`).
    pub name: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub description: String,
    pub input: Vec<usize>,
    pub output: Vec<usize>,
    pub forward_ms: f64,
    /// Null for a forward-only section.
    pub backward_ms: Option<f64>,
    /// For the whole batch: `Layer::flops` times the batch; backward by
    /// `backward_flops_rule`.
    pub forward_flops: f64,
    pub backward_flops: Option<f64>,
    /// Null when the time or the FLOPs are zero.
    pub forward_gflops_per_s: Option<f64>,
    pub backward_gflops_per_s: Option<f64>,
    /// Its forward plus backward time as a percentage of `layers_ms`.
    pub share_percent: f64,
    pub input_gradient: bool,
}

/// The whole network, run as evaluation and as a training step run it.
#[derive(Debug, Serialize)]
pub(crate) struct Whole {
    /// Forward with nothing recorded (a convolution and its ReLU fused).
    pub forward_inference_ms: f64,
    /// Forward to the loss on a recording tape, backward, the optimiser's
    /// step (the file's `train.optimizer`; null without `[train]`) and their
    /// sum; all null for a forward-only section.
    pub forward_training_ms: Option<f64>,
    pub backward_ms: Option<f64>,
    pub optimizer: Option<&'static str>,
    pub update_ms: Option<f64>,
    pub step_ms: Option<f64>,
}

struct Args {
    file: PathBuf,
    sets: Vec<String>,
    batch: Option<usize>,
    iterations: usize,
    json: bool,
}

/// `--flag N` with `1 <= N <= max`.
fn number(flag: &str, v: Option<String>, max: usize) -> Result<usize, String> {
    let v = v.ok_or_else(|| format!("{flag} needs a whole number from 1 to {max}"))?;
    v.parse::<usize>()
        .ok()
        .filter(|n| (1..=max).contains(n))
        .ok_or_else(|| format!("{flag} needs a whole number from 1 to {max}, got '{v}'"))
}

fn parse(raw: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args { file: PathBuf::new(), sets: vec![], batch: None, iterations: DEFAULT_ITERATIONS, json: false };
    let mut files = Vec::new();
    let mut it = raw.iter().cloned();
    while let Some(arg) = it.next() {
        // `--flag=value` as `--flag value`.
        let (flag, mut inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = || inline.take().or_else(|| it.next());
        match flag.as_str() {
            "-h" | "--help" => return Ok(None),
            "--batch" => a.batch = Some(number("--batch", value(), MAX_BATCH)?),
            "--iterations" => a.iterations = number("--iterations", value(), MAX_ITERATIONS)?,
            "--set" => a.sets.push(value().ok_or("--set needs section.key=value")?),
            "--json" => a.json = true,
            s if s.starts_with('-') => return Err(format!("unknown option '{arg}'")),
            _ => files.push(PathBuf::from(arg)),
        }
        if inline.is_some() {
            return Err(format!("{flag} takes no value"));
        }
    }
    match files.len() {
        1 => a.file = files.remove(0),
        0 => return Err("name a pipeline file".into()),
        n => return Err(format!("one pipeline file at a time ({n} given)")),
    }
    Ok(Some(a))
}

/// The `nabla time` command: exit 0, 1 when the file cannot be timed, 2 for
/// bad arguments.
pub fn main(raw: &[String]) -> ExitCode {
    let args = match parse(raw) {
        Ok(Some(a)) => a,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            crate::say!("nabla time: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    // On a pool thread, as a run is, so its parallel loops need no hand-off.
    match crate::parallel::in_pool(|| report(&args)) {
        Ok(r) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&r).expect("a report serialises"));
            } else {
                print!("{}", table(&r));
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::say!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The CPU's model name, as `/proc/cpuinfo` gives it.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("model name"))?;
            Some(line.split_once(':')?.1.trim().to_string())
        })
        .unwrap_or_else(|| format!("unknown ({})", std::env::consts::ARCH))
}

/// Forward FLOPs of one example.
fn flops(net: &Sequential) -> f64 {
    net.nodes.iter().map(|n| n.layer.flops(&n.input, &n.output)).sum()
}

fn gb(bytes: f64) -> String {
    format!("{:.1} GB", bytes / 1e9)
}

/// Refuse a network whose weights and activations at `batch` do not fit
/// (the model trained with `moments` optimiser tensors per parameter, a
/// backbone forward only), or runs that would take too long.
fn check_cost(
    file: &str,
    nets: &[(&str, &Sequential)],
    batch: usize,
    iterations: usize,
    moments: f64,
) -> Result<(), String> {
    let limit = MAX_MEMORY_BYTES.min(budget::memory_limit());
    for (what, net) in nets {
        let pass = if *what == "backbone" { Pass::Inference } else { Pass::Training };
        let (weights, passes) = timing::memory(net, pass, batch, moments, rayon::current_num_threads());
        if weights + passes > limit {
            let alone = if weights > limit {
                "; its weights alone need more than that: time a smaller network".to_string()
            } else {
                "; lower --batch".to_string()
            };
            return Err(format!(
                "{file}: --batch {batch}: the {what}'s activations (values, gradients and workspace of its passes: \
                 {}) and weights ({:.3e} parameters{}: {}) need about {}, more than the {} nabla time allows{alone}",
                gb(passes),
                net.param_count() as f64,
                if pass == Pass::Training { ", a working copy and the optimiser's state" } else { "" },
                gb(weights),
                gb(weights + passes),
                gb(limit)
            ));
        }
    }
    // Per run: the model's layers alone (1x forward + ~2x backward), then the
    // whole model (inference 1x, training 1x + 2x); the backbone 1x + 1x.
    let per_example: f64 =
        nets.iter().map(|(what, net)| flops(net) * if *what == "backbone" { 2.0 } else { 7.0 }).sum();
    let work = per_example * batch as f64 * (iterations + WARMUP) as f64;
    if work > MAX_WORK_FLOPS {
        return Err(format!(
            "{file}: --iterations {iterations} at --batch {batch}: about {work:.1e} floating-point operations, more \
             than the {MAX_WORK_FLOPS:.0e} nabla time allows (~{:.0} minutes at 200 GFLOP/s); lower --iterations or \
             --batch",
            work / 200e9 / 60.0
        ));
    }
    Ok(())
}

/// Load, build, check the cost, and time.
fn report(a: &Args) -> Result<TimeReport, String> {
    let l: Loaded = super::load(&a.file, &a.sets).map_err(|e| e.to_string())?;
    let file = l.file.display().to_string();
    let p = &l.pipeline;
    let m = p.model.as_ref().ok_or_else(|| {
        format!("{file}: model: the file has no [model] section: nothing to time (nabla time times a file's network)")
    })?;
    let shape = validate::data_shape(p);
    let net = model::build(m, &shape.example, shape.classes).map_err(|e| format!("{file}: {e}"))?;
    let backbone = match &p.backbone {
        Some(b) => Some(model::backbone(b, &shape.image).map_err(|e| format!("{file}: {e}"))?),
        None => None,
    };
    let batch = a.batch.unwrap_or(match &p.train {
        Some(t) if t.batch_size > 0 => t.batch_size,
        _ => DEFAULT_BATCH,
    });
    let mut nets = vec![("model", &net)];
    if let Some(b) = &backbone {
        nets.push(("backbone", b));
    }
    let moments = match &p.train {
        Some(t) if t.optimizer == OptimizerName::Adam => 2.0,
        Some(t) if t.momentum > 0.0 => 1.0,
        _ => 0.0,
    };
    check_cost(&file, &nets, batch, a.iterations, moments)?;

    let o = TimingOptions { batch, iterations: a.iterations, warmup: WARMUP, seed: p.seed };
    let fail = |e: crate::Error| format!("{file}: timing: {e}");
    let backbone = match &backbone {
        Some(b) => {
            let params = timing::random_params(b, p.seed);
            let layers = timing::time_layers(b, &params, Pass::Inference, &o).map_err(fail)?;
            let whole = timing::time_network(b, &params, Pass::Inference, Reduction::Mean, None, &o).map_err(fail)?;
            Some(section(b, Pass::Inference, &layers, &whole, None))
        }
        None => None,
    };
    let params = timing::random_params(&net, p.seed);
    let layers = timing::time_layers(&net, &params, Pass::Training, &o).map_err(fail)?;
    let reduction = match p.train.as_ref().map(|t| t.loss) {
        Some(LossReduction::Sum) => Reduction::Sum,
        _ => Reduction::Mean,
    };
    let mut opt: Option<(Box<dyn Optimizer>, &'static str)> = match &p.train {
        Some(t) => Some(match t.optimizer {
            OptimizerName::Sgd => (Box::new(Sgd::new(t.lr, t.momentum).map_err(fail)?), "sgd"),
            OptimizerName::Adam => (Box::new(Adam::new(t.lr).map_err(fail)?), "adam"),
        }),
        None => None,
    };
    let optimizer = opt.as_ref().map(|(_, name)| *name);
    let mut step = |params: &mut crate::nn::Params, grads: &crate::autodiff::Grads| match opt.as_mut() {
        Some((o, _)) => o.step(params, grads),
        None => Ok(()),
    };
    let update: Option<timing::Update> = if optimizer.is_some() { Some(&mut step) } else { None };
    let whole = timing::time_network(&net, &params, Pass::Training, reduction, update, &o).map_err(fail)?;
    Ok(TimeReport {
        file,
        name: p.name.clone(),
        cpu: cpu_name(),
        kernel: KernelChoice::Auto.resolve().name(),
        threads: rayon::current_num_threads(),
        batch,
        iterations: a.iterations,
        warmup: WARMUP,
        statistic: "median",
        backward_flops_rule: BACKWARD_RULE,
        backbone,
        model: section(&net, Pass::Training, &layers, &whole, optimizer),
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// GFLOP/s of `flops` in `d`; None when either is zero.
fn rate(flops: f64, d: Duration) -> Option<f64> {
    (flops > 0.0 && !d.is_zero()).then(|| flops / d.as_secs_f64() / 1e9)
}

fn section(
    net: &Sequential,
    pass: Pass,
    layers: &[LayerTiming],
    whole: &NetworkTiming,
    optimizer: Option<&'static str>,
) -> Section {
    let spent = |l: &LayerTiming| l.forward + l.backward.unwrap_or_default();
    let total: Duration = layers.iter().map(spent).sum();
    let rows = layers
        .iter()
        .map(|l| LayerRow {
            name: l.prefix.clone(),
            kind: l.layer.type_name(),
            description: describe(&l.layer),
            input: l.input.clone(),
            output: l.output.clone(),
            forward_ms: ms(l.forward),
            backward_ms: l.backward.map(ms),
            forward_flops: l.forward_flops,
            backward_flops: l.backward_flops,
            forward_gflops_per_s: rate(l.forward_flops, l.forward),
            backward_gflops_per_s: l.backward.and_then(|b| rate(l.backward_flops.unwrap_or(0.0), b)),
            // A clock too coarse to see any layer: equal shares.
            share_percent: if total.is_zero() {
                100.0 / layers.len() as f64
            } else {
                100.0 * spent(l).as_secs_f64() / total.as_secs_f64()
            },
            input_gradient: l.input_gradient,
        })
        .collect();
    let training = whole.forward_training.zip(whole.backward);
    Section {
        pass: if pass == Pass::Training { "training" } else { "inference" },
        input: net.input.clone(),
        output: net.output().to_vec(),
        layers: rows,
        layers_ms: ms(total),
        whole: Whole {
            forward_inference_ms: ms(whole.forward_inference),
            forward_training_ms: whole.forward_training.map(ms),
            backward_ms: whole.backward.map(ms),
            optimizer,
            update_ms: whole.update.map(ms),
            step_ms: training.map(|(f, b)| ms(f + b + whole.update.unwrap_or_default())),
        },
    }
}

/// The report as text: a header, a table per network, the whole-network lines.
fn table(r: &TimeReport) -> String {
    let mut s = format!("nabla time {} ({})\n", r.file, r.name);
    s += &format!("CPU: {} | SGEMM kernel: {} | threads: {}\n", r.cpu, r.kernel, r.threads);
    s += &format!(
        "batch {} | median of {} run{} after {} warm-up | random inputs and weights\n",
        r.batch,
        r.iterations,
        if r.iterations == 1 { "" } else { "s" },
        r.warmup
    );
    if let Some(b) = &r.backbone {
        s += &format!("\nbackbone {:?} -> {:?}, forward only (run once per image, no gradient)\n\n", b.input, b.output);
        s += &section_table(b);
    }
    s += &format!(
        "\nmodel {:?} -> {:?}, trained: forward on a recording tape, then backward\n\n",
        r.model.input, r.model.output
    );
    s += &section_table(&r.model);
    s += &format!("\nbackward FLOPs by rule: {}\n", r.backward_flops_rule);
    s
}

fn section_table(sec: &Section) -> String {
    let num = |v: Option<f64>, digits: usize| v.map_or("-".to_string(), |v| format!("{v:.digits$}"));
    let mut s = String::from(
        "| layer | type | output | forward ms | backward ms | forward FLOPs | forward GFLOP/s | backward GFLOP/s | share |\n\
         | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |\n",
    );
    for l in &sec.layers {
        s += &format!(
            "| {} | {} | {:?} | {:.3} | {} | {} | {} | {} | {:.1} % |\n",
            l.name,
            l.description,
            l.output,
            l.forward_ms,
            num(l.backward_ms, 3),
            si(l.forward_flops),
            num(l.forward_gflops_per_s, 1),
            num(l.backward_gflops_per_s, 1),
            l.share_percent
        );
    }
    let fwd: f64 = sec.layers.iter().map(|l| l.forward_ms).sum();
    let bwd = sec.layers.iter().map(|l| l.backward_ms).sum::<Option<f64>>();
    let flops: f64 = sec.layers.iter().map(|l| l.forward_flops).sum();
    s += &format!("| all layers | | | {fwd:.3} | {} | {} | | | 100.0 % |\n\n", num(bwd, 3), si(flops));
    let w = &sec.whole;
    s += "| whole network | ms |\n| --- | ---: |\n";
    s += &format!("| forward, inference (conv + relu fused) | {:.3} |\n", w.forward_inference_ms);
    if let (Some(f), Some(b), Some(step)) = (w.forward_training_ms, w.backward_ms, w.step_ms) {
        s += &format!("| forward to the loss, training | {f:.3} |\n| backward | {b:.3} |\n");
        if let (Some(u), Some(name)) = (w.update_ms, w.optimizer) {
            s += &format!("| update ({name}) | {u:.3} |\n");
        }
        s += &format!("| training step | {step:.3} |\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Result<Option<Args>, String> {
        parse(&s.split_whitespace().map(String::from).collect::<Vec<_>>())
    }

    #[test]
    fn flags_are_read_and_bad_ones_refused() {
        let a = args("f.toml --batch=8 --iterations 3 --json --set train.lr=1").unwrap().unwrap();
        assert_eq!((a.batch, a.iterations, a.json, a.sets.len()), (Some(8), 3, true, 1));
        assert!(args("f.toml --help").unwrap().is_none());
        for (bad, says) in [
            ("f.toml --batch 0", "--batch needs a whole number from 1 to 1048576, got '0'"),
            ("f.toml --batch 99999999999999999999999", "got '99999999999999999999999'"),
            ("f.toml --batch", "--batch needs a whole number"),
            ("f.toml --iterations 1001", "--iterations needs a whole number from 1 to 1000"),
            ("f.toml --iterations -3", "got '-3'"),
            ("f.toml --json=yes", "--json takes no value"),
            ("f.toml --fast", "unknown option '--fast'"),
            ("", "name a pipeline file"),
            ("a.toml b.toml", "one pipeline file at a time"),
        ] {
            let e = args(bad).err().unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn batches_too_large_for_memory_or_time_are_refused() {
        let m: super::super::schema::Model = toml::from_str("kind = \"mlp\"\nhidden = [1000]").unwrap();
        let net = model::build(&m, &[784], 10).unwrap();
        check_cost("f.toml", &[("model", &net)], 64, 10, 2.0).unwrap();
        let e = check_cost("f.toml", &[("model", &net)], MAX_BATCH, 10, 2.0).unwrap_err();
        assert!(
            e.starts_with("f.toml: --batch 1048576: the model's activations") && e.contains("lower --batch"),
            "{e}"
        );
        let e = check_cost("f.toml", &[("model", &net)], 50_000, MAX_ITERATIONS, 2.0).unwrap_err();
        assert!(e.contains("--iterations 1000 at --batch 50000") && e.contains("floating-point operations"), "{e}");
    }

    /// Issue 32: 784 -> 600000 -> 10 holds 1.9 GB of weights, 7.6 GB with
    /// Adam's moments and the working copy, and 1.9 GB more of gradients;
    /// the cap counted activations only, and let it start at any batch.
    #[test]
    fn weights_count_against_the_cap() {
        let m: super::super::schema::Model = toml::from_str("kind = \"mlp\"\nhidden = [600000]").unwrap();
        let net = model::build(&m, &[784], 10).unwrap();
        let e = check_cost("f.toml", &[("model", &net)], 1, 1, 2.0).unwrap_err();
        assert!(e.contains("4.770e8 parameters") && e.contains(": 7.6 GB)"), "{e}");
        assert!(e.ends_with("its weights alone need more than that: time a smaller network"), "{e}");
        // Forward only (a backbone), the weights alone: 1.9 GB.
        let (weights, _) = timing::memory(&net, Pass::Inference, 1, 0.0, 1);
        assert!((weights - 1.908e9).abs() < 1e7, "{weights}");
    }
}
