//! Training (report parts 4-5, 8), cross-validation over data seeds, and
//! the two ways of choosing settings: sweeps over one field and trials.

use super::{fresh_params, network, Ctx};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::data::{Dataset, Split};
use crate::nn::{Layer, Params, Sequential};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::pipeline::checkpoint::Saved;
use crate::pipeline::load::{from_table, set_path, to_table};
use crate::pipeline::report::fmt_metric;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{LossReduction, OptimizerName, Parallel, Pipeline, SelectMetric, Sweep, Train, Trial};
use crate::plot::{ColorMap, ImageGrid, LineChart, Series, SeriesStyle};
use crate::tensor::Rng;
use serde_json::json;
use std::io::IsTerminal;

/// Accuracies and loss at one point of training.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub(crate) struct EvalPoint {
    pub iteration: usize,
    /// NaN before the first step (JSON null).
    #[serde(deserialize_with = "nan_if_null")]
    pub loss: f64,
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
    Ok(<Option<f64> as serde::Deserialize>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// What a training loop needs, besides weights and optimiser, to continue
/// exactly where it stopped.
#[derive(serde::Serialize, serde::Deserialize)]
struct LoopState {
    /// Steps done.
    iteration: usize,
    rng: Rng,
    /// The training set's order after the last shuffle, and the next
    /// mini-batch's start in it.
    order: Vec<usize>,
    cursor: usize,
    curve: Vec<EvalPoint>,
    /// The dropout masks' generator (absent in checkpoints of networks
    /// saved before dropout could be declared).
    #[serde(default)]
    dropout: Option<Rng>,
}

/// Which training run a loop is: its label (for messages and checkpoint
/// names), seed, and the settings that define it.
struct RunId<'a> {
    label: &'a str,
    seed: u64,
    settings: &'a Pipeline,
}

impl LoopState {
    /// Whether this state, read back from a checkpoint, can be a point of a
    /// run of `total` steps on `n` training examples.
    fn fits(&self, total: usize, n: usize, eval_every: usize) -> Result<(), String> {
        if !(1..=total).contains(&self.iteration) {
            return Err(format!("iteration {} is not within 1..={total}", self.iteration));
        }
        crate::pipeline::checkpoint::check_permutation(&self.order, n)?;
        if self.cursor > n {
            return Err(format!("cursor {} is past the {n} training examples", self.cursor));
        }
        // The curve has a point where the loop records one, and no other.
        let expected = std::iter::once(0).chain((1..=self.iteration).filter(|it| it % eval_every == 0 || *it == total));
        if !self.curve.iter().map(|p| p.iteration).eq(expected) {
            let steps: Vec<usize> = self.curve.iter().map(|p| p.iteration).take(8).collect();
            return Err(format!(
                "the curve's iterations (starting {steps:?}, {} points) are not those a run recording every {eval_every} \
                 steps has up to step {}",
                self.curve.len(),
                self.iteration
            ));
        }
        // Before the first step there is no loss; after, a cross-entropy
        // computed in f32 and stopped if not finite: from 0 to f32::MAX.
        let loss = |v: f64| (0.0..=f32::MAX as f64).contains(&v);
        if let Some(p) = self.curve.iter().skip(1).find(|p| !loss(p.loss)) {
            return Err(format!(
                "the curve's loss at iteration {} is {:e}; a loss is a finite f32 of at least 0",
                p.iteration, p.loss
            ));
        }
        if !self.curve[0].loss.is_nan() {
            return Err(format!("the curve's loss before the first step is {:e}; there is none", self.curve[0].loss));
        }
        let fraction = |v: f64| (0.0..=1.0).contains(&v);
        if let Some(p) = self.curve.iter().find(|p| !(fraction(p.train) && fraction(p.validation) && fraction(p.test)))
        {
            return Err(format!("the curve's accuracies at iteration {} are not fractions", p.iteration));
        }
        Ok(())
    }
}

/// The fraction of `split` that `net` classifies right; `shared`: the ranks
/// of a data-parallel run each take a share of the rows.
pub(crate) fn accuracy(net: &Sequential, params: &Params, split: &Split, shared: bool) -> crate::Result<f64> {
    let pred = if shared {
        crate::distributed::infer::classify(net, params, &split.images)?
    } else {
        crate::nn::infer::classify(net, params, &split.images)?
    };
    Ok(pred.iter().zip(&split.labels).filter(|(p, y)| p == y).count() as f64 / split.len().max(1) as f64)
}

/// Train `params` in place as `t` says; returns the learning curve.
fn train_loop(
    ctx: &Ctx,
    data: &Dataset,
    net: &Sequential,
    params: &mut Params,
    t: &Train,
    run: &RunId,
) -> Result<Vec<EvalPoint>, RunError> {
    let (seed, label) = (run.seed, run.label);
    let fail = |e: crate::Error| ctx.err("train", e);
    if t.batch_size > data.train.len() {
        return Err(ctx.err(
            "train",
            format!("train.batch_size: {} is larger than the {} training images", t.batch_size, data.train.len()),
        ));
    }
    let mut opt: Box<dyn Optimizer> = match t.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(t.lr, t.momentum).map_err(fail)?),
        OptimizerName::Adam => Box::new(Adam::new(t.lr).map_err(fail)?),
    };
    let reduction = match t.loss {
        LossReduction::Sum => Reduction::Sum,
        LossReduction::Mean => Reduction::Mean,
    };
    // Data-parallel over the ranks of an MPI job (in one process, the plain loop).
    let data_parallel = t.parallel == Parallel::Data && crate::distributed::size() > 1;
    // The faces schedule: epochs of `batches_per_epoch` shuffled mini-batches,
    // `steps_per_batch` steps on each, accuracies after each mini-batch.
    // With a batch size instead, epochs of shuffled mini-batches of that
    // size (the last one smaller), accuracies after each epoch.
    let by_size = t.epochs > 0 && t.batch_size > 0;
    let epochs = t.epochs > 0 && !by_size;
    let n_train = data.train.len();
    let total =
        t.total_steps(n_train).ok_or_else(|| ctx.err("train", "train.epochs: the number of steps overflows"))?;
    let per_epoch = if by_size { n_train.div_ceil(t.batch_size) } else { 0 };
    if epochs && t.batches_per_epoch > data.train.len() {
        return Err(ctx.err(
            "train",
            format!(
                "train.batches_per_epoch: {} mini-batches of {} training examples would leave some empty",
                t.batches_per_epoch,
                data.train.len()
            ),
        ));
    }
    let eval_every = if epochs {
        t.steps_per_batch
    } else if by_size {
        per_epoch
    } else {
        t.eval_every
    };
    let mut epoch_batches: Vec<(Var, Targets)> = Vec::new();
    let bar = if ctx.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(total as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix(label.to_string());
        b
    } else {
        indicatif::ProgressBar::hidden()
    };
    let full = !by_size && (t.batch_size == 0 || t.batch_size >= data.train.len());
    let (x_full, y_full) = (Var::constant(data.train.images.clone()), Targets::Classes(data.train.labels.clone()));
    let mut rng = Rng::new(seed ^ 0x6261_7463);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut cursor = order.len();
    let mut dropout = Rng::new(seed ^ 0x6472_6f70);
    let evaluate = |params: &Params, iteration: usize, loss: f64| -> Result<EvalPoint, RunError> {
        Ok(EvalPoint {
            iteration,
            loss,
            train: accuracy(net, params, &data.train, data_parallel).map_err(fail)?,
            validation: accuracy(net, params, &data.validation, data_parallel).map_err(fail)?,
            test: accuracy(net, params, &data.test, data_parallel).map_err(fail)?,
        })
    };
    // An epoch's mini-batches: `order` cut into `batches_per_epoch` parts.
    let batches_of = |order: &[usize]| -> Vec<(Var, Targets)> {
        let (n, k) = (order.len(), t.batches_per_epoch);
        (0..k)
            .map(|b| {
                let part = data.train.select(&order[b * n / k..(b + 1) * n / k]);
                (Var::constant(part.images), Targets::Classes(part.labels))
            })
            .collect()
    };
    let ck = &ctx.checkpoints;
    let saved = ck
        .load_checked(label, run.settings, Some(params), |l: &LoopState| l.fits(total, data.train.len(), eval_every))
        .map_err(|e| ctx.err("train", e))?;
    let (mut curve, first) = match saved {
        Some(s) => {
            *params = s.params;
            opt.restore(s.optim).map_err(fail)?;
            let l = s.looped;
            (rng, order, cursor) = (l.rng, l.order, l.cursor);
            dropout = l.dropout.unwrap_or(dropout);
            if epochs {
                // The current epoch's mini-batches, as its shuffle made them.
                epoch_batches = batches_of(&order);
            }
            if crate::distributed::is_root() {
                crate::say!("{label}: resuming from the checkpoint at step {} of {total}", l.iteration);
            }
            bar.set_position(l.iteration as u64);
            (l.curve, l.iteration + 1)
        }
        None => (vec![evaluate(params, 0, f64::NAN)?], 1),
    };
    let tape = Tape::new();
    for it in first..=total {
        let batch;
        let (x, y) = if epochs {
            let block = (it - 1) / t.steps_per_batch;
            if block.is_multiple_of(t.batches_per_epoch) && (it - 1).is_multiple_of(t.steps_per_batch) {
                rng.shuffle(&mut order);
                epoch_batches = batches_of(&order);
            }
            let (x, y) = &epoch_batches[block % t.batches_per_epoch];
            (x, y)
        } else if by_size {
            let b = (it - 1) % per_epoch;
            if b == 0 {
                rng.shuffle(&mut order);
            }
            let part = data.train.select(&order[b * t.batch_size..((b + 1) * t.batch_size).min(n_train)]);
            batch = (Var::constant(part.images), Targets::Classes(part.labels));
            (&batch.0, &batch.1)
        } else if full {
            (&x_full, &y_full)
        } else {
            // Epochs of shuffled, disjoint mini-batches.
            if cursor + t.batch_size > order.len() {
                rng.shuffle(&mut order);
                cursor = 0;
            }
            let b = data.train.select(&order[cursor..cursor + t.batch_size]);
            cursor += t.batch_size;
            batch = (Var::constant(b.images), Targets::Classes(b.labels));
            (&batch.0, &batch.1)
        };
        let (loss, grads) = if data_parallel {
            // This rank's slice forward and backward, the gradients summed over the ranks.
            let step = crate::distributed::grads::step(&tape, net, params, x, y, reduction, Some(&mut dropout));
            let (value, grads) = step.map_err(fail)?;
            if !value.is_finite() {
                return Err(ctx.err("train", not_finite(it, first, value, t, label, x, params)));
            }
            (value, grads)
        } else {
            let loss = net.loss(&tape, params, x, y, reduction, Some(&mut dropout)).map_err(fail)?;
            let value = loss.value().item().map_err(fail)? as f64;
            if !value.is_finite() {
                return Err(ctx.err("train", not_finite(it, first, value, t, label, x, params)));
            }
            (value, tape.backward(&loss).map_err(fail)?)
        };
        // Clear the tape first so the update writes the parameters in place.
        tape.clear();
        opt.step(params, &grads).map_err(fail)?;
        if it % eval_every == 0 || it == total {
            let p = evaluate(params, it, loss)?;
            bar.set_message(format!("loss {loss:.4e} train {:.3} val {:.3}", p.train, p.validation));
            curve.push(p);
        }
        bar.inc(1);
        // The ranks of a data-parallel run hold the same state: rank 0 saves it.
        let saves = !data_parallel || crate::distributed::is_root();
        if saves && t.checkpoint_every > 0 && (it.is_multiple_of(t.checkpoint_every) || it == total) {
            let looped = LoopState {
                iteration: it,
                rng: rng.clone(),
                order: order.clone(),
                cursor,
                curve: curve.clone(),
                dropout: Some(dropout.clone()),
            };
            let state = Saved { params: params.clone(), optim: opt.state(), looped };
            ck.save(label, run.settings, &state).map_err(|e| ctx.err("train", e))?;
        }
    }
    bar.finish_and_clear();
    Ok(curve)
}

/// Why the loss is not finite: before any update it is the inputs or the
/// starting weights, not the learning rate.
fn not_finite(it: usize, first: usize, value: f64, t: &Train, label: &str, x: &Var, params: &Params) -> String {
    if it > 1 || first > 1 {
        return format!(
            "training diverged at iteration {it} with learning rate {:?} ({label}): the loss is {value}; lower train.lr",
            t.lr
        );
    }
    let largest = |d: &[f32]| d.iter().fold(0.0f32, |m, v| if v.is_nan() { f32::NAN } else { m.max(v.abs()) });
    let input = largest(x.value().data());
    let weight =
        params.iter().map(|(_, w)| largest(w.data())).fold(0.0f32, |m, v| if v.is_nan() { v } else { m.max(v) });
    format!(
        "the loss is {value} at the starting weights, before any update ({label}): the largest input is {input:e} and \
         the largest starting weight {weight:e}; scale the inputs down (data.scale) or start from smaller weights \
         (model.weight_init, model.load), the learning rate is not the cause"
    )
}

fn curve_chart(title: &str, curve: &[EvalPoint]) -> LineChart {
    let series = |name: &str, f: fn(&EvalPoint) -> f64| Series {
        name: name.into(),
        points: curve.iter().map(|p| (p.iteration as f64, f(p))).collect(),
        style: SeriesStyle::LineAndPoints,
    };
    LineChart {
        title: title.into(),
        x_label: "iteration".into(),
        y_label: "accuracy".into(),
        series: vec![
            series("training", |p| p.train),
            series("validation", |p| p.validation),
            series("test", |p| p.test),
        ],
        ..Default::default()
    }
}

/// The last point and the point of best validation accuracy (early stopping).
fn summary(curve: &[EvalPoint]) -> (EvalPoint, EvalPoint) {
    let last = *curve.last().expect("at least the initial point");
    let best = curve.iter().skip(1).copied().fold(last, |b, p| if p.validation > b.validation { p } else { b });
    (last, best)
}

/// One training run of `p`: its data (with its data seed), its network,
/// parameters from `start` or fresh from `p.seed`.
pub(crate) struct Run {
    pub net: Sequential,
    pub data: std::sync::Arc<Dataset>,
    pub initial: Params,
    pub params: Params,
    pub curve: Vec<EvalPoint>,
    pub seconds: f64,
}

pub(crate) fn train_once(ctx: &Ctx, p: &Pipeline, label: &str, start: Option<Params>) -> Result<Run, RunError> {
    let (model, t) = (p.model.clone().expect("validated"), p.train.clone().expect("validated"));
    let data = ctx.data_for(&p.data)?;
    non_empty(ctx, &data)?;
    let net = network(ctx, &model, &data)?;
    let mut params = match start {
        Some(s) => s,
        None => fresh_params(ctx, &model, &data, p.seed)?,
    };
    let initial = params.clone();
    let started = std::time::Instant::now();
    // The settings that define this run; how often it checkpoints does not.
    let mut settings = p.clone();
    if let Some(t) = settings.train.as_mut() {
        t.checkpoint_every = 0;
    }
    let run = RunId { label, seed: p.seed, settings: &settings };
    let curve = train_loop(ctx, &data, &net, &mut params, &t, &run)?;
    Ok(Run { net, data, initial, params, curve, seconds: started.elapsed().as_secs_f64() })
}

/// Training reports every split's accuracy: an empty one would read as 0.
pub(crate) fn non_empty(ctx: &Ctx, data: &Dataset) -> Result<(), RunError> {
    for (name, split) in [("training", &data.train), ("validation", &data.validation), ("test", &data.test)] {
        if split.is_empty() {
            let hint = match ctx.pipeline().data.dataset {
                crate::pipeline::schema::Dataset::Mnist => {
                    "MNIST's test file is split into validation (odd indices) and test (even): it needs at least 2 images"
                }
                crate::pipeline::schema::Dataset::Faces => "see data.split",
            };
            return Err(ctx.err("data", format!("the {name} split holds no examples ({hint})")));
        }
    }
    Ok(())
}

/// The data seeds a pipeline trains on: `[crossval]`'s, or its own.
pub(crate) fn seeds(p: &Pipeline) -> Vec<u64> {
    p.crossval.as_ref().map_or_else(|| vec![p.data.seed], |c| c.seeds.clone())
}

pub(crate) fn with_seed(p: &Pipeline, seed: u64) -> Pipeline {
    let mut q = p.clone();
    q.data.seed = seed;
    q
}

fn mean(xs: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = xs.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

/// What a training returns to the rank that reports it: its curve and time.
#[derive(Clone, serde::Serialize, serde::Deserialize)]
struct Summary {
    curve: Vec<EvalPoint>,
    seconds: f64,
}

/// Train each of `jobs` (settings, label), the first from `start` if given.
/// Under `mpirun` the trainings are shared out over the ranks and every rank
/// receives every summary, unless one is data-parallel: then the ranks run
/// each together. The summaries in job order, and the first job's run when
/// this rank ran it (always on rank 0).
fn train_all(
    ctx: &Ctx,
    jobs: &[(Pipeline, String)],
    mut start: Option<Params>,
) -> Result<(Vec<Summary>, Option<Run>), RunError> {
    let together = jobs.iter().any(|(p, _)| p.train.as_ref().is_some_and(|t| t.parallel == Parallel::Data));
    let job = |i: usize| -> Result<(Summary, Option<Run>), RunError> {
        let run = train_once(ctx, &jobs[i].0, &jobs[i].1, if i == 0 { start.take() } else { None })?;
        Ok((Summary { curve: run.curve.clone(), seconds: run.seconds }, (i == 0).then_some(run)))
    };
    let shared = crate::distributed::share::share(jobs.len(), together, job, |l| l.0.clone(), |m| ctx.err("train", m))?;
    let first = shared.local.into_iter().next().flatten().and_then(|l| l.1);
    Ok((shared.summaries, first))
}

/// The training stage: train (once per cross-validation seed), report the
/// mean, save the first run's weights and draw its curve and weights.
pub(crate) fn run(ctx: &mut Ctx, p: &Pipeline, t: &Train) -> Result<(), RunError> {
    let seeds = seeds(p);
    let jobs: Vec<(Pipeline, String)> = seeds
        .iter()
        .map(|&seed| {
            let label = if seeds.len() > 1 { format!("train, data seed {seed}") } else { "train".into() };
            (with_seed(p, seed), label)
        })
        .collect();
    // A stage before (a loaded model) may have left parameters to start from.
    let start = ctx.params.take();
    let (runs, first) = train_all(ctx, &jobs, start)?;
    let first = match first {
        Some(f) if crate::distributed::is_root() => f,
        // Rank 0 reports, draws and saves.
        _ => return Ok(()),
    };
    let lasts: Vec<(EvalPoint, EvalPoint)> = runs.iter().map(|r| summary(&r.curve)).collect();
    let best = lasts[0].1;
    let r = &mut ctx.report;
    r.set("train_accuracy", mean(lasts.iter().map(|l| l.0.train)));
    r.set("validation_accuracy", mean(lasts.iter().map(|l| l.0.validation)));
    r.set("test_accuracy", mean(lasts.iter().map(|l| l.0.test)));
    r.set("final_loss", mean(lasts.iter().map(|l| l.0.loss)));
    r.set("train_seconds", mean(runs.iter().map(|x| x.seconds)));
    r.set("data_skipped_files", first.data.skipped);
    r.set("steps", t.total_steps(first.data.train.len()).unwrap_or(usize::MAX));
    r.set("best_validation", json!({ "iteration": best.iteration, "train_accuracy": best.train, "validation_accuracy": best.validation, "test_accuracy": best.test }));
    r.set("learning_curve", serde_json::to_value(&first.curve).expect("points serialise"));
    let schedule = if t.epochs > 0 && t.batch_size > 0 {
        format!("{} epochs of shuffled mini-batches of {}", t.epochs, t.batch_size)
    } else if t.epochs > 0 {
        format!("{} epochs of {} mini-batches x {} steps", t.epochs, t.batches_per_epoch, t.steps_per_batch)
    } else if t.batch_size == 0 {
        format!("{} iterations, full batch", t.iterations)
    } else {
        format!("{} iterations, batches of {}", t.iterations, t.batch_size)
    };
    let mut table = String::from("| data seed | train | validation | test | best validation (step) | seconds |\n| --- | --- | --- | --- | --- | --- |\n");
    for ((seed, (l, b)), run) in seeds.iter().zip(&lasts).zip(&runs) {
        table += &format!(
            "| {seed} | {} | {} | {} | {} ({}) | {:.1} |\n",
            fmt_metric(l.train),
            fmt_metric(l.validation),
            fmt_metric(l.test),
            fmt_metric(b.validation),
            b.iteration,
            run.seconds
        );
    }
    if seeds.len() > 1 {
        table += &format!(
            "| **mean** | {} | {} | {} | | |\n",
            fmt_metric(mean(lasts.iter().map(|l| l.0.train))),
            fmt_metric(mean(lasts.iter().map(|l| l.0.validation))),
            fmt_metric(mean(lasts.iter().map(|l| l.0.test)))
        );
        r.set("per_seed", json!(seeds.iter().zip(&lasts).map(|(s, (l, _))| json!({ "seed": s, "train_accuracy": l.train, "validation_accuracy": l.validation, "test_accuracy": l.test })).collect::<Vec<_>>()));
    }
    r.section(
        "Training",
        format!(
            "{} (lr {}, momentum {}, {} loss), {schedule}. Final numbers per data seed{}; the figures and saved weights are \
             from data seed {}.\n\n{table}",
            match t.optimizer { OptimizerName::Sgd => "Gradient descent", OptimizerName::Adam => "Adam" },
            t.lr, t.momentum,
            match t.loss { LossReduction::Sum => "summed", LossReduction::Mean => "mean" },
            if seeds.len() > 1 { " and their mean" } else { "" },
            seeds[0],
        ),
    );
    let title = format!("Learning curve: lr {}, momentum {}", t.lr, t.momentum);
    let png = curve_chart(&title, &first.curve).png(800, 500).map_err(|e| ctx.err("train", e))?;
    ctx.write(&t.curve_figure, &png)?;
    ctx.report.figure(&t.curve_figure, "Learning curve: training, validation and test accuracy");
    // Weight images where the first layer's weights are images.
    if let Some(grid) = weight_grid(&first.net, &first.data, &first.params, None) {
        let png = grid.png().map_err(|e| ctx.err("train", e))?;
        ctx.write(&t.weights_figure, &png)?;
        ctx.report.figure(
            &t.weights_figure,
            "Weights of the first layer (into each output for a linear model): red above, blue below each image's mean weight",
        );
        // What training changed: random starts (the report's U[0, 1)) can hide it.
        let learned = crate::pipeline::names::learned_figure(&t.weights_figure);
        let grid = weight_grid(&first.net, &first.data, &first.params, Some(&first.initial)).expect("as above");
        let png = grid.png().map_err(|e| ctx.err("train", e))?;
        ctx.write(&learned, &png)?;
        ctx.report.figure(&learned, "What training changed: final minus initial weights (blue negative, red positive)");
    }
    if !t.save.is_empty() {
        ctx.write(&t.save, &first.params.to_safetensors())?;
    }
    ctx.params = Some(first.params);
    Ok(())
}

/// The first layer's weights as images: a linear layer's weights on the
/// first channel's pixels (one image per output), a convolution's filters on
/// their first input channel. None when the first layer has neither shape.
/// With `since`, the change from those parameters.
pub(crate) fn weight_grid(
    net: &Sequential,
    data: &Dataset,
    params: &Params,
    since: Option<&Params>,
) -> Option<ImageGrid> {
    let first = *net.weighted().first()?;
    let name = first.param_name("weight");
    let w = params.get(&name).ok()?;
    let w = match since {
        Some(p0) => w.sub(p0.get(&name).ok()?).ok()?,
        None => w.clone(),
    };
    let units = w.shape()[0];
    let (side, images): (usize, Vec<Vec<f32>>) = match first.layer {
        Layer::Linear { .. } if first.input == [data.inputs()] && data.side >= 16 => {
            let plane = data.side * data.side;
            (data.side, w.data().chunks(data.inputs()).map(|u| u[..plane].to_vec()).collect())
        }
        Layer::Conv2d { win, .. } => {
            let per_filter = w.numel() / units.max(1);
            let plane = win.kernel * win.kernel;
            (win.kernel, w.data().chunks(per_filter).map(|f| f[..plane].to_vec()).collect())
        }
        _ => return None,
    };
    let linear = net.weighted().len() == 1;
    let change = since.is_some();
    // Filter grids are narrow: a short title.
    let title = match first.layer {
        Layer::Conv2d { .. } => format!("{} {}", if change { "Change of" } else { "Filters of" }, first.prefix),
        _ if linear => format!("{}eights into each output", if change { "Change of the w" } else { "W" }),
        _ => format!("{}eights into the {units} hidden units", if change { "Change of the w" } else { "W" }),
    };
    Some(ImageGrid {
        title,
        images,
        width: side,
        height: side,
        cols: if linear { units } else { (units as f64).sqrt().ceil() as usize },
        colormap: ColorMap::Diverging,
        per_image: true,
        centre_on_mean: since.is_none(),
        row_labels: vec![],
        captions: (0..units)
            .map(|u| if linear { data.class_names[u].clone() } else { format!("unit {}", u + 1) })
            .collect(),
        // Small filters drawn large enough to see.
        zoom: (96 / side).clamp(3, 16),
    })
}

/// The sweep stage: train once per value from the same start, pick the best
/// value by the selecting metric, and return the pipeline with that value.
pub(crate) fn sweep(ctx: &mut Ctx, s: &Sweep) -> Result<Pipeline, RunError> {
    let base = Pipeline { trials: vec![], sweep: None, ..ctx.pipeline().clone() };
    // From the resolved pipeline, so `--set` overrides carry into the sweep.
    let mut table = to_table(&base).map_err(|e| ctx.err("sweep", e))?;
    let mut results = Vec::new();
    let mut rows = format!(
        "| {} | final loss | train | validation | test | best validation (iteration) |\n| --- | --- | --- | --- | --- | --- |\n",
        s.key
    );
    let mut jobs = Vec::new();
    for v in &s.values {
        set_path(&mut table, &s.key, v.clone()).map_err(|m| ctx.err("sweep", m))?;
        let p = from_table(&table).map_err(|m| ctx.err("sweep", m))?;
        jobs.push((p, format!("{} = {v}", s.key)));
    }
    let (runs, _) = train_all(ctx, &jobs, None)?;
    for ((v, (p, _)), run) in s.values.iter().zip(jobs).zip(runs) {
        let curve = run.curve;
        let (last, best) = summary(&curve);
        let file = crate::pipeline::names::sweep_figure(&s.key, v);
        let png = curve_chart(&format!("{} = {v}", s.key), &curve).png(640, 400).map_err(|e| ctx.err("sweep", e))?;
        ctx.write(&file, &png)?;
        ctx.report.figure(&file, &format!("Sweep: learning curve at {} = {v}", s.key));
        rows += &format!(
            "| {v} | {:.4e} | {} | {} | {} | {} ({}) |\n",
            last.loss,
            fmt_metric(last.train),
            fmt_metric(last.validation),
            fmt_metric(last.test),
            fmt_metric(best.validation),
            best.iteration
        );
        results.push((v.clone(), p, last, best));
    }
    let score = |(_, _, last, best): &(toml::Value, Pipeline, EvalPoint, EvalPoint)| match s.select {
        SelectMetric::ValidationAccuracy => last.validation,
        SelectMetric::BestValidationAccuracy => best.validation,
        SelectMetric::FinalLoss => -last.loss,
    };
    let pick = (0..results.len()).fold(0, |b, i| if score(&results[i]) > score(&results[b]) { i } else { b });
    let (value, chosen, _, _) = results[pick].clone();
    ctx.report.set("sweep", json!({
        "key": s.key,
        "chosen": value.to_string(),
        "results": results.iter().map(|(v, _, e, b)| json!({
            "value": v.to_string(), "final_loss": e.loss, "train_accuracy": e.train, "validation_accuracy": e.validation,
            "test_accuracy": e.test, "best_validation_accuracy": b.validation, "best_validation_iteration": b.iteration,
        })).collect::<Vec<_>>(),
    }));
    ctx.report.section(
        "Sweep",
        format!("Each value trained from the same start; chosen by {:?}: **{} = {value}**.\n\n{rows}", s.select, s.key),
    );
    Ok(Pipeline { sweep: None, ..chosen })
}

/// The trials stage (the report's `optimize_params`): each trial's settings,
/// trained on every cross-validation seed; the best mean validation accuracy
/// wins and is returned for the training stage.
pub(crate) fn trials(ctx: &mut Ctx, base: &Pipeline, trials: &[Trial]) -> Result<Pipeline, RunError> {
    // Without the trials themselves: each variant would otherwise copy them all.
    let base = Pipeline { trials: vec![], sweep: None, ..base.clone() };
    let base_table = to_table(&base).map_err(|e| ctx.err("trials", e))?;
    let mut rows = String::from(
        "| trial | settings | mean train | mean validation | mean test |\n| --- | --- | --- | --- | --- |\n",
    );
    // Every trial's settings, then all their trainings (trial x data seed) at once.
    let mut chosen = Vec::new();
    let mut jobs = Vec::new();
    for trial in trials {
        let mut table = base_table.clone();
        for (key, v) in &trial.set {
            set_path(&mut table, key, v.clone()).map_err(|m| ctx.err("trials", m))?;
        }
        let p = Pipeline { trials: vec![], ..from_table(&table).map_err(|m| ctx.err("trials", m))? };
        for seed in seeds(&p) {
            jobs.push((with_seed(&p, seed), format!("{}, data seed {seed}", trial.name)));
        }
        chosen.push(p);
    }
    let (runs, _) = train_all(ctx, &jobs, None)?;
    let mut runs = runs.into_iter();
    let mut scored = Vec::new();
    for (trial, p) in trials.iter().zip(chosen) {
        let lasts: Vec<EvalPoint> = runs.by_ref().take(seeds(&p).len()).map(|r| summary(&r.curve).0).collect();
        let m = |f: fn(&EvalPoint) -> f64| mean(lasts.iter().map(f));
        let settings = trial.set.iter().map(|(k, v)| format!("{k} = {v}")).collect::<Vec<_>>().join(", ");
        rows += &format!(
            "| {} | {settings} | {} | {} | {} |\n",
            trial.name,
            fmt_metric(m(|e| e.train)),
            fmt_metric(m(|e| e.validation)),
            fmt_metric(m(|e| e.test))
        );
        scored.push((trial.name.clone(), m(|e| e.validation), m(|e| e.test), p));
    }
    let best = (0..scored.len()).fold(0, |b, i| if scored[i].1 > scored[b].1 { i } else { b });
    ctx.report.set(
        "trials",
        json!(scored
            .iter()
            .map(|(n, v, t, _)| json!({ "name": n, "mean_validation_accuracy": v, "mean_test_accuracy": t }))
            .collect::<Vec<_>>()),
    );
    ctx.report.set("chosen_trial", scored[best].0.clone());
    ctx.report.section(
        "Trials",
        format!(
            "Each trial trained on every data seed; chosen on mean validation accuracy: **{}**.\n\n{rows}",
            scored[best].0
        ),
    );
    Ok(scored.swap_remove(best).3)
}
