//! Figures as PNG bytes, drawn with `plotters` and an embedded DejaVu Sans,
//! so no system font or fontconfig is needed at build or run time.
//!
//! - `chart.rs`: line and scatter charts (learning curves, scaling plots);
//! - `grid.rs`: grids of small images (samples, weight images);
//! - `contour.rs`: a cost surface with iso-lines and trajectories;
//! - `confusion.rs`: a confusion matrix;
//! - `color.rs`: the colour maps.

mod chart;
mod color;
mod confusion;
mod contour;
pub(crate) mod grid;

pub use chart::{Axis, LineChart, Series, SeriesStyle};
pub use color::ColorMap;
pub use confusion::ConfusionPlot;
pub use contour::{ContourPlot, Path2};
pub use grid::ImageGrid;

use std::sync::OnceLock;

/// The font family name our figures ask for.
pub(crate) const FONT: &str = "sans-serif";

/// Register the embedded font with plotters (once per process).
pub(crate) fn ensure_font() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes: &'static [u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");
        plotters::style::register_font(FONT, plotters::style::FontStyle::Normal, bytes)
            .unwrap_or_else(|_| panic!("the embedded DejaVu Sans font is invalid"));
    });
}

/// Encode an RGB buffer as PNG.
pub(crate) fn encode_png(width: u32, height: u32, rgb: Vec<u8>) -> Vec<u8> {
    let img = image::RgbImage::from_raw(width, height, rgb).expect("buffer matches the size");
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageOutputFormat::Png).expect("PNG encoding to memory cannot fail");
    out.into_inner()
}

/// Put PNG images side by side (tops aligned, white where heights differ).
pub fn hstack_png(images: &[Vec<u8>]) -> crate::Result<Vec<u8>> {
    let decoded: Vec<image::RgbImage> = images
        .iter()
        .map(|b| image::load_from_memory(b).map(|i| i.to_rgb8()).map_err(draw_err))
        .collect::<crate::Result<_>>()?;
    let width = decoded.iter().map(|i| i.width()).sum();
    let height = decoded.iter().map(|i| i.height()).max().unwrap_or(1);
    let mut out = image::RgbImage::from_pixel(width, height, image::Rgb([255, 255, 255]));
    let mut x = 0;
    for img in &decoded {
        image::imageops::replace(&mut out, img, x as i64, 0);
        x += img.width();
    }
    Ok(encode_png(width, height, out.into_raw()))
}

/// A drawing failure inside plotters, as text (they carry no file).
pub(crate) fn draw_err<E: std::fmt::Debug>(e: E) -> crate::Error {
    crate::Error::Invalid { op: "plot", message: format!("{e:?}") }
}
