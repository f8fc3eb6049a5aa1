//! Training (report parts 4-5, 8) and sweeps over any field.

use super::{fresh_params, network, Ctx};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::data::mnist::{Split, CLASSES, PIXELS, SIDE};
use crate::nn::{Mlp, Params};
use crate::optim::{Adam, Optimizer, Sgd};
use crate::pipeline::load::{from_table, set_path};
use crate::pipeline::report::fmt_metric;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{LossReduction, OptimizerName, Pipeline, SelectMetric, Sweep, Train};
use crate::plot::{ColorMap, ImageGrid, LineChart, Series, SeriesStyle};
use crate::tensor::Rng;
use serde_json::json;
use std::io::IsTerminal;

/// Accuracies and loss at one point of training.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub(crate) struct EvalPoint {
    pub iteration: usize,
    pub loss: f64,
    pub train: f64,
    pub validation: f64,
    pub test: f64,
}

pub(crate) fn accuracy(net: &Mlp, params: &Params, split: &Split) -> crate::Result<f64> {
    let logits = net.forward(&Tape::inference(), params, &Var::constant(split.images.clone()))?;
    let pred = logits.value().argmax_axis(1)?;
    Ok(pred.iter().zip(&split.labels).filter(|(p, y)| p == y).count() as f64 / split.len().max(1) as f64)
}

/// Train `params` in place as `t` says; returns the learning curve.
fn train_loop(
    ctx: &Ctx,
    net: &Mlp,
    params: &mut Params,
    t: &Train,
    seed: u64,
    label: &str,
) -> Result<Vec<EvalPoint>, RunError> {
    let data = ctx.mnist()?;
    let fail = |e: crate::Error| ctx.err("train", e);
    let mut opt: Box<dyn Optimizer> = match t.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(t.lr, t.momentum).map_err(fail)?),
        OptimizerName::Adam => Box::new(Adam::new(t.lr).map_err(fail)?),
    };
    let reduction = match t.loss {
        LossReduction::Sum => Reduction::Sum,
        LossReduction::Mean => Reduction::Mean,
    };
    let bar = if ctx.progress && std::io::stderr().is_terminal() {
        let b = indicatif::ProgressBar::new(t.iterations as u64);
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
    let full = t.batch_size == 0 || t.batch_size >= data.train.len();
    let (x_full, y_full) = (Var::constant(data.train.images.clone()), Targets::Classes(data.train.labels.clone()));
    let mut rng = Rng::new(seed ^ 0x6261_7463);
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut cursor = order.len();
    let evaluate = |params: &Params, iteration: usize, loss: f64| -> Result<EvalPoint, RunError> {
        Ok(EvalPoint {
            iteration,
            loss,
            train: accuracy(net, params, &data.train).map_err(fail)?,
            validation: accuracy(net, params, &data.validation).map_err(fail)?,
            test: accuracy(net, params, &data.test).map_err(fail)?,
        })
    };
    let mut curve = vec![evaluate(params, 0, f64::NAN)?];
    let tape = Tape::new();
    for it in 1..=t.iterations {
        let batch;
        let (x, y) = if full {
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
        let (loss, grads) = {
            let loss = net.loss(&tape, params, x, y, reduction).map_err(fail)?;
            let value = loss.value().item().map_err(fail)? as f64;
            if !value.is_finite() {
                return Err(ctx.err(
                    "train",
                    format!("training diverged at iteration {it} with learning rate {:?} ({label}): the loss is {value}; lower train.lr", t.lr),
                ));
            }
            (value, tape.backward(&loss).map_err(fail)?)
        };
        // Clear the tape first so the update writes the parameters in place.
        tape.clear();
        opt.step(params, &grads).map_err(fail)?;
        if it % t.eval_every == 0 || it == t.iterations {
            let p = evaluate(params, it, loss)?;
            bar.set_message(format!("loss {loss:.4e} train {:.3} val {:.3}", p.train, p.validation));
            curve.push(p);
        }
        bar.inc(1);
    }
    bar.finish_and_clear();
    Ok(curve)
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
        series: vec![series("training", |p| p.train), series("validation", |p| p.validation)],
        ..Default::default()
    }
}

/// The last point and the point of best validation accuracy (early stopping).
fn summary(curve: &[EvalPoint]) -> (EvalPoint, EvalPoint) {
    let last = *curve.last().expect("at least the initial point");
    let best = curve.iter().skip(1).copied().fold(last, |b, p| if p.validation > b.validation { p } else { b });
    (last, best)
}

/// The training stage: train, save weights, draw the curve and the weights.
pub(crate) fn run(ctx: &mut Ctx, p: &Pipeline, t: &Train) -> Result<(), RunError> {
    let model = p.model.clone().expect("validated");
    let net = network(&model);
    let mut params = match ctx.params.take() {
        Some(existing) => existing,
        None => fresh_params(ctx, &model, p.seed)?,
    };
    let initial = params.clone();
    let started = std::time::Instant::now();
    let curve = train_loop(ctx, &net, &mut params, t, p.seed, "train")?;
    let seconds = started.elapsed().as_secs_f64();
    let (last, best) = summary(&curve);
    let r = &mut ctx.report;
    r.set("train_accuracy", last.train);
    r.set("validation_accuracy", last.validation);
    r.set("test_accuracy", last.test);
    r.set("final_loss", last.loss);
    r.set("train_seconds", seconds);
    r.set("iterations", t.iterations);
    r.set("best_validation", json!({ "iteration": best.iteration, "train_accuracy": best.train, "validation_accuracy": best.validation, "test_accuracy": best.test }));
    r.set("learning_curve", serde_json::to_value(&curve).expect("points serialise"));
    r.section(
        "Training",
        format!(
            "{} for {} iterations (lr {}, momentum {}, {} loss, {}), {:.1} s.\n\n| | train | validation | test |\n| --- | --- | --- | --- |\n\
             | final (iteration {}) | {} | {} | {} |\n| best validation (iteration {}) | {} | {} | {} |",
            match t.optimizer { OptimizerName::Sgd => "Gradient descent", OptimizerName::Adam => "Adam" },
            t.iterations, t.lr, t.momentum,
            match t.loss { LossReduction::Sum => "summed", LossReduction::Mean => "mean" },
            if t.batch_size == 0 { "full batch".to_string() } else { format!("batches of {}", t.batch_size) },
            seconds,
            last.iteration, fmt_metric(last.train), fmt_metric(last.validation), fmt_metric(last.test),
            best.iteration, fmt_metric(best.train), fmt_metric(best.validation), fmt_metric(best.test),
        ),
    );
    let title = format!("Learning curve: lr {}, momentum {}", t.lr, t.momentum);
    let png = curve_chart(&title, &curve).png(800, 500).map_err(|e| ctx.err("train", e))?;
    ctx.write(&t.curve_figure, &png)?;
    ctx.report.figure(&t.curve_figure, "Learning curve: training and validation accuracy");
    let png = weight_grid(&net, &params, None).png().map_err(|e| ctx.err("train", e))?;
    ctx.write(&t.weights_figure, &png)?;
    ctx.report.figure(
        &t.weights_figure,
        "Weights into each output (first layer for an MLP): red above, blue below each image's mean weight",
    );
    // What training changed: random starts (the report's U[0, 1)) can hide it.
    let learned = format!("{}_learned.png", t.weights_figure.trim_end_matches(".png"));
    let png = weight_grid(&net, &params, Some(&initial)).png().map_err(|e| ctx.err("train", e))?;
    ctx.write(&learned, &png)?;
    ctx.report.figure(&learned, "What training changed: final minus initial weights (blue negative, red positive)");
    ctx.write(&t.save, &params.to_safetensors())?;
    ctx.params = Some(params);
    Ok(())
}

/// First-layer weights as images (one per output unit).
/// With `since`, the change from those parameters.
fn weight_grid(net: &Mlp, params: &Params, since: Option<&Params>) -> ImageGrid {
    let name = net.layers[0].weight_name();
    let w = params.get(&name).expect("the first layer exists");
    let w = match since {
        Some(p0) => w.sub(p0.get(&name).expect("same model")).expect("same shape"),
        None => w.clone(),
    };
    let units = w.shape()[0];
    let images: Vec<Vec<f32>> = w.data().chunks(PIXELS).map(<[f32]>::to_vec).collect();
    let linear = units == CLASSES && net.layers.len() == 1;
    ImageGrid {
        title: format!(
            "{}eights into {}",
            if since.is_some() { "Change of the w" } else { "W" },
            if linear { "each output".to_string() } else { format!("the {units} hidden units") }
        ),
        images,
        width: SIDE,
        height: SIDE,
        cols: if linear { CLASSES } else { (units as f64).sqrt().ceil() as usize },
        colormap: ColorMap::Diverging,
        per_image: true,
        centre_on_mean: since.is_none(),
        row_labels: vec![],
        captions: (0..units).map(|u| if linear { format!("digit {u}") } else { format!("unit {}", u + 1) }).collect(),
        zoom: 3,
    }
}

/// The sweep stage: train once per value from the same start, pick the best
/// value by the selecting metric, and return the pipeline with that value.
pub(crate) fn sweep(ctx: &mut Ctx, s: &Sweep) -> Result<Pipeline, RunError> {
    let base = ctx.pipeline().clone();
    // From the resolved pipeline, so `--set` overrides carry into the sweep.
    let mut table = match toml::Value::try_from(&base).map_err(|e| ctx.err("sweep", e))? {
        toml::Value::Table(t) => t,
        _ => unreachable!("a pipeline serialises to a table"),
    };
    let mut results = Vec::new();
    let mut rows = format!(
        "| {} | final loss | train | validation | test | best validation (iteration) |\n| --- | --- | --- | --- | --- | --- |\n",
        s.key
    );
    for v in &s.values {
        set_path(&mut table, &s.key, v.clone()).map_err(|m| ctx.err("sweep", m))?;
        let p = from_table(&table).map_err(|m| ctx.err("sweep", m))?;
        let (model, t) = (p.model.clone().expect("validated"), p.train.clone().expect("validated"));
        let net = network(&model);
        let mut params = fresh_params(ctx, &model, p.seed)?;
        let curve = train_loop(ctx, &net, &mut params, &t, p.seed, &format!("{} = {v}", s.key))?;
        let (last, best) = summary(&curve);
        let file = format!("sweep_{}_{}.png", s.key.replace('.', "_"), v.to_string().trim_matches('"'));
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
