//! Report part 7, measured: the time to get every gradient of a chain of N
//! layers of K neurons, by naive per-weight path sums, by the tape
//! (vectorised backpropagation) and by finite differences, as N and K grow;
//! fitted growth rates against the report's O(K^N) and O(N K^3).

use super::Ctx;
use crate::nn::chain::{fit_line, Chain};
use crate::pipeline::report::fmt_metric;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Scaling;
use crate::plot::{hstack_png, Axis, LineChart, Series, SeriesStyle};
use serde_json::json;
use std::time::Instant;

/// A way to compute every weight's gradient, timed against the others.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Naive: sum the products along every path from the weight to the loss.
    Paths,
    /// Backpropagation on the tape, vectorised.
    Tape,
    /// Central finite differences, two forward passes per weight.
    Finite,
}

impl Method {
    /// The name the figures and `metrics.json` use.
    pub fn name(self) -> &'static str {
        match self {
            Method::Paths => "naive",
            Method::Tape => "vectorised",
            Method::Finite => "finite-differences",
        }
    }
}

impl Method {
    /// Operations of one full gradient at depth `n`, width `k` (path terms
    /// for the naive method, FLOPs for the others), in f64 so nothing wraps.
    pub fn operations(self, n: usize, k: usize) -> f64 {
        let (nf, kf) = (n as f64, k as f64);
        match self {
            // Weights of layer l: K^2, each summed over K samples and over the
            // K^0 + ... + K^(N-l) paths from its output to the cost.
            Method::Paths => (1..=n).map(|l| kf.powi(3) * (0..=n - l).map(|d| kf.powi(d as i32)).sum::<f64>()).sum(),
            // Three K x K x K products per layer, and a fixed cost per op.
            Method::Tape => nf * (6.0 * kf.powi(3) + 1e4),
            // Two forward passes per weight.
            Method::Finite => 2.0 * nf * kf * kf * nf * 2.0 * kf.powi(3),
        }
    }

    /// Operations per second no machine of ours beats: the bound used before
    /// anything has been timed.
    fn fastest_rate(self) -> f64 {
        match self {
            Method::Paths => 2e9,
            Method::Tape => 1e12,
            Method::Finite => 2e10,
        }
    }

    /// The least time one gradient at (n, k) can take.
    pub fn least_seconds(self, n: usize, k: usize) -> f64 {
        self.operations(n, k) / self.fastest_rate()
    }
}

/// Median seconds of one full gradient by `method` (at least `reps` runs
/// and about 0.2 s of them).
pub fn time_gradient(method: Method, depth: usize, width: usize, reps: usize) -> f64 {
    let net = Chain::random(depth, width, (depth * 1000 + width) as u64);
    let once = || {
        let t = Instant::now();
        match method {
            Method::Paths => drop(std::hint::black_box(net.grad_paths())),
            Method::Tape => drop(std::hint::black_box(net.grad_tape().expect("valid shapes"))),
            Method::Finite => drop(std::hint::black_box(net.grad_finite(1e-5))),
        }
        t.elapsed().as_secs_f64()
    };
    let first = once();
    let runs = ((0.2 / first.max(1e-9)) as usize).min(2001).max(reps.max(1));
    let mut times: Vec<f64> = (0..runs).map(|_| once()).collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Time `method` at each point while the previous point suggests the next
/// fits the budget; returns (x, seconds) pairs.
fn sweep_points(method: Method, points: &[(usize, usize)], budget: f64, reps: usize) -> Vec<(usize, usize, f64)> {
    let mut out: Vec<(usize, usize, f64)> = Vec::new();
    for &(depth, width) in points {
        // Predict before running: from the last point timed, scaled by the
        // operations (an upper bound while fixed costs still dominate, hence
        // the slack); before any, the least time the operations can take.
        let over = match out.last() {
            Some(&(n, k, t)) => t * method.operations(depth, width) / method.operations(n, k).max(1.0) > 4.0 * budget,
            None => method.least_seconds(depth, width) > budget,
        };
        if over {
            break;
        }
        let t = time_gradient(method, depth, width, reps);
        out.push((depth, width, t));
        if t > budget {
            break;
        }
    }
    out
}

pub(crate) fn run(ctx: &mut Ctx, s: &Scaling) -> Result<(), RunError> {
    let methods: Vec<Method> =
        [Method::Paths, Method::Tape].into_iter().chain(s.finite_differences.then_some(Method::Finite)).collect();
    let by_depth: Vec<(usize, usize)> = s.depths.iter().map(|&n| (n, s.width_for_depths)).collect();
    let by_width: Vec<(usize, usize)> = s.widths.iter().map(|&k| (s.depth_for_widths, k)).collect();
    let mut depth_series = Vec::new();
    let mut width_series = Vec::new();
    let mut fits = serde_json::Map::new();
    let mut rows = String::from("| method | N | K | seconds |\n| --- | --- | --- | --- |\n");
    let mut measured = Vec::new();
    for &m in &methods {
        let d = sweep_points(m, &by_depth, s.budget_seconds, s.repeats);
        let w = sweep_points(m, &by_width, s.budget_seconds, s.repeats);
        for &(n, k, t) in d.iter().chain(&w) {
            rows += &format!("| {} | {n} | {k} | {t:.3e} |\n", m.name());
        }
        // Growth with depth: slope of ln(time) per layer (exponential growth)
        // and seconds per layer (linear growth); with width: the exponent of
        // K, the slope of ln time against ln K over the three largest K.
        let depths: Vec<f64> = d.iter().map(|p| p.0 as f64).collect();
        let (sd, _) = fit_line(&depths, &d.iter().map(|p| p.2.ln()).collect::<Vec<_>>());
        let (per_layer, _) = fit_line(&depths, &d.iter().map(|p| p.2).collect::<Vec<_>>());
        let upper = &w[w.len().saturating_sub(3)..];
        let log_k: Vec<f64> = upper.iter().map(|p| (p.1 as f64).ln()).collect();
        let (sw, _) = fit_line(&log_k, &upper.iter().map(|p| p.2.ln()).collect::<Vec<_>>());
        let fit = json!({
            "ln_time_per_layer": sd, "seconds_per_layer": per_layer, "exponent_of_k": sw,
            "depth_points": d.len(), "width_points": w.len(),
        });
        fits.insert(m.name().into(), fit);
        depth_series.push(Series {
            name: if m == Method::Tape {
                format!("{}: +{:.2} us per layer", m.name(), per_layer * 1e6)
            } else {
                format!("{}: ln t grows {sd:.2} per layer", m.name())
            },
            points: d.iter().map(|p| (p.0 as f64, p.2)).collect(),
            style: SeriesStyle::LineAndPoints,
        });
        width_series.push(Series {
            name: format!("{}: t ~ K^{sw:.2}", m.name()),
            points: w.iter().map(|p| (p.1 as f64, p.2)).collect(),
            style: SeriesStyle::LineAndPoints,
        });
        measured.push((m, d, w));
    }
    // Naive over vectorised at the largest point both reached (depth sweep).
    let (naive, tape) = (&measured[0].1, &measured[1].1);
    let common = naive.iter().rev().find_map(|p| tape.iter().find(|q| q.0 == p.0).map(|q| (p.0, p.2 / q.2)));
    let depth_chart = LineChart {
        title: format!("Time for all gradients, K = {}", s.width_for_depths),
        x_label: "layers N".into(),
        y_label: "seconds".into(),
        series: depth_series,
        y_axis: Axis::Log,
        ..Default::default()
    };
    let width_chart = LineChart {
        title: format!("Time for all gradients, N = {}", s.depth_for_widths),
        x_label: "neurons per layer K".into(),
        y_label: "seconds".into(),
        series: width_series,
        x_axis: Axis::Log,
        y_axis: Axis::Log,
        ..Default::default()
    };
    let err = |e| ctx.err("scaling", e);
    let png =
        hstack_png(&[depth_chart.png(760, 560).map_err(err)?, width_chart.png(760, 560).map_err(err)?]).map_err(err)?;
    ctx.write("scaling.png", &png)?;
    ctx.report.figure(
        "scaling.png",
        "Time to compute every gradient: against depth N (left, log time) and width K (right, log-log)",
    );
    ctx.report.set("scaling_fits", serde_json::Value::Object(fits.clone()));
    if let Some((n, ratio)) = common {
        ctx.report.set("naive_over_vectorised", json!({ "depth": n, "width": s.width_for_depths, "ratio": ratio }));
    }
    let f = |m: &str, key: &str| fits.get(m).and_then(|v| v[key].as_f64()).unwrap_or(f64::NAN);
    let ln_k = (s.width_for_depths as f64).ln();
    ctx.report.section(
        "What the figure shows",
        format!(
            "Left: at K = {k}, each extra layer multiplies the naive method's time by e^{a:.2} = {ea:.1} (the theory: a factor \
             K = {k}, ln K = {ln_k:.2}), because the number of paths from a weight to the cost multiplies by K with every layer. \
             The vectorised method adds {b:.2e} s per layer (one more K x K x K product forward and two backward): its time is \
             linear in N, so on this log scale its curve flattens. Right: at N = {n}, the vectorised time grows as K^{c:.2} \
             over the three largest K (theory: 3 once the products dominate; below K of about 32 the tape's fixed cost per op, \
             microseconds, hides the cubic term), \
             while the naive method grows as K^{d:.2} (theory: K^(N+2) = K^{np2} with a batch of K). Finite differences sit between: \
             two forward passes per weight, K^{e:.2} (theory K^5).{ratio}\n\n{rows}",
            k = s.width_for_depths,
            a = f("naive", "ln_time_per_layer"),
            ea = f("naive", "ln_time_per_layer").exp(),
            b = f("vectorised", "seconds_per_layer"),
            n = s.depth_for_widths,
            np2 = s.depth_for_widths + 2,
            c = f("vectorised", "exponent_of_k"),
            d = f("naive", "exponent_of_k"),
            e = f("finite-differences", "exponent_of_k"),
            ratio = common.map_or(String::new(), |(n, r)| format!(
                " At N = {n}, K = {}, the naive method takes {} the time of backpropagation.",
                s.width_for_depths,
                if r >= 1.0 { format!("{r:.0}x") } else { fmt_metric(r) }
            )),
        ),
    );
    Ok(())
}
