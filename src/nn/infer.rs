//! A trained network applied to many examples: logits in pieces small
//! enough to hold, the same pieces whoever asks (training's evaluation,
//! `nabla predict`, `nabla eval`), so they agree to the last bit.

use super::{Params, Sequential};
use crate::autodiff::{Tape, Var};
use crate::error::Result;
use crate::tensor::Tensor;

/// Activations one evaluation pass may hold at once (256 MB of f32): a
/// split goes through in as few pieces as fit (one, for the report's MLPs).
pub const EVAL_VALUES: usize = 1 << 26;

/// Rows per piece for `net` on examples `width` values wide.
pub fn piece_rows(net: &Sequential, width: usize, rows: usize) -> usize {
    let widest = net.nodes.iter().map(|n| n.output.iter().product::<usize>()).max().unwrap_or(1);
    (EVAL_VALUES / widest.max(width).max(1)).clamp(1, rows.max(1))
}

/// Logits `[rows, classes]` of `images` (`[rows, width]`), without dropout.
pub fn logits(net: &Sequential, params: &Params, images: &Tensor) -> Result<Tensor> {
    let (rows, width) = (images.shape()[0], images.shape().get(1).copied().unwrap_or(1));
    if rows == 0 {
        return Tensor::from_vec(vec![], &[0, net.output().iter().product()]);
    }
    let piece = piece_rows(net, width, rows);
    if piece >= rows {
        return Ok(net.forward(&Tape::inference(), params, &Var::constant(images.clone()), None)?.value().clone());
    }
    let mut out = Vec::new();
    let mut classes = 0;
    for start in (0..rows).step_by(piece) {
        let end = (start + piece).min(rows);
        let x = Tensor::from_vec(images.data()[start * width..end * width].to_vec(), &[end - start, width])?;
        let y = net.forward(&Tape::inference(), params, &Var::constant(x), None)?;
        classes = y.value().shape()[1];
        out.extend_from_slice(y.value().data());
    }
    Tensor::from_vec(out, &[rows, classes])
}

/// What [`classify`] holds for `rows` examples `width` values wide, besides
/// the examples themselves: a piece's copy when they go in pieces, the
/// piece's pass (see [`crate::nn::footprint`]), and the logits and classes
/// of every row.
pub fn footprint(net: &Sequential, rows: usize, width: usize, threads: usize) -> super::footprint::Footprint {
    let piece = piece_rows(net, width, rows);
    let mut f = net.inference_footprint(piece, threads);
    let copy = if piece < rows { piece as f64 * width as f64 * 4.0 } else { 0.0 };
    let classes = net.output().iter().map(|&d| d as f64).product::<f64>();
    // The logits grow in a vector (up to twice their size), then the classes.
    f.peak += copy + rows as f64 * (classes * 4.0 * 2.0 + 8.0);
    f
}

/// The class with the largest logit, per row.
pub fn classify(net: &Sequential, params: &Params, images: &Tensor) -> Result<Vec<usize>> {
    logits(net, params, images)?.argmax_axis(1)
}
