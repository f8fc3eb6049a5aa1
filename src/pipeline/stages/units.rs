//! Report part 9: the weights into each hidden unit, drawn as images, and the
//! class each unit favours, read off the output layer: the class whose output
//! weight from that unit is largest (the unit's activation, which is never
//! negative after ReLU, pushes that class's logit up the most).

use super::{network, params, Ctx};
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Units;
use crate::plot::{ColorMap, ImageGrid};
use serde_json::json;

pub(crate) fn run(ctx: &mut Ctx, u: &Units) -> Result<(), RunError> {
    let data = ctx.data()?;
    let model = ctx.pipeline().model.clone().expect("validated");
    let net = network(ctx, &model, &data)?;
    let layers = net.weighted();
    if layers.len() < 2 {
        return Err(ctx.err("units", "the units stage needs a hidden layer (model.kind = \"mlp\")"));
    }
    let params = params(ctx)?.clone();
    let w1 = params.get(&layers[0].param_name("weight")).map_err(|e| ctx.err("units", e))?;
    let w2 = params.get(&layers[1].param_name("weight")).map_err(|e| ctx.err("units", e))?;
    let (hidden, plane) = (w1.shape()[0], data.side * data.side);
    let next = w2.shape()[0];
    let mut favours = Vec::new();
    for unit in 0..hidden {
        let column: Vec<f32> = (0..next).map(|j| w2.data()[j * hidden + unit]).collect();
        let best = (0..next).fold(0, |b, j| if column[j] > column[b] { j } else { b });
        favours.push(best);
    }
    let name = |j: usize| if layers.len() == 2 { data.class_names[j].clone() } else { format!("unit {j}") };
    let grid = ImageGrid {
        title: format!("Weights into the {hidden} hidden units"),
        images: w1.data().chunks(data.inputs()).map(|r| r[..plane].to_vec()).collect(),
        width: data.side,
        height: data.side,
        cols: u.columns,
        colormap: ColorMap::Diverging,
        per_image: true,
        centre_on_mean: false,
        row_labels: vec![],
        captions: (0..hidden).map(|k| format!("{} {}", k + 1, name(favours[k]))).collect(),
        zoom: 4,
    };
    let png = grid.png().map_err(|e| ctx.err("units", e))?;
    ctx.write("figure8_hidden_units.png", &png)?;
    ctx.report.figure(
        "figure8_hidden_units.png",
        "Figure 8: weights into each hidden unit (blue negative, red positive), captioned with the class it favours",
    );
    let mut table = String::from("| unit | favours | its output weights |\n| --- | --- | --- |\n");
    for (k, &f) in favours.iter().enumerate() {
        let ws: Vec<String> = (0..next).map(|j| format!("{}: {:.2}", name(j), w2.data()[j * hidden + k])).collect();
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
