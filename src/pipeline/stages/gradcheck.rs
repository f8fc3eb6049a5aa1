//! Report part 3: the engine's gradient of the summed cost against central
//! differences of the same cost. A linear model is checked against its cost
//! in f64 along the report's directions and on random weights and every
//! bias; any other network on random entries of every parameter tensor, the
//! cost summed in f64 from its f32 logits over a few training examples.

use super::softmax64::{cross_entropy64, Cost64, Delta};
use super::{network, params, Ctx};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::data::Split;
use crate::nn::{Layer, Params, Sequential};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Gradcheck, ModelKind};
use crate::tensor::Rng;
use serde_json::json;

/// Training examples a network's check is over, unless `examples` says.
pub(crate) const EXAMPLES: usize = 8;

pub(crate) fn run(ctx: &mut Ctx, g: &Gradcheck) -> Result<(), RunError> {
    let model = ctx.pipeline().model.clone().expect("validated");
    if model.kind == ModelKind::Linear {
        linear(ctx, g)
    } else {
        network_check(ctx, g)
    }
}

/// The linear model against its exact cost in f64 (report part 3).
fn linear(ctx: &mut Ctx, g: &Gradcheck) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let (eps, tolerance) = g.eps_tolerance(true);
    let head;
    let train = match g.examples {
        Some(n) => {
            head = data.train.head(n);
            &head
        }
        None => &data.train,
    };
    let (inputs, classes) = (data.inputs(), data.classes());
    let first = net.weighted()[0];
    let (wname, bname) = (first.param_name("weight"), first.param_name("bias"));
    let seed = ctx.pipeline().seed;
    let params = params(ctx)?.clone();

    // Analytic: the tape, in f32, as training computes it.
    let tape = Tape::new();
    let x = Var::constant(train.images.clone());
    let grads = (|| {
        let logits = net.forward(&tape, &params, &x, None)?;
        let loss = tape.softmax_cross_entropy(&logits, &Targets::Classes(train.labels.clone()), Reduction::Sum)?;
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
    let cost = Cost64::new(train, &params, &wname, &bname).map_err(|e| ctx.err("gradcheck", e))?;
    let mut rows = String::from(
        "| entry | engine (f32) | finite difference (f64) | abs diff | rel diff |\n| --- | --- | --- | --- | --- |\n",
    );
    let (mut max_abs, mut max_scaled, mut worst) = (0.0f64, 0.0f64, None);
    let mut list = Vec::new();
    for (label, d) in &entries {
        let plus = cost.cost(&[Delta { by: eps, ..*d }]);
        let minus = cost.cost(&[Delta { by: -eps, ..*d }]);
        let numeric = (plus - minus) / (2.0 * eps);
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
        if (scaled.is_nan() || scaled > tolerance) && worst.is_none() {
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
            train.len(),
            if ctx.pipeline().model.as_ref().is_some_and(|m| m.load.is_some()) { "loaded" } else { "initial" },
            eps,
            tolerance
        ),
    );
    if let Some(w) = worst {
        return Err(ctx.err("gradcheck", format!("gradient check failed (tolerance {}): {w}", tolerance)));
    }
    Ok(())
}

/// One compared entry of a tensor.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Entry {
    pub index: usize,
    pub analytic: f64,
    pub numeric: f64,
    /// The difference quotients disagree between steps eps and eps / 2: a
    /// kink (ReLU at 0, a max-pool's choice) lies within the step.
    pub kink: bool,
    /// The tensor's largest |analytic| entry (at least 1e-6): differences
    /// of small entries are measured against it.
    pub scale: f64,
}

impl Entry {
    fn abs(&self) -> f64 {
        (self.analytic - self.numeric).abs()
    }

    fn rel(&self) -> f64 {
        self.abs() / self.analytic.abs().max(self.numeric.abs()).max(1e-12)
    }

    /// What the tolerance bounds: |analytic - numeric| / max(|numeric|, scale).
    fn scaled(&self) -> f64 {
        self.abs() / self.numeric.abs().max(self.scale)
    }
}

/// The compared entries of one parameter tensor.
#[derive(Clone, Debug)]
pub(crate) struct TensorCheck {
    pub name: String,
    pub shape: Vec<usize>,
    pub entries: Vec<Entry>,
}

impl TensorCheck {
    fn checked(&self) -> impl Iterator<Item = &Entry> {
        self.entries.iter().filter(|e| !e.kink)
    }

    fn max(&self, f: impl Fn(&Entry) -> f64) -> f64 {
        // NaN wins, so a NaN gradient cannot hide.
        self.checked().map(f).fold(0.0, |a, b| if b.is_nan() || a.is_nan() { f64::NAN } else { a.max(b) })
    }

    /// The tensor's largest |analytic| entry.
    fn scale(&self) -> f64 {
        self.entries.first().map_or(0.0, |e| e.scale)
    }

    /// Entries outside the tolerance (a NaN on either side is one).
    pub fn failures(&self, tolerance: f64) -> Vec<&Entry> {
        self.checked().filter(|e| e.scaled().is_nan() || e.scaled() > tolerance).collect()
    }
}

/// `random` distinct entries of each tensor (at least one, at most all).
fn pick(shapes: &[(String, Vec<usize>)], random: usize, rng: &mut Rng) -> Vec<Vec<usize>> {
    shapes
        .iter()
        .map(|(_, s)| {
            let n: usize = s.iter().product();
            let k = random.max(1).min(n);
            if k == n {
                return (0..n).collect();
            }
            let mut chosen = std::collections::BTreeSet::new();
            while chosen.len() < k {
                chosen.insert(rng.below(n));
            }
            chosen.into_iter().collect()
        })
        .collect()
}

/// Central differences of `cost` at the `picks` of each tensor of `params`
/// (in `analytic`'s order), beside the `analytic` gradient. With `kinks`,
/// also steps of eps / 2: an entry whose difference quotients, or one-sided
/// slopes corrected for curvature, disagree by more than the tolerance is
/// marked as a kink rather than compared.
pub(crate) fn compare(
    params: &Params,
    analytic: &[(String, Vec<f32>)],
    picks: &[Vec<usize>],
    cost: impl Fn(&Params) -> crate::Result<f64>,
    eps: f64,
    tolerance: f64,
    kinks: bool,
) -> crate::Result<Vec<TensorCheck>> {
    let mut p = params.clone();
    let base = if kinks { cost(&p)? } else { 0.0 };
    let mut out = Vec::new();
    for ((name, grad), picks) in analytic.iter().zip(picks) {
        let shape = p.get(name)?.shape().to_vec();
        let scale = grad.iter().fold(1e-6f64, |m, &v| m.max((v as f64).abs()));
        let mut entries = Vec::new();
        for &j in picks {
            let x0 = p.get(name)?.data()[j];
            // The cost at x0 + h, and the step actually taken after f32 rounding.
            let mut at = |h: f64| -> crate::Result<(f64, f64)> {
                let x = (x0 as f64 + h) as f32;
                p.get_mut(name)?.data_mut()[j] = x;
                let c = cost(&p);
                p.get_mut(name)?.data_mut()[j] = x0;
                Ok((c?, x as f64 - x0 as f64))
            };
            let ((up, hu), (down, hd)) = (at(eps)?, at(-eps)?);
            let numeric = (up - down) / (hu - hd);
            let mut kink = false;
            if kinks {
                let ((up2, hu2), (down2, hd2)) = (at(eps / 2.0)?, at(-eps / 2.0)?);
                let half = (up2 - down2) / (hu2 - hd2);
                // Smooth: right - left slopes = h f'', so the curvature cancels.
                let bend = |u: f64, hu: f64, d: f64, hd: f64| (u - base) / hu - (base - d) / -hd;
                let jump = bend(up, hu, down, hd) - 2.0 * bend(up2, hu2, down2, hd2);
                let limit = tolerance * numeric.abs().max(scale);
                kink = (numeric - half).abs() > limit || jump.abs() > limit;
            }
            entries.push(Entry { index: j, analytic: grad[j] as f64, numeric, kink, scale });
        }
        out.push(TensorCheck { name: name.clone(), shape, entries });
    }
    Ok(out)
}

/// The network's summed cross-entropy over `batch` and its gradient by
/// the tape, as training computes it (dropout off), one flat vector per tensor.
fn analytic(net: &Sequential, params: &Params, batch: &Split) -> crate::Result<Vec<(String, Vec<f32>)>> {
    let tape = Tape::new();
    let x = Var::constant(batch.images.clone());
    let loss = net.loss(&tape, params, &x, &Targets::Classes(batch.labels.clone()), Reduction::Sum, None)?;
    let grads = tape.backward(&loss)?;
    Ok(net
        .param_shapes()
        .into_iter()
        .map(|(name, shape)| {
            let g = grads.by_name(&name).map_or_else(|| vec![0.0; shape.iter().product()], |g| g.data().to_vec());
            (name, g)
        })
        .collect())
}

/// "[0, 2, 1, 3]" for flat index `j` of a tensor of `shape`.
fn multi_index(mut j: usize, shape: &[usize]) -> String {
    let mut ix = vec![0; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        ix[k] = j % d.max(1);
        j /= d.max(1);
    }
    format!("{ix:?}")
}

/// Any other network: random entries of every parameter tensor.
fn network_check(ctx: &mut Ctx, g: &Gradcheck) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let (eps, tolerance) = g.eps_tolerance(false);
    let batch = data.train.head(g.examples.unwrap_or(EXAMPLES));
    let seed = ctx.pipeline().seed;
    let params = params(ctx)?.clone();
    let fail = |e: crate::Error| ctx.err("gradcheck", e);
    let grads = analytic(&net, &params, &batch).map_err(fail)?;
    let picks = pick(&net.param_shapes(), g.random, &mut Rng::new(seed ^ 0x6772_6164));
    let x = Var::constant(batch.images.clone());
    let cost = |p: &Params| Ok(cross_entropy64(net.forward(&Tape::inference(), p, &x, None)?.value(), &batch.labels));
    let kinks = net.nodes.iter().any(|n| matches!(n.layer, Layer::Relu | Layer::MaxPool2d(_)));
    let checks = compare(&params, &grads, &picks, cost, eps, tolerance, kinks).map_err(fail)?;

    let mut rows = String::from(
        "| tensor | shape | entries checked | skipped at kinks | largest gradient | max abs diff | max relative error \
         | passed |\n| --- | --- | ---: | ---: | ---: | ---: | ---: | --- |\n",
    );
    let (mut tensors, mut entries, mut worst) = (Vec::new(), Vec::new(), None);
    let (mut max_abs, mut max_scaled) = (0.0f64, 0.0f64);
    for t in &checks {
        let failures = t.failures(tolerance);
        let (checked, skipped) = (t.checked().count(), t.entries.len() - t.checked().count());
        let (abs, rel, scaled) = (t.max(Entry::abs), t.max(Entry::rel), t.max(Entry::scaled));
        max_abs = if abs.is_nan() { abs } else { max_abs.max(abs) };
        max_scaled = if scaled.is_nan() { scaled } else { max_scaled.max(scaled) };
        if let (Some(e), None) = (failures.first(), &worst) {
            worst = Some(format!(
                "{}{}: engine {:.6e} vs finite difference {:.6e}",
                t.name,
                multi_index(e.index, &t.shape),
                e.analytic,
                e.numeric
            ));
        }
        let pass = if failures.is_empty() { "yes" } else { "**no**" };
        rows += &format!(
            "| {} | {:?} | {checked} | {skipped} | {:.3e} | {abs:.3e} | {rel:.3e} | {pass} |\n",
            t.name,
            t.shape,
            t.scale()
        );
        tensors.push(json!({
            "tensor": t.name, "shape": t.shape, "checked": checked, "skipped_kinks": skipped, "largest_gradient": t.scale(),
            "max_abs_diff": abs, "max_rel_diff": rel, "max_scaled_diff": scaled, "passed": failures.is_empty(),
        }));
        entries.extend(t.entries.iter().map(|e| {
            json!({
                "entry": format!("{}{}", t.name, multi_index(e.index, &t.shape)), "analytic": e.analytic,
                "numeric": e.numeric, "abs_diff": e.abs(), "rel_diff": e.rel(), "kink": e.kink,
            })
        }));
    }
    ctx.report.set("gradcheck_tensors", tensors);
    ctx.report.set("gradcheck_entries", entries);
    ctx.report.set("gradcheck_examples", batch.len());
    ctx.report.set("gradcheck_max_abs_diff", max_abs);
    ctx.report.set("gradcheck_max_scaled_diff", max_scaled);
    ctx.report.set("gradcheck_passed", worst.is_none());
    ctx.report.section(
        "Gradient check",
        format!(
            "The summed cross-entropy over the first {} training examples, at the model's {} weights, dropout off: \
             the tape's gradient (f32) against central differences of the cost summed in f64 from the network's f32 \
             logits, eps = {eps}, on {} random entries of every tensor. An entry passes when |engine - finite \
             difference| <= {tolerance} * max(|finite difference|, the tensor's largest |engine gradient|): the f32 \
             forward pass rounds the cost, which limits how finely differences measure small entries.{}\n\n{rows}",
            batch.len(),
            if model.load.is_some() { "loaded" } else { "initial" },
            g.random.max(1),
            if kinks {
                " An entry is skipped when the difference quotients at eps and eps / 2 disagree by more than that: a \
                 ReLU or max-pool kink lies within the step, where a central difference does not measure the gradient."
            } else {
                ""
            },
        ),
    );
    if let Some(w) = worst {
        return Err(ctx.err("gradcheck", format!("gradient check failed (tolerance {tolerance}): {w}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Init, LayerSpec, Window2d};
    use crate::tensor::Tensor;

    /// A small CNN with ReLU and max-pool kinks, its parameters and a batch.
    fn setup() -> (Sequential, Params, Split) {
        let w = |kernel, stride| Window2d { kernel, stride, padding: 0 };
        let specs: Vec<LayerSpec> = [
            Layer::Conv2d { out: 3, win: w(3, 1), groups: 1, bias: true },
            Layer::Relu,
            Layer::MaxPool2d(w(2, 2)),
            Layer::Flatten,
            Layer::Linear { out: 6, bias: true },
            Layer::Tanh,
            Layer::Linear { out: 4, bias: true },
        ]
        .into_iter()
        .map(LayerSpec::new)
        .collect();
        let net = Sequential::new(&[1, 8, 8], &specs).unwrap();
        let mut params = Params::new();
        net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(3));
        let images = Tensor::uniform(&[8, 64], 0.0, 1.0, &mut Rng::new(4));
        (net, params, Split { images, labels: (0..8).map(|i| i % 4).collect() })
    }

    fn check(net: &Sequential, params: &Params, batch: &Split, grads: &[(String, Vec<f32>)]) -> Vec<TensorCheck> {
        let picks = pick(&net.param_shapes(), 20, &mut Rng::new(1));
        let x = Var::constant(batch.images.clone());
        let cost =
            |p: &Params| Ok(cross_entropy64(net.forward(&Tape::inference(), p, &x, None)?.value(), &batch.labels));
        compare(params, grads, &picks, cost, 1e-4, 0.1, true).unwrap()
    }

    #[test]
    fn a_correct_gradient_passes_and_a_broken_one_fails() {
        let (net, params, batch) = setup();
        let grads = analytic(&net, &params, &batch).unwrap();
        let checks = check(&net, &params, &batch, &grads);
        assert_eq!(checks.len(), 6);
        for t in &checks {
            assert!(t.failures(0.1).is_empty(), "{t:?}");
            assert!(t.checked().count() * 2 >= t.entries.len(), "most entries are compared: {t:?}");
        }
        // Every tensor's gradient, scaled by 1.5 in turn, fails its check.
        for k in 0..grads.len() {
            let mut broken = grads.clone();
            broken[k].1.iter_mut().for_each(|v| *v *= 1.5);
            let checks = check(&net, &params, &batch, &broken);
            assert!(!checks[k].failures(0.1).is_empty(), "{} scaled by 1.5 passed: {:?}", checks[k].name, checks[k]);
            assert!(checks.iter().enumerate().all(|(i, t)| i == k || t.failures(0.1).is_empty()));
        }
    }

    #[test]
    fn picks_are_distinct_and_cover_small_tensors() {
        let shapes = vec![("a".to_string(), vec![3]), ("b".to_string(), vec![100, 7])];
        let p = pick(&shapes, 5, &mut Rng::new(0));
        assert_eq!(p[0], vec![0, 1, 2]);
        assert_eq!(p[1].len(), 5);
        assert!(p[1].windows(2).all(|w| w[0] < w[1]) && p[1].iter().all(|&j| j < 700));
        assert_eq!(pick(&shapes, 0, &mut Rng::new(0))[0].len(), 1);
        assert_eq!(multi_index(23, &[2, 3, 4]), "[1, 2, 3]");
    }
}
