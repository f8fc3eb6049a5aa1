//! Report part 9, for any model whose first layer with weights is `linear`
//! over the image's pixels or `conv2d`: that layer's weights drawn as images
//! (the weights into each unit over the pixels, or each filter), and, where
//! it means something, the class each unit favours, read off the next layer:
//! the class whose weight from that unit is largest. That reading holds when
//! the unit's activation is never negative (ReLU, sigmoid) and a linear layer
//! takes it: a larger activation then pushes that logit up the most.

use super::{network, params, Ctx};
use crate::nn::sequential::Node;
use crate::nn::{Layer, Sequential};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Units;
use crate::plot::{ColorMap, ImageGrid};
use serde_json::json;

/// Input channels of a filter drawn at most (side by side).
const MAX_CHANNELS: usize = 16;

/// What the stage draws for a network.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Plan {
    /// Units (linear) or filters (conv2d) of the first layer with weights.
    pub units: usize,
    /// True for a convolution's filters, false for a linear layer's rows.
    pub filters: bool,
    /// Why there is no "class each unit favours" table, or None when there is.
    pub no_table: Option<String>,
}

/// The first layer with weights, and the index of the next one, if any.
fn first_two(net: &Sequential) -> Option<(usize, Option<usize>)> {
    let mut weighted = net.nodes.iter().enumerate().filter(|(_, n)| !n.params.is_empty()).map(|(i, _)| i);
    let first = weighted.next()?;
    Some((first, weighted.next()))
}

/// What the units stage can draw for `net` on examples of shape `example`
/// (through a backbone or not), or why it cannot: the reason `check` gives.
pub(crate) fn plan(net: &Sequential, example: &[usize], backbone: bool) -> Result<Plan, String> {
    let (i, next) = first_two(net).ok_or("the model has no layer with weights")?;
    let first = &net.nodes[i];
    match first.layer {
        Layer::Conv2d { out, .. } => Ok(Plan {
            units: out,
            filters: true,
            no_table: Some(format!(
                "{} is a convolution: its filters are drawn, without a favoured class",
                first.prefix
            )),
        }),
        Layer::Linear { out, .. } => {
            let pixels: usize = example.iter().product();
            if backbone {
                return Err(format!(
                    "its first layer {} takes the backbone's features, not pixels: there are no images to draw",
                    first.prefix
                ));
            }
            if first.input.iter().product::<usize>() != pixels || example.len() != 3 {
                return Err(format!(
                    "its first layer {} takes {:?}, not the image's {pixels} pixels {example:?}",
                    first.prefix, first.input
                ));
            }
            let no_table = match next.map(|j| (j, &net.nodes[j])) {
                None => Some(format!("{} is the output layer: each image is a class's weights", first.prefix)),
                Some((_, n)) if !matches!(n.layer, Layer::Linear { .. }) => {
                    Some(format!("{} is not a linear layer, so no class is read off it", n.prefix))
                }
                Some((j, _)) => {
                    let between: Vec<&Layer> = net.nodes[i + 1..j]
                        .iter()
                        .map(|n| &n.layer)
                        .filter(|l| !matches!(l, Layer::Dropout { .. }))
                        .collect();
                    match between.as_slice() {
                        [Layer::Relu | Layer::Sigmoid] => None,
                        _ => Some(format!(
                            "between {} and {} there is not one ReLU or sigmoid (whose outputs are never negative), so \
                             the largest outgoing weight does not say which class a unit favours",
                            first.prefix, net.nodes[j].prefix
                        )),
                    }
                }
            };
            Ok(Plan { units: out, filters: false, no_table })
        }
        _ => Err(format!("its first layer with weights, {}, is neither linear nor conv2d", first.prefix)),
    }
}

/// One image per unit: a linear layer's weights over the first channel's
/// pixels, or a filter's input channels side by side (0 between them).
fn images(first: &Node, w: &[f32], example: &[usize]) -> (Vec<Vec<f32>>, usize, usize, String) {
    match first.layer {
        Layer::Conv2d { out, win, .. } => {
            let per_filter = w.len() / out.max(1);
            let (k, channels) = (win.kernel, per_filter / (win.kernel * win.kernel).max(1));
            let shown = channels.min(MAX_CHANNELS);
            let width = shown * k + shown.saturating_sub(1);
            let imgs = w
                .chunks(per_filter)
                .map(|f| {
                    let mut img = vec![0.0; width * k];
                    for c in 0..shown {
                        for y in 0..k {
                            for x in 0..k {
                                img[y * width + c * (k + 1) + x] = f[(c * k + y) * k + x];
                            }
                        }
                    }
                    img
                })
                .collect();
            let note = match channels {
                1 => String::new(),
                c if c <= MAX_CHANNELS => format!(" (its {c} input channels side by side)"),
                c => format!(" (the first {MAX_CHANNELS} of its {c} input channels side by side)"),
            };
            (imgs, width, k, note)
        }
        _ => {
            let (inputs, side) = (example.iter().product::<usize>(), example[example.len() - 1]);
            let plane = example[1] * side;
            let note = if example[0] > 1 { " (over the first channel's pixels)".to_string() } else { String::new() };
            (w.chunks(inputs).map(|r| r[..plane].to_vec()).collect(), side, example[1], note)
        }
    }
}

pub(crate) fn run(ctx: &mut Ctx, u: &Units) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let example = data.example_shape();
    let plan = plan(&net, &example, ctx.pipeline().backbone.is_some()).map_err(|e| ctx.err("units", e))?;
    let (i, next) = first_two(&net).expect("planned");
    let first = &net.nodes[i];
    let params = params(ctx)?.clone();
    let w1 = params.get(&first.param_name("weight")).map_err(|e| ctx.err("units", e))?;
    let units = plan.units;
    // The class (or next unit) each unit favours, when that means something.
    let w2 = match (&plan.no_table, next) {
        (None, Some(j)) => Some(params.get(&net.nodes[j].param_name("weight")).map_err(|e| ctx.err("units", e))?),
        _ => None,
    };
    let output = next.is_some_and(|j| net.nodes[j + 1..].iter().all(|n| n.params.is_empty()));
    let name = |j: usize| if output { data.class_names[j].clone() } else { format!("unit {j}") };
    let favours: Vec<usize> = w2.map_or(vec![], |w2| {
        let next = w2.shape()[0];
        (0..units)
            .map(|unit| {
                (0..next).fold(0, |b, j| if w2.data()[j * units + unit] > w2.data()[b * units + unit] { j } else { b })
            })
            .collect()
    });
    let (imgs, width, height, note) = images(first, w1.data(), &example);
    let what = if plan.filters {
        format!("the {units} filters of {}", first.prefix)
    } else {
        format!("the {units} units of {}", first.prefix)
    };
    let single = first_two(&net).is_some_and(|(_, n)| n.is_none()) && !plan.filters;
    let captions = (0..units)
        .map(|k| match favours.get(k) {
            Some(&f) => format!("{} {}", k + 1, name(f)),
            None if single => data.class_names[k].clone(),
            None => format!("{} {}", if plan.filters { "filter" } else { "unit" }, k + 1),
        })
        .collect();
    let grid = ImageGrid {
        title: if plan.filters {
            format!("Filters of {}", first.prefix)
        } else if single {
            "Weights into each class".to_string()
        } else {
            format!("Weights into the {units} hidden units")
        },
        images: imgs,
        width,
        height,
        cols: u.columns,
        colormap: ColorMap::Diverging,
        per_image: true,
        centre_on_mean: false,
        row_labels: vec![],
        captions,
        zoom: if plan.filters { (96 / height.max(1)).clamp(3, 16) } else { 4 },
    };
    let png = grid.png().map_err(|e| ctx.err("units", e))?;
    ctx.write("figure8_hidden_units.png", &png)?;
    ctx.report.set("units", json!({ "layer": first.prefix, "count": units, "filters": plan.filters }));
    let Some(w2) = w2 else {
        ctx.report.figure(
            "figure8_hidden_units.png",
            &format!("Figure 8: the weights of {what}{note} (blue negative, red positive)"),
        );
        let why = plan.no_table.expect("no table without a reason");
        ctx.report.section("Hidden units", format!("The weights of {what}{note} are drawn; no favoured class: {why}."));
        return Ok(());
    };
    ctx.report.figure(
        "figure8_hidden_units.png",
        "Figure 8: weights into each hidden unit (blue negative, red positive), captioned with the class it favours",
    );
    let next = w2.shape()[0];
    let mut table = String::from("| unit | favours | its output weights |\n| --- | --- | --- |\n");
    for (k, &f) in favours.iter().enumerate() {
        let ws: Vec<String> = (0..next).map(|j| format!("{}: {:.2}", name(j), w2.data()[j * units + k])).collect();
        table += &format!("| {} | **{}** | {} |\n", k + 1, name(f), ws.join(", "));
    }
    let mut counts = vec![0usize; next];
    favours.iter().for_each(|&f| counts[f] += 1);
    let summary: Vec<String> = (0..next).map(|j| format!("{} {}", name(j), counts[j])).collect();
    ctx.report.set("units_favour", json!(favours.iter().map(|&f| name(f)).collect::<Vec<_>>()));
    ctx.report.section(
        "Hidden units",
        format!(
            "Each unit's favoured class is the one whose output weight from it is largest. Units per class: {}.\n\n{table}",
            summary.join(", ")
        ),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{presets, Activation, LayerSpec, Window2d};

    #[test]
    fn plans_follow_the_first_layer() {
        let mlp = Sequential::new(&[1024], &presets::mlp(&[25], 6, Activation::Relu)).unwrap();
        let p = plan(&mlp, &[1, 32, 32], false).unwrap();
        assert_eq!(p, Plan { units: 25, filters: false, no_table: None });
        let tanh = Sequential::new(&[1024], &presets::mlp(&[25], 6, Activation::Tanh)).unwrap();
        assert!(plan(&tanh, &[1, 32, 32], false).unwrap().no_table.unwrap().contains("not one ReLU or sigmoid"));
        let linear = Sequential::new(&[784], &presets::mlp(&[], 10, Activation::Relu)).unwrap();
        let p = plan(&linear, &[1, 28, 28], false).unwrap();
        assert!(p.units == 10 && p.no_table.unwrap().contains("output layer"));
        assert!(plan(&linear, &[1, 28, 28], true).unwrap_err().contains("backbone's features"));
        let conv = Layer::Conv2d { out: 6, win: Window2d { kernel: 5, stride: 1, padding: 2 }, groups: 1, bias: true };
        let specs: Vec<LayerSpec> = [conv, Layer::Relu, Layer::Flatten, Layer::Linear { out: 10, bias: true }]
            .into_iter()
            .map(LayerSpec::new)
            .collect();
        let net = Sequential::new(&[3, 28, 28], &specs).unwrap();
        let p = plan(&net, &[3, 28, 28], false).unwrap();
        assert!(p.filters && p.units == 6);
        // Three input channels side by side, a zero column between them.
        let w: Vec<f32> = (0..6 * 3 * 25).map(|v| v as f32 + 1.0).collect();
        let (imgs, width, height, note) = images(&net.nodes[0], &w, &[3, 28, 28]);
        assert_eq!((imgs.len(), width, height), (6, 17, 5));
        assert!(note.contains("3 input channels"));
        assert_eq!((imgs[0][0], imgs[0][5], imgs[0][6], imgs[1][0]), (1.0, 0.0, 26.0, 76.0));
    }
}
