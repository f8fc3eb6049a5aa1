//! Report part 6: the cost over two weights around their trained values, and
//! the paths of gradient descent with and without momentum on that surface
//! (every other weight held fixed, the cost summed over the training set).

use super::softmax64::{Cost64, Delta};
use super::{network, params, Ctx};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Contour;
use crate::plot::{ContourPlot, Path2};
use serde_json::json;

/// The report's W[i, j] (input i, class j) as a change of our weight.
fn delta(w: [usize; 2], by: f64) -> Delta {
    Delta { class: w[1], input: Some(w[0]), by }
}

/// Cost over a `grid x grid` square of offsets in [-span, span]^2.
fn surface(cost: &Cost64, w: [[usize; 2]; 2], span: f64, grid: usize) -> Vec<f64> {
    let at = |k: usize| -span + 2.0 * span * k as f64 / (grid - 1) as f64;
    (0..grid * grid).map(|k| cost.cost(&[delta(w[0], at(k % grid)), delta(w[1], at(k / grid))])).collect()
}

/// Gradient descent on the two weights from `start`; `momentum` 0 is plain.
fn trajectory(
    cost: &Cost64,
    w: [[usize; 2]; 2],
    start: [f64; 2],
    lr: f64,
    steps: usize,
    momentum: f64,
) -> Vec<(f64, f64)> {
    let (mut pos, mut v) = (start, [0.0; 2]);
    let mut path = vec![(pos[0], pos[1])];
    for _ in 0..steps {
        let at = [delta(w[0], pos[0]), delta(w[1], pos[1])];
        let g = cost.grad(&at, &at);
        for k in 0..2 {
            v[k] = momentum * v[k] + lr * g[k];
            pos[k] -= v[k];
        }
        path.push((pos[0], pos[1]));
    }
    path
}

pub(crate) fn run(ctx: &mut Ctx, c: &Contour) -> Result<(), RunError> {
    let data = ctx.data()?;
    let net = network(ctx, ctx.pipeline().model.as_ref().expect("validated"), &data)?;
    let first = net.weighted()[0];
    let (wname, bname) = (first.param_name("weight"), first.param_name("bias"));
    let params = params(ctx)?.clone();
    let cost = Cost64::new(&data.train, &params, &wname, &bname).map_err(|e| ctx.err("contour", e))?;
    let inputs = data.inputs();
    let weight = |w: [usize; 2]| params.get(&wname).map(|t| t.data()[w[1] * inputs + w[0]] as f64).unwrap_or(f64::NAN);
    let name = |w: [usize; 2]| format!("W[{}, {}]", w[0], w[1]);
    let (span, grid) = (c.span as f64, c.grid);
    let draw = |ctx: &Ctx, w: [[usize; 2]; 2], title: String, paths: Vec<Path2>| {
        let values = surface(&cost, w, span, grid);
        ContourPlot {
            title,
            x_label: format!("{} - {:.3} (trained)", name(w[0]), weight(w[0])),
            y_label: format!("{} - {:.3} (trained)", name(w[1]), weight(w[1])),
            x: (-span, span),
            y: (-span, span),
            values,
            nx: grid,
            ny: grid,
            levels: 10,
            paths,
        }
        .png(760, 640)
        .map_err(|e| ctx.err("contour", e))
    };
    let png = draw(ctx, c.weights, "Cost around the trained weights".into(), vec![])?;
    ctx.write("figure5_contour.png", &png)?;
    ctx.report.figure("figure5_contour.png", "Figure 5: the training cost over two central weights");

    let start = [c.start[0] as f64, c.start[1] as f64];
    let plain = trajectory(&cost, c.weights, start, c.lr as f64, c.steps, 0.0);
    let with_m = trajectory(&cost, c.weights, start, c.lr as f64, c.steps, c.momentum as f64);
    let paths = vec![
        Path2 { name: "gradient descent".into(), points: plain.clone() },
        Path2 { name: format!("momentum {}", c.momentum), points: with_m.clone() },
    ];
    let png = draw(ctx, c.weights, format!("Trajectories: lr {}, {} steps", c.lr, c.steps), paths)?;
    ctx.write("figure6_trajectories.png", &png)?;
    ctx.report.figure("figure6_trajectories.png", "Figure 6: descent with and without momentum from the same start");
    let dist = |p: &(f64, f64)| (p.0 * p.0 + p.1 * p.1).sqrt();
    let (d_plain, d_mom) = (dist(plain.last().expect("start")), dist(with_m.last().expect("start")));
    ctx.report.set(
        "contour",
        json!({
            "weights": c.weights, "trained_values": [weight(c.weights[0]), weight(c.weights[1])],
            "start_offset": start, "final_distance_plain": d_plain, "final_distance_momentum": d_mom,
        }),
    );
    let mut text =
        format!(
        "Trained values: {} = {:.3}, {} = {:.3}. From offset ({}, {}), after {} steps of lr {}: gradient descent ends \
         {:.4} from the trained point, momentum {} ends {:.4} from it.",
        name(c.weights[0]), weight(c.weights[0]), name(c.weights[1]), weight(c.weights[1]),
        start[0], start[1], c.steps, c.lr, d_plain, c.momentum, d_mom
    );
    if let Some(edge) = c.edge_weights {
        let values = surface(&cost, edge, span, grid);
        let (lo, hi) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let central = surface(&cost, c.weights, span, grid);
        let (clo, chi) = central.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let png = draw(ctx, edge, "Cost over two edge weights".into(), vec![])?;
        ctx.write("contour_edge.png", &png)?;
        ctx.report.figure("contour_edge.png", "The same surface for two edge pixels: flat");
        ctx.report.set("contour_edge_range", hi - lo);
        ctx.report.set("contour_central_range", chi - clo);
        text += &format!(
            "\n\nOver the same square the cost varies by {:.4e} for the edge pixels {} and {}, against {:.4e} for the central ones: \
             edge pixels are (nearly) always 0, so their weights barely touch the cost.",
            hi - lo, name(edge[0]), name(edge[1]), chi - clo
        );
    }
    ctx.report.section("Cost surface and momentum", text);
    Ok(())
}
