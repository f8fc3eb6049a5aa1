//! Report part 10, beyond the report: train a whole AlexNet end to end on the
//! faces (every convolution, pooling and dropout through the tape), from
//! seeded random weights, with SGD and momentum; accuracies after each epoch.

use super::Ctx;
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::data::Split;
use crate::nn::alexnet::AlexNet;
use crate::nn::Params;
use crate::optim::{Adam, Optimizer, Sgd};
use crate::pipeline::checkpoint::Saved;
use crate::pipeline::report::fmt_metric;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Finetune, OptimizerName};
use crate::plot::{LineChart, Series, SeriesStyle};
use crate::tensor::{Rng, Tensor};
use serde_json::json;

const EVAL_BATCH: usize = 32;

/// Where the loop is, besides weights and optimiser, for `--resume`.
#[derive(serde::Serialize, serde::Deserialize)]
struct LoopState {
    epoch: usize,
    /// The first mini-batch of `epoch` not yet taken.
    next_batch: usize,
    rng: Rng,
    /// This epoch's shuffled order.
    order: Vec<usize>,
    loss_sum: f64,
    /// (epoch, mean loss, train, validation, test) of the finished epochs.
    curve: Vec<(usize, f64, f64, f64, f64)>,
}

impl LoopState {
    /// Whether this state, read back from a checkpoint, can be a point of a
    /// run of `epochs` epochs of `batches` mini-batches over `n` examples.
    fn fits(&self, epochs: usize, batches: usize, n: usize) -> Result<(), String> {
        if !(1..=epochs).contains(&self.epoch) || !(1..=batches).contains(&self.next_batch) {
            return Err(format!(
                "epoch {}, batch {} is not within epochs 1..={epochs}, batches 1..={batches}",
                self.epoch, self.next_batch
            ));
        }
        crate::pipeline::checkpoint::check_permutation(&self.order, n)?;
        if !(self.loss_sum.is_finite() && self.loss_sum >= 0.0) {
            return Err(format!("loss_sum {} is not a sum of losses", self.loss_sum));
        }
        let fraction = |v: f64| (0.0..=1.0).contains(&v);
        let done = self.curve.len() + 1 == self.epoch
            && self
                .curve
                .iter()
                .enumerate()
                .all(|(i, p)| p.0 == i + 1 && p.1.is_finite() && fraction(p.2) && fraction(p.3) && fraction(p.4));
        if !done {
            return Err(format!("the curve does not hold the {} epochs before epoch {}", self.epoch - 1, self.epoch));
        }
        Ok(())
    }
}

fn accuracy(net: &AlexNet, params: &Params, split: &Split) -> crate::Result<f64> {
    let width = split.images.shape()[1];
    let mut right = 0;
    for start in (0..split.len()).step_by(EVAL_BATCH) {
        let rows = EVAL_BATCH.min(split.len() - start);
        let x = Tensor::from_vec(
            split.images.data()[start * width..(start + rows) * width].to_vec(),
            &[rows, 3, 227, 227],
        )?;
        let logits = net.forward(&Tape::inference(), params, &Var::constant(x))?;
        let pred = logits.value().argmax_axis(1)?;
        right += pred.iter().zip(&split.labels[start..start + rows]).filter(|(p, y)| p == y).count();
    }
    Ok(right as f64 / split.len().max(1) as f64)
}

pub(crate) fn run(ctx: &mut Ctx, f: &Finetune) -> Result<(), RunError> {
    let data = ctx.data()?;
    super::train::non_empty(ctx, &data)?;
    if data.channels != 3 || data.side != 227 {
        return Err(ctx.err(
            "finetune",
            format!("AlexNet needs 3 x 227 x 227 images; data gives {} x {} x {}", data.channels, data.side, data.side),
        ));
    }
    let fail = |e: crate::Error| ctx.err("finetune", e);
    let net = AlexNet::torchvision(data.classes());
    let mut rng = Rng::new(ctx.pipeline().seed);
    let mut params = net.init(&mut rng);
    let mut opt: Box<dyn Optimizer> = match f.optimizer {
        OptimizerName::Sgd => Box::new(Sgd::new(f.lr, f.momentum).map_err(fail)?),
        OptimizerName::Adam => Box::new(Adam::new(f.lr).map_err(fail)?),
    };
    let mut order: Vec<usize> = (0..data.train.len()).collect();
    let mut curve = Vec::new();
    let started = std::time::Instant::now();
    // Resume: the settings that define the run (not how often it checkpoints).
    let settings = (ctx.pipeline().data.clone(), Finetune { checkpoint_every: 0, save: None, ..f.clone() });
    let settings = (settings, ctx.pipeline().seed);
    let (mut first_epoch, mut first_batch, mut loss_sum) = (1, 0, 0.0);
    let ck = &ctx.checkpoints;
    let (n, batches) = (data.train.len(), data.train.len().div_ceil(f.batch_size));
    let fits = |l: &LoopState| l.fits(f.epochs, batches, n);
    if let Some(s) = ck.load_checked("finetune", &settings, Some(&params), fits).map_err(|e| ctx.err("finetune", e))? {
        params = s.params;
        opt.restore(s.optim).map_err(fail)?;
        let l = s.looped;
        (rng, order, curve) = (l.rng, l.order, l.curve);
        (first_epoch, first_batch, loss_sum) = (l.epoch, l.next_batch, l.loss_sum);
        eprintln!("finetune: resuming from the checkpoint at epoch {first_epoch}, batch {first_batch}");
    }
    for epoch in first_epoch..=f.epochs {
        // A resumed epoch keeps the order its shuffle made.
        let resumed = epoch == first_epoch && first_batch > 0;
        if !resumed {
            rng.shuffle(&mut order);
            loss_sum = 0.0;
        }
        let skip = if resumed { first_batch } else { 0 };
        for b in skip..batches {
            let chunk = &order[b * f.batch_size..((b + 1) * f.batch_size).min(order.len())];
            let batch = data.train.select(chunk);
            let x = Var::constant(batch.images.reshape(&[chunk.len(), 3, 227, 227]).map_err(fail)?);
            let tape = Tape::new();
            let grads = {
                let feats = net.features(&tape, &params, &x).map_err(fail)?;
                let logits = net.classify(&tape, &params, &feats, true, &mut rng).map_err(fail)?;
                let loss = tape
                    .softmax_cross_entropy(&logits, &Targets::Classes(batch.labels.clone()), Reduction::Mean)
                    .map_err(fail)?;
                let v = loss.value().item().map_err(fail)? as f64;
                if !v.is_finite() {
                    return Err(ctx.err(
                        "finetune",
                        format!("training diverged in epoch {epoch} with learning rate {:?}: the loss is {v}", f.lr),
                    ));
                }
                loss_sum += v * chunk.len() as f64;
                tape.backward(&loss).map_err(fail)?
            };
            drop(tape);
            opt.step(&mut params, &grads).map_err(fail)?;
            let step = (epoch - 1) * batches + b + 1;
            if f.checkpoint_every > 0 && step.is_multiple_of(f.checkpoint_every) {
                let looped = LoopState {
                    epoch,
                    next_batch: b + 1,
                    rng: rng.clone(),
                    order: order.clone(),
                    loss_sum,
                    curve: curve.clone(),
                };
                let state = Saved { params: params.clone(), optim: opt.state(), looped };
                ck.save("finetune", &settings, &state).map_err(|e| ctx.err("finetune", e))?;
            }
        }
        let point = (
            epoch,
            loss_sum / data.train.len() as f64,
            accuracy(&net, &params, &data.train).map_err(fail)?,
            accuracy(&net, &params, &data.validation).map_err(fail)?,
            accuracy(&net, &params, &data.test).map_err(fail)?,
        );
        eprintln!(
            "finetune epoch {epoch}: loss {:.4} train {:.3} validation {:.3} test {:.3}",
            point.1, point.2, point.3, point.4
        );
        curve.push(point);
    }
    let seconds = started.elapsed().as_secs_f64();
    let last = *curve.last().expect("at least one epoch");
    let r = &mut ctx.report;
    r.set("train_accuracy", last.2);
    r.set("validation_accuracy", last.3);
    r.set("test_accuracy", last.4);
    r.set("final_loss", last.1);
    r.set("train_seconds", seconds);
    r.set("seconds_per_epoch", seconds / f.epochs as f64);
    r.set(
        "epochs",
        json!(curve
            .iter()
            .map(|c| json!({ "epoch": c.0, "loss": c.1, "train": c.2, "validation": c.3, "test": c.4 }))
            .collect::<Vec<_>>()),
    );
    let mut table =
        String::from("| epoch | mean loss | train | validation | test |\n| --- | --- | --- | --- | --- |\n");
    for c in &curve {
        table +=
            &format!("| {} | {:.4} | {} | {} | {} |\n", c.0, c.1, fmt_metric(c.2), fmt_metric(c.3), fmt_metric(c.4));
    }
    r.section(
        "Training the whole AlexNet",
        format!(
            "torchvision's AlexNet ({} classes), seeded random weights, {:?} lr {} (momentum {} for SGD), batches of {}, \
             dropout 0.5, {} epochs over {} images in {:.0} s ({:.1} s per epoch, with evaluation).\n\n{table}",
            data.classes(), f.optimizer, f.lr, f.momentum, f.batch_size, f.epochs, data.train.len(), seconds, seconds / f.epochs as f64
        ),
    );
    let series = |name: &str, k: fn(&(usize, f64, f64, f64, f64)) -> f64| Series {
        name: name.into(),
        points: curve.iter().map(|c| (c.0 as f64, k(c))).collect(),
        style: SeriesStyle::LineAndPoints,
    };
    let chart = LineChart {
        title: "AlexNet trained end to end".into(),
        x_label: "epoch".into(),
        y_label: "accuracy".into(),
        series: vec![series("training", |c| c.2), series("validation", |c| c.3), series("test", |c| c.4)],
        ..Default::default()
    };
    let png = chart.png(800, 500).map_err(|e| ctx.err("finetune", e))?;
    ctx.write("finetune_curve.png", &png)?;
    ctx.report.figure("finetune_curve.png", "Training, validation and test accuracy after each epoch");
    if let Some(name) = &f.save {
        ctx.write(name, &params.to_safetensors())?;
    }
    Ok(())
}
