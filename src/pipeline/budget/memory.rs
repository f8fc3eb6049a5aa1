//! The memory a run of a pipeline file reaches, from the file alone.
//!
//! A run goes through phases one after another: loading the data, each
//! stage, and within training the steps, the accuracy passes and the
//! checkpoints. What one phase allocates is freed before the next, but
//! some things stay from the moment they exist to the end: the data set
//! (cached for every stage), the parameters with their optimiser state and
//! the starting weights, the threads' scratch. So the peak is the largest
//! phase's own tensors plus what stays, and the estimate is that maximum,
//! not the sum of everything (see `nn::footprint` for a network's passes).
//!
//! The allocator is tuned never to give memory back (`memory.rs`), so the
//! resident size of the process is what it once held at most; the model
//! counts every buffer a phase holds at once, with the allocator's own
//! rounding and the process's baseline, so that it bounds the measured peak
//! from above while staying within twice it (`tests/memory.rs` runs the
//! committed pipelines and stress networks and compares).

use super::super::model;
use super::super::schema::{Dataset, ModelKind, OptimizerName, Pipeline};
use super::super::validate::{data_shape, DataShape};
use crate::nn::Layer;

/// The process before it holds any data: the binary's pages, the thread
/// pool, the allocator's arena, a chart's bitmap (measured: 8.3 MB for a
/// run that draws one small figure).
pub(crate) const BASELINE: f64 = 10e6;

/// The scaling stage's charts, decoded and put side by side (measured: 5.7
/// MB of heap).
const CHARTS: f64 = 6e6;

/// The allocator's holes, as a fraction of what a phase holds.
const SLACK: f64 = 0.1;

/// Bytes of one f32.
const F32: f64 = 4.0;

/// One part of a phase's memory, with the key that asks for it.
#[derive(Clone, Debug)]
pub(crate) struct Part {
    pub key: &'static str,
    pub what: String,
    pub bytes: f64,
}

/// A phase of the run and what the process holds during it.
#[derive(Clone, Debug)]
pub(crate) struct Phase {
    /// What the run is doing ("training, a step of 64 examples").
    pub name: String,
    pub parts: Vec<Part>,
}

impl Phase {
    pub fn total(&self) -> f64 {
        self.parts.iter().map(|p| p.bytes).sum()
    }

    /// The part holding the most.
    pub fn largest(&self) -> &Part {
        self.parts.iter().max_by(|a, b| a.bytes.total_cmp(&b.bytes)).expect("a phase has parts")
    }
}

fn part(key: &'static str, what: impl Into<String>, bytes: f64) -> Part {
    Part { key, what: what.into(), bytes }
}

/// The threads a run uses: rayon's default, or `RAYON_NUM_THREADS`.
fn threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

/// The variants of a pipeline that train: itself, each sweep value, each
/// trial (from the sweep's choice, which may be any value, so each pair).
fn variants(p: &Pipeline) -> Vec<Pipeline> {
    use super::super::load::{from_table, set_path, to_table};
    let base = Pipeline { sweep: None, trials: vec![], ..p.clone() };
    let mut out = vec![base.clone()];
    let Ok(table) = to_table(&base) else { return out };
    let mut swept = vec![table.clone()];
    if let Some(s) = &p.sweep {
        swept = s
            .values
            .iter()
            .filter_map(|v| {
                let mut t = table.clone();
                set_path(&mut t, &s.key, v.clone()).ok().map(|()| t)
            })
            .collect();
    }
    for t in &swept {
        out.extend(from_table(t));
        for trial in &p.trials {
            let mut t = t.clone();
            if trial.set.iter().all(|(k, v)| set_path(&mut t, k, v.clone()).is_ok()) {
                out.extend(from_table(&t));
            }
        }
    }
    out
}

/// The key that sizes the data set.
fn data_key(p: &Pipeline) -> &'static str {
    if p.data.dataset == Dataset::Faces {
        "data.size"
    } else {
        "data"
    }
}

/// The key of the network's size.
fn model_key(p: &Pipeline) -> &'static str {
    match p.model.as_ref().map(|m| m.kind) {
        Some(ModelKind::Sequential) => "model.layers",
        _ => "model.hidden",
    }
}

/// Examples of each split as loaded (before `train_limit`) and the values
/// of one image and of one example.
struct Sizes {
    loaded: f64,
    pixels: f64,
    inputs: f64,
}

fn sizes(p: &Pipeline, shape: &DataShape) -> Sizes {
    let d = &p.data;
    let loaded = match d.dataset {
        Dataset::Mnist => 70000.0,
        Dataset::Faces => {
            let train: usize = d.actors.iter().map(|a| *d.split.train_for.get(a).unwrap_or(&d.split.train)).sum();
            (train + shape.validation + shape.test) as f64
        }
    };
    Sizes { loaded, pixels: shape.pixels as f64, inputs: shape.inputs as f64 }
}

/// The data sets a run holds: one per distinct data section among the runs
/// (a cross-validation seed makes another split, and the data cache keys on
/// the whole section), each its images or, after a backbone, its features.
fn data_parts(p: &Pipeline, all: &[Pipeline], shape: &DataShape) -> Vec<Part> {
    let s = sizes(p, shape);
    let mut sections: Vec<String> = Vec::new();
    for v in all {
        for seed in super::super::stages::train::seeds(v) {
            let d = super::super::schema::Data { seed, train_limit: 0, ..v.data.clone() };
            let key = serde_json::to_string(&d).unwrap_or_default();
            if !sections.contains(&key) {
                sections.push(key);
            }
        }
    }
    let copies = sections.len().max(1) as f64;
    let key = data_key(p);
    // Images (f32) and labels (usize) of every split.
    let images = s.loaded * (s.pixels * F32 + 8.0);
    let mut parts = Vec::new();
    if p.backbone.is_some() {
        // The features stay and the images go, to be read again for the
        // figures after training; the second reading reuses only part of
        // the first's place, split by what was allocated meanwhile
        // (measured: half of it).
        parts.push(part(
            key,
            format!("the backbone features of {} examples", s.loaded),
            copies * s.loaded * s.inputs * F32,
        ));
        parts.push(part(key, format!("{} images of {} values", s.loaded, s.pixels), images));
        if p.train.is_some() {
            parts.push(part(key, "the images' first reading, where the second does not fit", 0.5 * images));
        }
    } else {
        let what = if copies > 1.0 { format!("{copies} splits (one per data seed) of ") } else { String::new() };
        parts.push(part(key, format!("{what}{} examples of {} values", s.loaded, s.pixels), copies * images));
    }
    if p.data.train_limit > 0 {
        parts.push(part(
            "data.train_limit",
            "the first training examples, copied",
            shape.train as f64 * s.inputs * F32,
        ));
    }
    // Loading: MNIST's training images as bytes beside their floats (and the
    // file); faces are collected in growing vectors (the room they grow
    // into, and one actor's decoded images: measured, 0.56 of the images).
    let load = match p.data.dataset {
        Dataset::Mnist => 60000.0 * 784.0 + 16e6,
        Dataset::Faces => 0.6 * images,
    };
    // The allocator keeps what decoding used, below the data, where later
    // large blocks do not fit: it stays in the process's size.
    parts.push(part(key, "decoding the data (kept by the allocator)", load));
    parts
}

/// The grid of the first weighted layer's weights `train` draws (as
/// `train::weight_grid` does): images, their side, columns and zoom; None
/// when that layer's weights are not images.
fn weight_figure(net: &crate::nn::Sequential, example: &[usize]) -> Option<(f64, f64, f64, f64)> {
    let first = *net.weighted().first()?;
    let inputs: usize = example.iter().product();
    let side = match first.layer {
        Layer::Linear { out, .. } if first.input == [inputs] && example.len() == 3 && example[1] >= 16 => {
            (out, example[1])
        }
        Layer::Conv2d { out, win, .. } => (out, win.kernel),
        _ => return None,
    };
    let (units, side) = (side.0 as f64, side.1);
    let cols = if net.weighted().len() == 1 { units } else { units.sqrt().ceil() };
    Some((units, side as f64, cols, (96 / side.max(1)).clamp(3, 16) as f64))
}

/// What training `v` (one variant) holds, phase by phase; `shared`: the
/// parts every phase holds (baseline, data).
fn training_phases(v: &Pipeline, shape: &DataShape, shared: &[Part], jobs: usize, threads: usize) -> Vec<Phase> {
    let (Some(m), Some(t)) = (&v.model, &v.train) else { return vec![] };
    let Ok(net) = model::build(m, &shape.example, shape.classes) else { return vec![] };
    let key = model_key(v);
    let inputs = shape.inputs;
    let params = net.param_count() as f64 * F32;
    let state = match t.optimizer {
        OptimizerName::Adam => 2.0 * params,
        OptimizerName::Sgd if t.momentum > 0.0 => params,
        OptimizerName::Sgd => 0.0,
    };
    let n = shape.train;
    let by_size = t.epochs > 0 && t.batch_size > 0;
    let epochs = t.epochs > 0 && !by_size;
    let batch = if by_size || (!epochs && t.batch_size > 0) {
        t.batch_size.min(n.max(1))
    } else if epochs {
        n.div_ceil(t.batches_per_epoch.max(1))
    } else {
        n
    };
    let full = !by_size && !epochs && (t.batch_size == 0 || t.batch_size >= n);
    let units = net.nodes.iter().map(|n| n.output.iter().map(|&d| d as f64).product::<f64>()).sum::<f64>();
    // Stays through the run: the weights, the starting weights (copied at
    // the first update), the optimiser's state, and the first run of
    // several kept while the others train.
    let mut held = shared.to_vec();
    held.push(part(
        key,
        format!("{:.3e} parameters, their starting values and the optimiser's state", params / F32),
        2.0 * params + state,
    ));
    if jobs > 1 {
        held.push(part(key, "the first training run's weights, kept while the others train", 2.0 * params));
    }
    // Every run's learning curve (points of 48 bytes).
    let (steps, _, points) = super::schedule(t, n);
    let runs = super::runs(v);
    held.push(part(
        if t.epochs > 0 { "train.epochs" } else { "train.iterations" },
        format!("{steps:.3e} steps make a learning curve of {points:.3e} points (for each of {runs} runs)"),
        points * 48.0 * runs,
    ));
    // Convolutions' packed filters, remembered for evaluation (at most 16
    // tensors and 256 MiB: `conv::prepacked`).
    let convs: Vec<f64> = net
        .nodes
        .iter()
        .filter(|n| matches!(n.layer, Layer::Conv2d { .. }))
        .map(|n| n.params.iter().map(|p| p.shape.iter().map(|&d| d as f64).product::<f64>()).sum::<f64>() * F32 * 3.0)
        .collect();
    if !convs.is_empty() {
        let copies = (16 / convs.len()).max(1) as f64;
        let cache = (copies * convs.iter().sum::<f64>()).min(256.0 * (1u64 << 20) as f64);
        held.push(part(key, "the convolutions' packed filters", cache));
    }
    let step = net.training_footprint(batch, threads);
    let evals: Vec<(usize, crate::nn::footprint::Footprint)> = [n, shape.validation, shape.test]
        .into_iter()
        .map(|rows| (rows, crate::nn::infer::footprint(&net, rows, inputs, threads)))
        .collect();
    let (eval_rows, eval) = evals.into_iter().max_by(|a, b| a.1.peak.total_cmp(&b.1.peak)).expect("three splits");
    held.push(part(key, "the threads' scratch", step.scratch.max(eval.scratch)));
    let copy = if full {
        0.0
    } else if epochs {
        // An epoch's mini-batches, and the next epoch's while they are cut.
        2.0 * n as f64 * (inputs as f64 * F32 + 8.0)
    } else {
        batch as f64 * (inputs as f64 * F32 + 8.0)
    };
    let step_key = if t.batch_size == 0 { key } else { "train.batch_size" };
    let mut phases = Vec::new();
    let mut with = |name: String, mut extra: Vec<Part>| {
        let mut parts = held.clone();
        parts.append(&mut extra);
        phases.push(Phase { name, parts });
    };
    with(
        format!("training, a step of {batch} examples"),
        vec![
            part(step_key, "the step's mini-batch", copy),
            part(
                step_key,
                format!("a step's activations of {batch} examples through layers of {units} values"),
                step.peak,
            ),
        ],
    );
    with(
        format!("training, the accuracies of {eval_rows} examples"),
        vec![
            part(key, "the parameters' gradients", params),
            part(
                key,
                format!("the accuracy pass's activations of {eval_rows} examples through layers of {units} values"),
                eval.peak,
            ),
        ],
    );
    if let Some((units, side, cols, zoom)) = weight_figure(&net, &shape.example) {
        // After training: the trained and the starting weights, their
        // difference (the second figure), and one figure at a time.
        let png = crate::plot::grid::png_bytes(units, [side, side], cols, zoom, [true, false]);
        with(
            "drawing the weights".into(),
            vec![
                part(key, "the weights' change in training", params),
                part(key, format!("the figure of {units} weight images"), png + units * side * side * F32),
            ],
        );
    }
    if t.checkpoint_every > 0 || !t.save.is_empty() {
        // A checkpoint (or the saved weights) as safetensors: each tensor's
        // bytes, then the file; and the data order as JSON.
        let tensors = params + if t.checkpoint_every > 0 { state } else { 0.0 };
        with(
            "training, a checkpoint".into(),
            vec![
                part(key, "the parameters' gradients", params),
                part(
                    key,
                    format!("{:.3e} parameters (and the optimiser's state) as a file", params / F32),
                    2.0 * tensors + n as f64 * 16.0,
                ),
            ],
        );
    }
    phases
}

/// Every phase of a run of `p`, with what it holds.
pub(crate) fn phases(p: &Pipeline) -> Vec<Phase> {
    let shape = data_shape(p);
    let threads = threads();
    let all = variants(p);
    let needs_data = p.model.is_some() || p.samples.is_some() || p.backbone.is_some();
    let mut shared = vec![part("", "the process itself", BASELINE)];
    let mut phases = Vec::new();
    if needs_data {
        let data = data_parts(p, &all, &shape);
        let s = sizes(p, &shape);
        let mut loading = shared.clone();
        loading.extend(data.iter().cloned());
        phases.push(Phase { name: "loading the data".into(), parts: loading });
        if let Some(b) = &p.backbone {
            if let Ok(net) = model::backbone(b, &shape.image) {
                let mut parts = shared.clone();
                parts.extend(data.iter().cloned());
                let weights = net.param_count() as f64 * F32;
                // A weights file is read whole, and parsed whole (a classifier's tensors too).
                let file = b.weights.as_ref().and_then(|w| std::fs::metadata(w).ok()).map_or(0.0, |m| m.len() as f64);
                let f = net.inference_footprint(16, threads);
                parts.push(part("backbone", "the backbone's weights", weights + 2.0 * file));
                parts.push(part(
                    "backbone",
                    "a batch of 16 images through the backbone",
                    f.peak + f.scratch + 16.0 * s.pixels * F32,
                ));
                phases.push(Phase { name: "extracting the backbone's features".into(), parts });
            }
        }
        shared.extend(data);
        let side = shape.image[1] as f64;
        if let Some(samples) = &p.samples {
            let (count, cols) = ((samples.per_class * shape.classes) as f64, samples.per_class as f64);
            let png = crate::plot::grid::png_bytes(count, [side, side], cols, 2.0, [false, true]);
            let mut parts = shared.clone();
            parts.push(part(
                "samples.per_class",
                format!("the figure of {count} samples"),
                png + count * side * side * F32,
            ));
            phases.push(Phase { name: "drawing the samples".into(), parts });
        }
        if let (Some(m), Some(u)) = (&p.model, &p.units) {
            let net = model::build(m, &shape.example, shape.classes).ok();
            if let Some((units, side, _, zoom)) = net.as_ref().and_then(|n| weight_figure(n, &shape.example)) {
                // Filters at the weight figure's zoom, a linear layer's units at 4.
                let filters =
                    net.as_ref().and_then(|n| n.weighted().first().map(|f| matches!(f.layer, Layer::Conv2d { .. })));
                let zoom = if filters == Some(true) { zoom } else { 4.0 };
                let png = crate::plot::grid::png_bytes(units, [side, side], u.columns as f64, zoom, [true, false]);
                let mut parts = shared.clone();
                parts.push(part("units", format!("the figure of {units} units"), png + units * side * side * F32));
                phases.push(Phase { name: "drawing the hidden units".into(), parts });
            }
        }
    }
    // The most trainings one stage runs (a sweep's values, the trials on
    // each seed, the seeds).
    let seeds = super::super::stages::train::seeds(p).len();
    let jobs = p.sweep.as_ref().map_or(1, |s| s.values.len()).max(p.trials.len() * seeds).max(seeds);
    for v in &all {
        phases.extend(training_phases(v, &data_shape(v), &shared, jobs, threads));
    }
    if let (Some(m), Some(g)) = (&p.model, &p.gradcheck) {
        if let Ok(net) = model::build(m, &shape.example, shape.classes) {
            let params = net.param_count() as f64 * F32;
            let key = model_key(p);
            let mut parts = shared.clone();
            parts.push(part(key, "the parameters, a copy and the gradients", 3.0 * params));
            if m.kind == ModelKind::Linear {
                let rows = g.examples.unwrap_or(shape.train).min(shape.train) as f64;
                let logits = rows * shape.classes as f64;
                parts.push(part(
                    "gradcheck",
                    format!("f32 and f64 logits of {rows} examples"),
                    logits * (6.0 * F32 + 16.0),
                ));
                if g.examples.is_some() {
                    parts.push(part("gradcheck.examples", "the examples, copied", rows * shape.inputs as f64 * F32));
                }
            } else {
                let rows = g.examples.unwrap_or(8);
                let f = net.training_footprint(rows, threads);
                parts.push(part("gradcheck.examples", format!("a step of {rows} examples"), f.peak + f.scratch));
            }
            phases.push(Phase { name: "the gradient check".into(), parts });
        }
    }
    if let (Some(m), Some(_)) = (&p.model, &p.contour) {
        if let Ok(net) = model::build(m, &shape.example, shape.classes) {
            let params = net.param_count() as f64 * F32;
            let rows = shape.train as f64;
            let mut parts = shared.clone();
            parts.push(part(model_key(p), "the parameters and a copy", 2.0 * params));
            if m.kind == ModelKind::Linear {
                parts.push(part(
                    "contour",
                    format!("f64 logits of {rows} examples"),
                    rows * shape.classes as f64 * 16.0,
                ));
            } else {
                let piece = ((1usize << 22) / shape.inputs.max(1)).clamp(1, shape.train.max(1));
                let f = net.inference_footprint(piece, threads);
                parts.push(part("contour", "the training examples in pieces", rows * shape.inputs as f64 * F32));
                parts.push(part("contour", format!("a pass of {piece} examples"), f.peak + f.scratch));
            }
            phases.push(Phase { name: "the cost surface".into(), parts });
        }
    }
    if let Some(s) = &p.scaling {
        let points =
            s.depths.iter().map(|&n| (n, s.width_for_depths)).chain(s.widths.iter().map(|&k| (s.depth_for_widths, k)));
        let most = points.map(|(n, k)| n as f64 * (k * k) as f64).fold(0.0, f64::max);
        let mut parts = vec![part("", "the process itself", BASELINE)];
        parts.push(part("scaling.widths", "the largest chain's weights and activations", most * 8.0 * 6.0));
        parts.push(part("scaling", "the charts", CHARTS));
        phases.push(Phase { name: "the scaling chains".into(), parts });
    }
    if phases.is_empty() {
        phases.push(Phase { name: "starting".into(), parts: shared });
    }
    // Blocks freed in one order and asked for in another leave holes a
    // larger block cannot use (measured: up to 8 % beyond the live bytes).
    for phase in &mut phases {
        let slack = SLACK * phase.total();
        phase.parts.push(part("", "the allocator's holes", slack));
    }
    phases
}

/// The run's peak: the phase that holds the most.
pub(crate) fn peak(p: &Pipeline) -> Phase {
    phases(p).into_iter().max_by(|a, b| a.total().total_cmp(&b.total())).expect("at least one phase")
}
