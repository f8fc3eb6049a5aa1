//! Report part 3: the engine's gradient of the summed cost against central
//! differences of the same cost in f64, along the report's directions and on
//! random weights and every bias.

use super::softmax64::{Cost64, Delta};
use super::{network, params, Ctx};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Gradcheck;
use crate::tensor::Rng;
use serde_json::json;

pub(crate) fn run(ctx: &mut Ctx, g: &Gradcheck) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let (inputs, classes) = (data.inputs(), data.classes());
    let first = net.weighted()[0];
    let (wname, bname) = (first.param_name("weight"), first.param_name("bias"));
    let seed = ctx.pipeline().seed;
    let params = params(ctx)?.clone();

    // Analytic: the tape, in f32, as training computes it.
    let tape = Tape::new();
    let x = Var::constant(data.train.images.clone());
    let grads = (|| {
        let logits = net.forward(&tape, &params, &x, None)?;
        let loss = tape.softmax_cross_entropy(&logits, &Targets::Classes(data.train.labels.clone()), Reduction::Sum)?;
        tape.backward(&loss)
    })()
    .map_err(|e| ctx.err("gradcheck", e))?;
    let gw = grads.by_name(&wname).expect("weight on the tape").data().to_vec();
    let gb = grads.by_name(&bname).expect("bias on the tape").data().to_vec();

    // Which entries: the report's (i, j) = W[i, j], random weights, all biases.
    let mut entries: Vec<(String, Delta)> = g
        .directions
        .iter()
        .map(|&[i, j]| (format!("W[{i}, {j}]"), Delta { class: j, input: Some(i), by: 0.0 }))
        .collect();
    let mut rng = Rng::new(seed ^ 0x6772_6164);
    for _ in 0..g.random {
        let (i, j) = (rng.below(inputs), rng.below(classes));
        entries.push((format!("W[{i}, {j}] (random)"), Delta { class: j, input: Some(i), by: 0.0 }));
    }
    if g.random > 0 {
        entries.extend((0..classes).map(|j| (format!("b[{j}]"), Delta { class: j, input: None, by: 0.0 })));
    }

    // Numeric: central differences in f64.
    let cost = Cost64::new(&data.train, &params, &wname, &bname).map_err(|e| ctx.err("gradcheck", e))?;
    let mut rows = String::from(
        "| entry | engine (f32) | finite difference (f64) | abs diff | rel diff |\n| --- | --- | --- | --- | --- |\n",
    );
    let (mut max_abs, mut max_scaled, mut worst) = (0.0f64, 0.0f64, None);
    let mut list = Vec::new();
    for (label, d) in &entries {
        let plus = cost.cost(&[Delta { by: g.eps, ..*d }]);
        let minus = cost.cost(&[Delta { by: -g.eps, ..*d }]);
        let numeric = (plus - minus) / (2.0 * g.eps);
        let analytic = match d.input {
            Some(i) => gw[d.class * inputs + i],
            None => gb[d.class],
        } as f64;
        let abs = (analytic - numeric).abs();
        let rel = abs / numeric.abs().max(1e-12);
        let scaled = abs / numeric.abs().max(1.0);
        max_abs = max_abs.max(abs);
        max_scaled = max_scaled.max(scaled);
        // A NaN on either side fails.
        if (scaled.is_nan() || scaled > g.tolerance) && worst.is_none() {
            worst = Some(format!("{label}: engine {analytic:.6e} vs finite difference {numeric:.6e}"));
        }
        rows += &format!("| {label} | {analytic:.6e} | {numeric:.6e} | {abs:.3e} | {rel:.3e} |\n");
        list.push(
            json!({ "entry": label, "analytic": analytic, "numeric": numeric, "abs_diff": abs, "rel_diff": rel }),
        );
    }
    ctx.report.set("gradcheck_entries", list);
    ctx.report.set("gradcheck_max_abs_diff", max_abs);
    ctx.report.set("gradcheck_max_scaled_diff", max_scaled);
    ctx.report.set("gradcheck_passed", worst.is_none());
    ctx.report.section(
        "Gradient check",
        format!(
            "The summed cost over {} training images, at the model's {} weights; eps = {}. An entry passes when \
             |engine - finite difference| <= {} * max(1, |finite difference|). The engine computes in f32 and its \
             gradients here are sums over the whole training set, so compare relative differences.\n\n{rows}",
            data.train.len(),
            if ctx.pipeline().model.as_ref().is_some_and(|m| m.load.is_some()) { "loaded" } else { "initial" },
            g.eps,
            g.tolerance
        ),
    );
    if let Some(w) = worst {
        return Err(ctx.err("gradcheck", format!("gradient check failed (tolerance {}): {w}", g.tolerance)));
    }
    Ok(())
}
