//! Report part 1: random training samples, one row per digit.

use super::Ctx;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::Samples;
use crate::plot::{ColorMap, ImageGrid};
use crate::tensor::Rng;

pub(crate) fn run(ctx: &mut Ctx, s: &Samples) -> Result<(), RunError> {
    let data = ctx.data()?;
    let mut rng = Rng::new(ctx.pipeline().seed);
    let px = data.train.images.data();
    let width = data.inputs();
    let mut images = Vec::new();
    for digit in 0..data.classes() {
        let mut of_digit: Vec<usize> = (0..data.train.len()).filter(|&i| data.train.labels[i] == digit).collect();
        if of_digit.len() < s.per_class {
            let name = &data.class_names[digit];
            return Err(ctx.err(
                "samples",
                format!("only {} training images of class {name}, {} asked", of_digit.len(), s.per_class),
            ));
        }
        rng.shuffle(&mut of_digit);
        images.extend(
            of_digit[..s.per_class].iter().map(|&i| px[i * width..(i + 1) * width][..data.side * data.side].to_vec()),
        );
    }
    let grid = ImageGrid {
        title: format!("{} random training samples of each class", s.per_class),
        images,
        width: data.side,
        height: data.side,
        cols: s.per_class,
        colormap: ColorMap::Gray,
        per_image: false,
        centre_on_mean: false,
        row_labels: data.class_names.clone(),
        captions: vec![],
        zoom: 2,
    };
    let png = grid.png().map_err(|e| ctx.err("samples", e))?;
    ctx.write("figure1_samples.png", &png)?;
    ctx.report.figure("figure1_samples.png", "Figure 1: random training samples, one row per digit");
    ctx.report.set("samples_per_class", s.per_class);
    Ok(())
}
