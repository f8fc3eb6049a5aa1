//! Evaluation shared over the ranks of a data-parallel run: every rank
//! holds the same weights, so each classifies its own contiguous share of
//! the rows and the classes are gathered in rank order. Without it every
//! rank would evaluate every row, on one thread each, the whole work N times.

use crate::nn::{Params, Sequential};
use crate::tensor::Tensor;
use crate::{Error, Result};

/// The class with the largest logit per row of `images` (`[rows, width]`),
/// the same on every rank; a rank may have no rows.
pub fn classify(net: &Sequential, params: &Params, images: &Tensor) -> Result<Vec<usize>> {
    let rows = images.shape().first().copied().unwrap_or(0);
    let part = super::slice(rows, super::rank(), super::size());
    let mine = crate::nn::infer::classify(net, params, &super::rows(images, part)?)?;
    let bytes = mine.iter().flat_map(|&c| (c as u32).to_le_bytes()).collect();
    let all = super::all_gather_bytes(bytes)
        .map_err(|e| Error::Invalid { op: "shared evaluation", message: e.to_string() })?;
    let classes: Vec<usize> =
        all.concat().chunks_exact(4).map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize).collect();
    if classes.len() != rows {
        return Err(Error::Invalid {
            op: "shared evaluation",
            message: format!("the ranks returned {} classes for {rows} rows", classes.len()),
        });
    }
    Ok(classes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// In one process it is the plain classification.
    #[test]
    fn one_rank_classifies_every_row() {
        let specs = crate::nn::presets::mlp(&[5], 3, crate::nn::Activation::Tanh);
        let net = Sequential::new(&[6], &specs).unwrap();
        let mut params = Params::new();
        let uniform = crate::nn::Init::Uniform { lo: -0.5, hi: 0.5 };
        net.init(&mut params, uniform, crate::nn::Init::Zeros, &mut crate::tensor::Rng::new(3));
        let x = Tensor::from_vec((0..60).map(|i| (i as f32 * 0.71).sin()).collect(), &[10, 6]).unwrap();
        assert_eq!(classify(&net, &params, &x).unwrap(), crate::nn::infer::classify(&net, &params, &x).unwrap());
    }
}
