//! A cost surface over two weights: a colour map of the value, iso-lines
//! traced by marching squares, and optimisation paths drawn on top.

use super::{draw_err, encode_png, ensure_font, ColorMap, FONT};
use crate::error::{Error, Result};
use plotters::prelude::*;

/// A named path of (x, y) points.
#[derive(Clone, Debug)]
pub struct Path2 {
    /// Its name in the legend.
    pub name: String,
    /// The points, in order.
    pub points: Vec<(f64, f64)>,
}

/// A surface sampled on a grid, drawn as colour and iso-lines, with paths
/// on top. [`ContourPlot::png`] draws it.
#[derive(Clone, Debug)]
pub struct ContourPlot {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The x range the grid spans.
    pub x: (f64, f64),
    /// The y range the grid spans.
    pub y: (f64, f64),
    /// `ny` rows of `nx` values; row `r` is at y = y.0 + r * dy.
    pub values: Vec<f64>,
    /// Grid points along x.
    pub nx: usize,
    /// Grid points along y.
    pub ny: usize,
    /// Number of iso-lines.
    pub levels: usize,
    /// Paths drawn over the surface (optimisation trajectories).
    pub paths: Vec<Path2>,
}

/// Marching squares: segments where the bilinear surface crosses `level`.
fn iso_segments(v: &[f64], nx: usize, ny: usize, level: f64) -> Vec<[(f64, f64); 2]> {
    let mut segs = Vec::new();
    for r in 0..ny - 1 {
        for c in 0..nx - 1 {
            // Corners counter-clockwise from (c, r).
            let corners = [(c, r), (c + 1, r), (c + 1, r + 1), (c, r + 1)];
            let val = |k: usize| v[corners[k].1 * nx + corners[k].0];
            let mut pts = Vec::with_capacity(4);
            for k in 0..4 {
                let (a, b) = (val(k), val((k + 1) % 4));
                if (a < level) != (b < level) {
                    let t = (level - a) / (b - a);
                    let (p, q) = (corners[k], corners[(k + 1) % 4]);
                    pts.push((p.0 as f64 + t * (q.0 as f64 - p.0 as f64), p.1 as f64 + t * (q.1 as f64 - p.1 as f64)));
                }
            }
            // Two crossings: one segment; four (a saddle): two.
            for pair in pts.chunks_exact(2) {
                segs.push([pair[0], pair[1]]);
            }
        }
    }
    segs
}

impl ContourPlot {
    /// The plot as PNG bytes, `width x height` pixels; an error for a grid
    /// smaller than 2 x 2 or values that do not fill it.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>> {
        ensure_font();
        if self.nx < 2 || self.ny < 2 || self.values.len() != self.nx * self.ny {
            return Err(Error::Invalid {
                op: "contour",
                message: format!("{} values for a {}x{} grid", self.values.len(), self.nx, self.ny),
            });
        }
        let finite = self.values.iter().copied().filter(|v| v.is_finite());
        let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| (a.min(v), b.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let (dx, dy) = ((self.x.1 - self.x.0) / (self.nx - 1) as f64, (self.y.1 - self.y.0) / (self.ny - 1) as f64);
        let mut buf = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let mut chart = ChartBuilder::on(&root)
                .caption(&self.title, (FONT, 22))
                .margin(12)
                .x_label_area_size(42)
                .y_label_area_size(64)
                .build_cartesian_2d(self.x.0 - dx / 2.0..self.x.1 + dx / 2.0, self.y.0 - dy / 2.0..self.y.1 + dy / 2.0)
                .map_err(draw_err)?;
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(&self.x_label)
                .y_desc(&self.y_label)
                .label_style((FONT, 14))
                .axis_desc_style((FONT, 16))
                .draw()
                .map_err(draw_err)?;
            let cells = (0..self.ny).flat_map(|r| (0..self.nx).map(move |c| (r, c)));
            chart
                .draw_series(cells.map(|(r, c)| {
                    let (x, y) = (self.x.0 + c as f64 * dx, self.y.0 + r as f64 * dy);
                    let t = (self.values[r * self.nx + c] - lo) / span;
                    Rectangle::new(
                        [(x - dx / 2.0, y - dy / 2.0), (x + dx / 2.0, y + dy / 2.0)],
                        ColorMap::Viridis.color(t).filled(),
                    )
                }))
                .map_err(draw_err)?;
            let to_xy = |(c, r): (f64, f64)| (self.x.0 + c * dx, self.y.0 + r * dy);
            for l in 1..=self.levels {
                let level = lo + span * l as f64 / (self.levels + 1) as f64;
                for s in iso_segments(&self.values, self.nx, self.ny, level) {
                    chart.draw_series(LineSeries::new([to_xy(s[0]), to_xy(s[1])], WHITE.mix(0.7))).map_err(draw_err)?;
                }
            }
            let colors = [RGBColor(255, 80, 40), RGBColor(255, 255, 255), RGBColor(0, 0, 0)];
            for (i, p) in self.paths.iter().enumerate() {
                let color = colors[i % colors.len()];
                chart
                    .draw_series(LineSeries::new(p.points.clone(), color.stroke_width(2)))
                    .map_err(draw_err)?
                    .label(&p.name)
                    .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], color.filled()));
                chart.draw_series(p.points.iter().map(|&q| Circle::new(q, 2, color.filled()))).map_err(draw_err)?;
            }
            if !self.paths.is_empty() {
                chart
                    .configure_series_labels()
                    .background_style(WHITE.mix(0.85))
                    .border_style(BLACK)
                    .label_font((FONT, 14))
                    .draw()
                    .map_err(draw_err)?;
            }
            root.present().map_err(draw_err)?;
        }
        Ok(encode_png(width, height, buf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_lines_of_a_bowl_are_closed_rings() {
        let n = 21;
        let v: Vec<f64> =
            (0..n * n).map(|k| ((k % n) as f64 - 10.0).powi(2) + ((k / n) as f64 - 10.0).powi(2)).collect();
        let segs = iso_segments(&v, n, n, 25.0);
        // Every segment end lies at distance ~5 from the centre.
        for s in &segs {
            for p in s {
                let d = ((p.0 - 10.0).powi(2) + (p.1 - 10.0).powi(2)).sqrt();
                assert!((d - 5.0).abs() < 0.3, "{p:?} at {d}");
            }
        }
        assert!(segs.len() > 20);
        let plot = ContourPlot {
            title: "bowl".into(),
            x_label: "w1".into(),
            y_label: "w2".into(),
            x: (-1.0, 1.0),
            y: (-1.0, 1.0),
            values: v,
            nx: n,
            ny: n,
            levels: 6,
            paths: vec![Path2 { name: "descent".into(), points: vec![(0.9, 0.9), (0.5, 0.4), (0.0, 0.0)] }],
        };
        assert!(plot.png(480, 400).is_ok());
    }
}
