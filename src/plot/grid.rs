//! A grid of small images with a title and row / column labels.

use super::{draw_err, encode_png, ensure_font, ColorMap, FONT};
use crate::error::{Error, Result};
use plotters::prelude::*;

/// Small images in a grid with a title, row labels and captions.
/// [`ImageGrid::png`] draws it.
#[derive(Clone, Debug)]
pub struct ImageGrid {
    /// Title above the grid.
    pub title: String,
    /// Row-major images, each `width * height` values.
    pub images: Vec<Vec<f32>>,
    /// Width of each image, in values.
    pub width: usize,
    /// Height of each image, in values.
    pub height: usize,
    /// Images per row of the grid.
    pub cols: usize,
    /// How values become colours.
    pub colormap: ColorMap,
    /// Scale each image to its own range (else one range for all).
    pub per_image: bool,
    /// With the diverging map, show each value relative to the image's mean
    /// (weights that start from U[0, 1) carry an offset that hides the pattern).
    pub centre_on_mean: bool,
    /// A label left of each row (may be empty).
    pub row_labels: Vec<String>,
    /// A caption under each image (may be empty).
    pub captions: Vec<String>,
    /// Pixels per image pixel.
    pub zoom: usize,
}

/// The bytes [`ImageGrid::png`] holds besides the grid itself, for `count`
/// images of `width x height` in `cols` columns at `zoom`, as f64 (for the
/// budget, before any image exists): the RGB bitmap (laid out as `png` lays
/// it out), the images joined and their finite values (for one colour
/// scale), and the PNG encoder's filtered rows and compressed output (at
/// most the bitmap again and a third of it).
pub(crate) fn png_bytes(count: f64, [width, height]: [f64; 2], cols: f64, zoom: f64, labels: [bool; 2]) -> f64 {
    let [captions, row_labels] = labels;
    let cols = cols.max(1.0);
    let rows = (count / cols).ceil();
    let (cw, ch) = (width * zoom, height * zoom);
    let caption_h = if captions { 18.0 } else { 0.0 };
    let left = if row_labels { 40.0 } else { 8.0 };
    let w = left + cols * (cw + 4.0) + 8.0;
    let h = 40.0 + rows * (ch + caption_h + 4.0) + 8.0;
    let bitmap = w * h * 3.0;
    bitmap * (1.0 + 0.95) + 2.0 * count * width * height * 4.0
}

impl ImageGrid {
    /// Map an image's values to [0, 1] (Gray, Viridis) or [-1, 1] (Diverging).
    /// Diverging maps are centred on `centre` (0, or each image's mean).
    fn normaliser(&self, values: &[f32]) -> impl Fn(f32) -> f64 {
        let finite: Vec<f32> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let (lo, hi) = finite.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
        let diverging = self.colormap == ColorMap::Diverging;
        let centre = if diverging && self.centre_on_mean && !finite.is_empty() {
            (finite.iter().map(|&v| v as f64).sum::<f64>() / finite.len() as f64) as f32
        } else {
            0.0
        };
        let span = if diverging { (lo - centre).abs().max((hi - centre).abs()) } else { hi - lo };
        let span = if span > 0.0 { span as f64 } else { 1.0 };
        move |v: f32| if diverging { (v - centre) as f64 / span } else { (v - lo) as f64 / span }
    }

    /// The grid as PNG bytes; an error if there are no images or columns, or
    /// an image is not `width x height`.
    pub fn png(&self) -> Result<Vec<u8>> {
        ensure_font();
        if self.images.is_empty() || self.cols == 0 || self.images.iter().any(|i| i.len() != self.width * self.height) {
            return Err(Error::Invalid {
                op: "image grid",
                message: format!("{} images do not all have {}x{} values", self.images.len(), self.width, self.height),
            });
        }
        let rows = self.images.len().div_ceil(self.cols);
        let (cw, ch) = (self.width * self.zoom, self.height * self.zoom);
        let caption_h = if self.captions.is_empty() { 0 } else { 18 };
        let gap = 4;
        let (left, top) = (if self.row_labels.is_empty() { 8 } else { 40 }, 40);
        let w = left + self.cols * (cw + gap) + 8;
        let h = top + rows * (ch + caption_h + gap) + 8;
        let mut buf = vec![255u8; w * h * 3];
        let global = self.normaliser(&self.images.concat());
        for (k, img) in self.images.iter().enumerate() {
            let own = self.normaliser(img);
            let (r, c) = (k / self.cols, k % self.cols);
            let (x0, y0) = (left + c * (cw + gap), top + r * (ch + caption_h + gap) + caption_h);
            for y in 0..ch {
                for x in 0..cw {
                    let v = img[(y / self.zoom) * self.width + x / self.zoom];
                    let t = if self.per_image { own(v) } else { global(v) };
                    let RGBColor(cr, cg, cb) = self.colormap.color(t);
                    let at = ((y0 + y) * w + x0 + x) * 3;
                    buf[at..at + 3].copy_from_slice(&[cr, cg, cb]);
                }
            }
        }
        {
            let root = BitMapBackend::with_buffer(&mut buf, (w as u32, h as u32)).into_drawing_area();
            let style = TextStyle::from((FONT, 20).into_font()).color(&BLACK);
            root.draw_text(&self.title, &style, (left as i32, 10)).map_err(draw_err)?;
            let small = TextStyle::from((FONT, 14).into_font()).color(&BLACK);
            for (r, label) in self.row_labels.iter().enumerate().take(rows) {
                let y = top + r * (ch + caption_h + gap) + caption_h + ch / 2 - 7;
                root.draw_text(label, &small, (8, y as i32)).map_err(draw_err)?;
            }
            for (k, cap) in self.captions.iter().enumerate().take(self.images.len()) {
                let (r, c) = (k / self.cols, k % self.cols);
                root.draw_text(
                    cap,
                    &small,
                    ((left + c * (cw + gap)) as i32, (top + r * (ch + caption_h + gap)) as i32),
                )
                .map_err(draw_err)?;
            }
            root.present().map_err(draw_err)?;
        }
        Ok(encode_png(w as u32, h as u32, buf))
    }
}
