//! What the trained model gets wrong: after training, the test split of the
//! first data seed (the one whose weights are saved) goes through the model;
//! its confusion matrix becomes a figure, a table and `test_confusion` in
//! `metrics.json`, and the first misclassified examples a grid labelled
//! "true -> predicted".

use super::{network, train, Ctx};
use crate::data::Split;
use crate::pipeline::confusion::Confusion;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Pipeline;
use crate::plot::{ColorMap, ConfusionPlot, ImageGrid};

/// Misclassified examples drawn.
const SHOWN: usize = 32;
/// Largest side drawn per example (bigger images are subsampled).
const SIDE: usize = 64;

pub(crate) const CONFUSION_FIGURE: &str = "confusion.png";
pub(crate) const MISTAKES_FIGURE: &str = "mistakes.png";

pub(crate) fn run(ctx: &mut Ctx, p: &Pipeline) -> Result<(), RunError> {
    let Some(params) = ctx.params.clone() else { return Ok(()) };
    let m = p.model.as_ref().expect("validated: train has a model");
    let first = train::with_seed(p, train::seeds(p)[0]);
    let data = ctx.data_for(&first.data)?;
    if data.test.is_empty() {
        return Ok(());
    }
    let net = network(ctx, m, &data)?;
    let predicted = crate::nn::infer::classify(&net, &params, &data.test.images).map_err(|e| ctx.err("mistakes", e))?;
    let confusion =
        Confusion::new(&data.class_names, &data.test.labels, &predicted).map_err(|e| ctx.err("mistakes", e))?;
    let plot = ConfusionPlot {
        title: format!("Test confusion: {:.1} % right of {}", confusion.accuracy() * 100.0, confusion.total()),
        classes: confusion.classes.clone(),
        counts: confusion.counts.clone(),
    };
    let png = plot.png().map_err(|e| ctx.err("mistakes", e))?;
    ctx.write(CONFUSION_FIGURE, &png)?;
    ctx.report.set("test_confusion", confusion.json());
    ctx.report.section(
        "Mistakes",
        format!(
            "The trained model on the test split{}: per-class precision and recall, and the confusion matrix.\n\n{}",
            if train::seeds(p).len() > 1 { format!(" of data seed {}", first.data.seed) } else { String::new() },
            confusion.markdown()
        ),
    );
    ctx.report.figure(CONFUSION_FIGURE, "Test confusion matrix: rows are true classes, columns predicted ones");
    let wrong: Vec<usize> = (0..predicted.len()).filter(|&i| predicted[i] != data.test.labels[i]).take(SHOWN).collect();
    if wrong.is_empty() {
        return Ok(());
    }
    // The images themselves, also when the model saw backbone features.
    let images = if p.backbone.is_some() { ctx.images_for(&first.data)? } else { data.clone() };
    let grid = mistakes_grid(&images.test.select(&wrong), images.channels, images.side, &|i| {
        let (t, y) = (data.test.labels[wrong[i]], predicted[wrong[i]]);
        format!("{} -> {}", data.class_names[t], data.class_names[y])
    });
    let png = grid.png().map_err(|e| ctx.err("mistakes", e))?;
    ctx.write(MISTAKES_FIGURE, &png)?;
    ctx.report.figure(
        MISTAKES_FIGURE,
        &format!("The first {} misclassified test examples, labelled true -> predicted", wrong.len()),
    );
    Ok(())
}

/// Rows of `split` as a grid of gray images (colour averaged), at most
/// [`SIDE`] pixels a side, captioned by `caption(row)`.
pub(crate) fn mistakes_grid(
    split: &Split,
    channels: usize,
    side: usize,
    caption: &dyn Fn(usize) -> String,
) -> ImageGrid {
    let step = side.div_ceil(SIDE).max(1);
    let shown = side.div_ceil(step);
    let plane = side * side;
    let images: Vec<Vec<f32>> = split
        .images
        .data()
        .chunks(channels * plane)
        .map(|img| {
            let mut out = Vec::with_capacity(shown * shown);
            for y in (0..side).step_by(step) {
                for x in (0..side).step_by(step) {
                    let sum: f32 = (0..channels).map(|c| img[c * plane + y * side + x]).sum();
                    out.push(sum / channels as f32);
                }
            }
            out
        })
        .collect();
    let captions: Vec<String> = (0..images.len()).map(caption).collect();
    let longest = captions.iter().map(|c| c.chars().count()).max().unwrap_or(1);
    // Each cell wide enough for its caption (~7.5 px a character).
    let zoom = ((longest * 15 / 2 + 4).div_ceil(shown)).clamp(1, 8);
    let cols = images.len().clamp(1, 8);
    ImageGrid {
        title: "Misclassified: true -> predicted".into(),
        images,
        width: shown,
        height: shown,
        cols,
        colormap: ColorMap::Gray,
        per_image: true,
        centre_on_mean: false,
        row_labels: vec![],
        captions,
        zoom,
    }
}
