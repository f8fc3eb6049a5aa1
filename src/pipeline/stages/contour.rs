//! Report part 6: the cost over two weights around their trained values, and
//! the paths of gradient descent with and without momentum on that surface
//! (every other weight held fixed, the cost summed over the training set).
//! The linear model's cost is exact in f64 (`softmax64.rs`); any other
//! network's is its f32 forward pass over the training set, in pieces, summed
//! in f64, and its gradient the tape's.

use super::softmax64::{cross_entropy64, Cost64, Delta};
use super::{network, params, Ctx};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::data::Split;
use crate::nn::{Params, Sequential};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Contour, ModelKind};
use crate::plot::{ContourPlot, Path2};
use crate::tensor::Tensor;
use serde_json::json;
use std::cell::RefCell;

/// The report's W[i, j] (input i, class j) as a change of our weight.
fn delta(w: [usize; 2], by: f64) -> Delta {
    Delta { class: w[1], input: Some(w[0]), by }
}

/// Values a piece of the training set may hold across the network's layers.
const PIECE_VALUES: usize = 1 << 22;

/// The cost as a function of offsets of two parameters from their values.
enum Surface<'a> {
    /// The linear model's cost in f64; `at` are the two parameters (`by` unused).
    Linear { cost: &'a Cost64<'a>, at: [Delta; 2] },
    /// Any network, over the training set in pieces of inputs and labels.
    Net {
        net: &'a Sequential,
        params: RefCell<Params>,
        tensor: String,
        index: [usize; 2],
        base: [f32; 2],
        pieces: Vec<(Var, Targets)>,
    },
}

impl Surface<'_> {
    /// Apply `f` to the parameters moved by `off`, then put them back.
    fn moved<T>(
        params: &RefCell<Params>,
        tensor: &str,
        index: [usize; 2],
        base: [f32; 2],
        off: [f64; 2],
        f: impl FnOnce(&Params) -> crate::Result<T>,
    ) -> crate::Result<T> {
        let mut p = params.borrow_mut();
        for k in 0..2 {
            p.get_mut(tensor)?.data_mut()[index[k]] = (base[k] as f64 + off[k]) as f32;
        }
        let out = f(&p);
        for k in 0..2 {
            p.get_mut(tensor)?.data_mut()[index[k]] = base[k];
        }
        out
    }

    fn cost(&self, off: [f64; 2]) -> crate::Result<f64> {
        match self {
            Surface::Linear { cost, at } => {
                Ok(cost.cost(&[Delta { by: off[0], ..at[0] }, Delta { by: off[1], ..at[1] }]))
            }
            Surface::Net { net, params, tensor, index, base, pieces } => {
                Self::moved(params, tensor, *index, *base, off, |p| {
                    let mut sum = 0.0;
                    for (x, y) in pieces {
                        let tape = Tape::inference();
                        let logits = net.forward(&tape, p, x, None)?;
                        let Targets::Classes(labels) = y else { unreachable!("classes") };
                        sum += cross_entropy64(logits.value(), labels);
                    }
                    Ok(sum)
                })
            }
        }
    }

    /// The gradient with respect to the two parameters at `off`.
    fn grad(&self, off: [f64; 2]) -> crate::Result<[f64; 2]> {
        match self {
            Surface::Linear { cost, at } => {
                let at = [Delta { by: off[0], ..at[0] }, Delta { by: off[1], ..at[1] }];
                let g = cost.grad(&at, &at);
                Ok([g[0], g[1]])
            }
            Surface::Net { net, params, tensor, index, base, pieces } => {
                Self::moved(params, tensor, *index, *base, off, |p| {
                    let mut g = [0.0; 2];
                    for (x, y) in pieces {
                        let tape = Tape::new();
                        let loss = net.loss(&tape, p, x, y, Reduction::Sum, None)?;
                        let grads = tape.backward(&loss)?;
                        if let Some(t) = grads.by_name(tensor) {
                            g[0] += t.data()[index[0]] as f64;
                            g[1] += t.data()[index[1]] as f64;
                        }
                    }
                    Ok(g)
                })
            }
        }
    }
}

/// The training set in pieces small enough to pass through `net` at once.
fn pieces(net: &Sequential, split: &Split) -> crate::Result<Vec<(Var, Targets)>> {
    let values: usize = net.nodes.iter().map(|n| n.output.iter().product::<usize>()).sum();
    let rows = (PIECE_VALUES / values.max(1)).clamp(1, split.len().max(1));
    let width = split.images.shape()[1];
    let mut out = Vec::new();
    for start in (0..split.len()).step_by(rows) {
        let end = (start + rows).min(split.len());
        let x = Tensor::from_vec(split.images.data()[start * width..end * width].to_vec(), &[end - start, width])?;
        out.push((Var::constant(x), Targets::Classes(split.labels[start..end].to_vec())));
    }
    Ok(out)
}

/// Cost over a `grid x grid` square of offsets in [-span, span]^2.
fn surface(s: &Surface, span: f64, grid: usize) -> crate::Result<Vec<f64>> {
    let at = |k: usize| -span + 2.0 * span * k as f64 / (grid - 1) as f64;
    (0..grid * grid).map(|k| s.cost([at(k % grid), at(k / grid)])).collect()
}

/// Gradient descent on the two weights from `start`; `momentum` 0 is plain.
fn trajectory(s: &Surface, start: [f64; 2], lr: f64, steps: usize, momentum: f64) -> crate::Result<Vec<(f64, f64)>> {
    let (mut pos, mut v) = (start, [0.0; 2]);
    let mut path = vec![(pos[0], pos[1])];
    for _ in 0..steps {
        let g = s.grad(pos)?;
        for k in 0..2 {
            v[k] = momentum * v[k] + lr * g[k];
            pos[k] -= v[k];
        }
        path.push((pos[0], pos[1]));
    }
    Ok(path)
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

pub(crate) fn run(ctx: &mut Ctx, c: &Contour) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let first = net.weighted()[0];
    let (wname, bname) = (first.param_name("weight"), first.param_name("bias"));
    let params = params(ctx)?.clone();
    let linear = model.kind == ModelKind::Linear;
    let cost = if linear {
        Some(Cost64::new(&data.train, &params, &wname, &bname).map_err(|e| ctx.err("contour", e))?)
    } else {
        None
    };
    let inputs = data.inputs();
    let value = |t: &str, j: usize| params.get(t).map(|t| t.data()[j] as f64).unwrap_or(f64::NAN);
    let weight = |w: [usize; 2]| value(&wname, w[1] * inputs + w[0]);
    let name = |w: [usize; 2]| format!("W[{}, {}]", w[0], w[1]);

    // The two parameters: their names, trained values, and the surface.
    let (names, values, s) = match (&c.weights, &c.tensor, &c.entries) {
        (Some(w), _, _) => {
            let cost = cost.as_ref().expect("validated: weights need a linear model");
            (
                [name(w[0]), name(w[1])],
                [weight(w[0]), weight(w[1])],
                Surface::Linear { cost, at: [delta(w[0], 0.0), delta(w[1], 0.0)] },
            )
        }
        (None, Some(tensor), Some(entries)) => {
            let shape = params.get(tensor).map_err(|e| ctx.err("contour", e))?.shape().to_vec();
            let flat =
                |k: usize| entries[k].flat(&shape).map_err(|e| ctx.err("contour", format!("contour.entries: {e}")));
            let index = [flat(0)?, flat(1)?];
            let names = index.map(|j| format!("{tensor}{}", multi_index(j, &shape)));
            let values = index.map(|j| value(tensor, j));
            let s = match &cost {
                // The linear model's own parameters: its exact cost.
                Some(cost) if *tensor == wname || *tensor == bname => {
                    let at = index.map(|j| {
                        if *tensor == wname {
                            Delta { class: j / inputs, input: Some(j % inputs), by: 0.0 }
                        } else {
                            Delta { class: j, input: None, by: 0.0 }
                        }
                    });
                    Surface::Linear { cost, at }
                }
                _ => Surface::Net {
                    net: &net,
                    params: RefCell::new(params.clone()),
                    tensor: tensor.clone(),
                    index,
                    base: values.map(|v| v as f32),
                    pieces: pieces(&net, &data.train).map_err(|e| ctx.err("contour", e))?,
                },
            };
            (names, values, s)
        }
        _ => unreachable!("validated: weights, or tensor and entries"),
    };
    let (span, grid) = (c.span as f64, c.grid);
    let draw =
        |ctx: &Ctx, names: &[String; 2], values: [f64; 2], surface: Vec<f64>, title: String, paths: Vec<Path2>| {
            ContourPlot {
                title,
                x_label: format!("{} - {:.3} (trained)", names[0], values[0]),
                y_label: format!("{} - {:.3} (trained)", names[1], values[1]),
                x: (-span, span),
                y: (-span, span),
                values: surface,
                nx: grid,
                ny: grid,
                levels: 10,
                paths,
            }
            .png(760, 640)
            .map_err(|e| ctx.err("contour", e))
        };
    let central = surface(&s, span, grid).map_err(|e| ctx.err("contour", e))?;
    let png = draw(ctx, &names, values, central.clone(), "Cost around the trained weights".into(), vec![])?;
    ctx.write("figure5_contour.png", &png)?;
    ctx.report.figure("figure5_contour.png", "Figure 5: the training cost over two central weights");

    let start = [c.start[0] as f64, c.start[1] as f64];
    let plain = trajectory(&s, start, c.lr as f64, c.steps, 0.0).map_err(|e| ctx.err("contour", e))?;
    let with_m = trajectory(&s, start, c.lr as f64, c.steps, c.momentum as f64).map_err(|e| ctx.err("contour", e))?;
    let paths = vec![
        Path2 { name: "gradient descent".into(), points: plain.clone() },
        Path2 { name: format!("momentum {}", c.momentum), points: with_m.clone() },
    ];
    let png =
        draw(ctx, &names, values, central.clone(), format!("Trajectories: lr {}, {} steps", c.lr, c.steps), paths)?;
    ctx.write("figure6_trajectories.png", &png)?;
    ctx.report.figure("figure6_trajectories.png", "Figure 6: descent with and without momentum from the same start");
    let dist = |p: &(f64, f64)| (p.0 * p.0 + p.1 * p.1).sqrt();
    let (d_plain, d_mom) = (dist(plain.last().expect("start")), dist(with_m.last().expect("start")));
    let mut metrics = json!({
        "trained_values": values, "start_offset": start, "final_distance_plain": d_plain,
        "final_distance_momentum": d_mom,
    });
    match (&c.weights, &c.tensor, &s) {
        (Some(w), _, _) => metrics["weights"] = json!(w),
        (_, Some(t), Surface::Net { index, .. }) => {
            metrics["tensor"] = json!(t);
            metrics["entries"] = json!(index);
            metrics["names"] = json!(names);
        }
        (_, Some(t), _) => {
            metrics["tensor"] = json!(t);
            metrics["names"] = json!(names);
        }
        _ => {}
    }
    ctx.report.set("contour", metrics);
    let mut text = format!(
        "Trained values: {} = {:.3}, {} = {:.3}. From offset ({}, {}), after {} steps of lr {}: gradient descent ends \
         {:.4} from the trained point, momentum {} ends {:.4} from it.",
        names[0], values[0], names[1], values[1], start[0], start[1], c.steps, c.lr, d_plain, c.momentum, d_mom
    );
    if let Surface::Net { pieces, .. } = &s {
        text += &format!(
            " The cost is the network's summed cross-entropy over its {} training examples ({} forward passes in {} \
             pieces each), every other parameter held at its trained value.",
            data.train.len(),
            grid * grid,
            pieces.len()
        );
    }
    if let (Some(edge), Some(cost)) = (c.edge_weights, &cost) {
        let e = Surface::Linear { cost, at: [delta(edge[0], 0.0), delta(edge[1], 0.0)] };
        let values_e = surface(&e, span, grid).map_err(|e| ctx.err("contour", e))?;
        let (lo, hi) = values_e.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let (clo, chi) = central.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let png = draw(
            ctx,
            &[name(edge[0]), name(edge[1])],
            [weight(edge[0]), weight(edge[1])],
            values_e,
            "Cost over two edge weights".into(),
            vec![],
        )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{presets, Activation, Init};
    use crate::tensor::Rng;

    /// A network's surface agrees with the linear model's exact one when the
    /// network is that linear model, and its gradient with the cost's slope.
    #[test]
    fn the_network_surface_matches_the_exact_linear_cost() {
        let net = Sequential::new(&[12], &presets::mlp(&[], 3, Activation::Relu)).unwrap();
        let mut params = Params::new();
        net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(2));
        let images = Tensor::uniform(&[50, 12], 0.0, 1.0, &mut Rng::new(3));
        let split = Split { images, labels: (0..50).map(|i| i % 3).collect() };
        let cost = Cost64::new(&split, &params, "fc1.weight", "fc1.bias").unwrap();
        let exact = Surface::Linear {
            cost: &cost,
            at: [Delta { class: 1, input: Some(4), by: 0.0 }, Delta { class: 2, input: None, by: 0.0 }],
        };
        let base = [params.get("fc1.weight").unwrap().data()[16], 0.0];
        // Two entries of one tensor, in pieces of at most 7 rows.
        let weight_only = Surface::Net {
            net: &net,
            params: RefCell::new(params.clone()),
            tensor: "fc1.weight".into(),
            index: [16, 2 * 12 + 5],
            base: [base[0], params.get("fc1.weight").unwrap().data()[29]],
            pieces: pieces(&net, &split).unwrap(),
        };
        assert_eq!(pieces(&net, &split).unwrap().len(), 1);
        for off in [[0.0, 0.0], [0.5, -1.0], [-2.0, 1.5]] {
            let e = exact.cost([off[0], 0.0]).unwrap();
            let n = weight_only.cost([off[0], 0.0]).unwrap();
            assert!((e - n).abs() < 1e-4 * e.abs(), "{e} vs {n}");
            let g = weight_only.grad(off).unwrap();
            let h = 1e-2;
            let num = (weight_only.cost([off[0] + h, off[1]]).unwrap()
                - weight_only.cost([off[0] - h, off[1]]).unwrap())
                / (2.0 * h);
            assert!((g[0] - num).abs() < 1e-2 * num.abs().max(1.0), "{g:?} vs {num}");
        }
        // The parameters are put back after each evaluation.
        let Surface::Net { params: p, .. } = &weight_only else { unreachable!() };
        assert_eq!(p.borrow().get("fc1.weight").unwrap(), params.get("fc1.weight").unwrap());
        assert_eq!(multi_index(29, &[3, 12]), "[2, 5]");
    }
}
