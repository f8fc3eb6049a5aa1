//! A confusion matrix as a figure: one cell per (true, predicted) pair,
//! shaded by the fraction of the true class it holds, with its count.

use super::{draw_err, encode_png, ensure_font, FONT};
use crate::error::{Error, Result};
use plotters::prelude::*;

/// A confusion matrix to draw: rows are true classes, columns predicted.
#[derive(Clone, Debug)]
pub struct ConfusionPlot {
    /// The figure's title.
    pub title: String,
    /// Class names, in index order.
    pub classes: Vec<String>,
    /// `counts[true][predicted]`.
    pub counts: Vec<Vec<u64>>,
}

/// Most classes drawn with their names and counts; beyond, cells only.
const LABELLED: usize = 40;

impl ConfusionPlot {
    /// The figure as PNG bytes; an error if `counts` is not classes x classes.
    pub fn png(&self) -> Result<Vec<u8>> {
        ensure_font();
        let k = self.classes.len();
        if k == 0 || self.counts.len() != k || self.counts.iter().any(|r| r.len() != k) {
            return Err(Error::Invalid {
                op: "confusion plot",
                message: format!("{k} classes but a {}-row matrix", self.counts.len()),
            });
        }
        let labelled = k <= LABELLED;
        // Wide enough for the longest name at ~8 px a character (names are cut at 16).
        let name = |c: usize| -> String { self.classes[c].chars().take(16).collect() };
        let longest = (0..k).map(|c| name(c).chars().count()).max().unwrap_or(1);
        let cell = if labelled { (longest * 8 + 8).clamp(36, 136) } else { (800 / k).max(2) };
        let (left, top) = if labelled { (longest * 8 + 16, 76) } else { (16, 44) };
        let (w, h) = (left + k * cell + 16, top + k * cell + 36);
        let mut buf = vec![255u8; w * h * 3];
        let fractions: Vec<Vec<f64>> = self
            .counts
            .iter()
            .map(|row| {
                let n = row.iter().sum::<u64>().max(1) as f64;
                row.iter().map(|&c| c as f64 / n).collect()
            })
            .collect();
        for (t, row) in fractions.iter().enumerate() {
            for (p, &f) in row.iter().enumerate() {
                // White to dark blue; the square root lets small confusions show.
                let shade = f.sqrt();
                let mix = |hi: f64| (255.0 + (hi - 255.0) * shade).round() as u8;
                let (r, g, b) = (mix(8.0), mix(48.0), mix(107.0));
                for y in top + t * cell + 1..top + (t + 1) * cell {
                    for x in left + p * cell + 1..left + (p + 1) * cell {
                        buf[(y * w + x) * 3..(y * w + x) * 3 + 3].copy_from_slice(&[r, g, b]);
                    }
                }
            }
        }
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            let title = TextStyle::from((FONT, 20).into_font()).color(&BLACK);
            root.draw_text(&self.title, &title, (8, 8)).map_err(draw_err)?;
            let small = TextStyle::from((FONT, 13).into_font()).color(&BLACK);
            root.draw_text(
                "rows: true class, columns: predicted; shade: fraction of the row",
                &small,
                (8, h as i32 - 24),
            )
            .map_err(draw_err)?;
            if labelled {
                root.draw_text("predicted", &small, (left as i32, 36)).map_err(draw_err)?;
                for c in 0..k {
                    let x = (left + c * cell + 3) as i32;
                    root.draw_text(&name(c), &small, (x, top as i32 - 18)).map_err(draw_err)?;
                    let y = (top + c * cell + cell / 2 - 7) as i32;
                    root.draw_text(&name(c), &small, (8, y)).map_err(draw_err)?;
                }
                for (t, row) in self.counts.iter().enumerate() {
                    for (p, &n) in row.iter().enumerate() {
                        let dark = fractions[t][p] > 0.3;
                        let style = TextStyle::from((FONT, 13).into_font()).color(if dark { &WHITE } else { &BLACK });
                        let (x, y) = ((left + p * cell + 4) as i32, (top + t * cell + cell / 2 - 7) as i32);
                        root.draw_text(&n.to_string(), &style, (x, y)).map_err(draw_err)?;
                    }
                }
            }
            root.present().map_err(draw_err)?;
        }
        Ok(encode_png(w as u32, h as u32, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_a_decodable_png_and_refuses_ragged_matrices() {
        let plot = ConfusionPlot {
            title: "t".into(),
            classes: vec!["a".into(), "bb".into()],
            counts: vec![vec![3, 1], vec![0, 4]],
        };
        let png = plot.png().unwrap();
        let img = image::load_from_memory(&png).unwrap();
        assert!(img.width() > 60 && img.height() > 60);
        let ragged = ConfusionPlot { counts: vec![vec![1], vec![0, 1]], ..plot };
        assert!(ragged.png().is_err());
    }
}
