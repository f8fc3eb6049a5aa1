//! Line and scatter charts.

use super::{draw_err, encode_png, ensure_font, FONT};
use crate::error::Result;
use plotters::prelude::*;

/// How a series is drawn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesStyle {
    /// Joined by lines.
    Line,
    /// Dots only.
    Points,
    /// Lines with dots.
    LineAndPoints,
}

/// One named set of points on a [`LineChart`].
#[derive(Clone, Debug)]
pub struct Series {
    /// Its name in the legend.
    pub name: String,
    /// The `(x, y)` points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// How it is drawn.
    pub style: SeriesStyle,
}

/// An axis scale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Axis {
    /// Evenly spaced values.
    #[default]
    Linear,
    /// Evenly spaced powers of ten.
    Log,
}

/// A chart with one or more series, a legend, and linear or log axes.
#[derive(Clone, Debug, Default)]
pub struct LineChart {
    /// Title above the plot.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// The series, drawn in order.
    pub series: Vec<Series>,
    /// Scale of the x axis.
    pub x_axis: Axis,
    /// Scale of the y axis.
    pub y_axis: Axis,
    /// Fixed y range (else fitted to the data).
    pub y_range: Option<(f64, f64)>,
}

const PALETTE: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn range(values: impl Iterator<Item = f64>, log: bool) -> (f64, f64) {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in values.filter(|v| v.is_finite() && (!log || *v > 0.0)) {
        lo = lo.min(v);
        hi = hi.max(v);
    }
    if !lo.is_finite() {
        return (if log { 0.1 } else { 0.0 }, 1.0);
    }
    if log {
        return (lo / 1.5, hi * 1.5);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    (lo - pad, hi + pad)
}

/// Tick labels: short, and powers of ten on log axes.
fn tick(v: f64, axis: Axis) -> String {
    if axis == Axis::Log {
        let e = v.log10();
        if (e - e.round()).abs() < 1e-6 {
            return format!("1e{}", e.round() as i32);
        }
        return format!("{v:.1e}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

impl LineChart {
    /// Draw the chart as a PNG of `width` x `height` pixels.
    pub fn png(&self, width: u32, height: u32) -> Result<Vec<u8>> {
        ensure_font();
        let mut buf = vec![0u8; (width * height * 3) as usize];
        {
            let root = BitMapBackend::with_buffer(&mut buf, (width, height)).into_drawing_area();
            root.fill(&WHITE).map_err(draw_err)?;
            let xs = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
            let ys = self.series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
            let (x0, x1) = range(xs, self.x_axis == Axis::Log);
            let (y0, y1) = self.y_range.unwrap_or_else(|| range(ys, self.y_axis == Axis::Log));
            let mut builder = ChartBuilder::on(&root);
            builder.caption(&self.title, (FONT, 22)).margin(12).x_label_area_size(42).y_label_area_size(64);
            // plotters types log and linear axes differently, hence four arms.
            macro_rules! draw {
                ($xr:expr, $yr:expr) => {{
                    let mut chart = builder.build_cartesian_2d($xr, $yr).map_err(draw_err)?;
                    let fx = |v: &f64| tick(*v, self.x_axis);
                    let fy = |v: &f64| tick(*v, self.y_axis);
                    chart
                        .configure_mesh()
                        .x_desc(&self.x_label)
                        .y_desc(&self.y_label)
                        .x_label_formatter(&fx)
                        .y_label_formatter(&fy)
                        .label_style((FONT, 14))
                        .axis_desc_style((FONT, 16))
                        .draw()
                        .map_err(draw_err)?;
                    for (i, s) in self.series.iter().enumerate() {
                        let color = PALETTE[i % PALETTE.len()];
                        let pts: Vec<(f64, f64)> =
                            s.points.iter().copied().filter(|p| p.0.is_finite() && p.1.is_finite()).collect();
                        let legend =
                            move |(x, y): (i32, i32)| Rectangle::new([(x, y - 4), (x + 16, y + 4)], color.filled());
                        if s.style != SeriesStyle::Points {
                            chart
                                .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                                .map_err(draw_err)?
                                .label(&s.name)
                                .legend(legend);
                        }
                        if s.style != SeriesStyle::Line {
                            let ann = chart
                                .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
                                .map_err(draw_err)?;
                            if s.style == SeriesStyle::Points {
                                ann.label(&s.name).legend(legend);
                            }
                        }
                    }
                    chart
                        .configure_series_labels()
                        .background_style(WHITE.mix(0.85))
                        .border_style(BLACK)
                        .label_font((FONT, 14))
                        .position(SeriesLabelPosition::LowerRight)
                        .draw()
                        .map_err(draw_err)?;
                }};
            }
            match (self.x_axis, self.y_axis) {
                (Axis::Linear, Axis::Linear) => draw!(x0..x1, y0..y1),
                (Axis::Log, Axis::Linear) => draw!((x0..x1).log_scale(), y0..y1),
                (Axis::Linear, Axis::Log) => draw!(x0..x1, (y0..y1).log_scale()),
                (Axis::Log, Axis::Log) => draw!((x0..x1).log_scale(), (y0..y1).log_scale()),
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
    fn draws_a_png_with_text_and_lines() {
        let chart = LineChart {
            title: "Learning curve".into(),
            x_label: "iteration".into(),
            y_label: "accuracy".into(),
            series: vec![
                Series {
                    name: "train".into(),
                    points: (0..20).map(|i| (i as f64, 1.0 - 1.0 / (i as f64 + 2.0))).collect(),
                    style: SeriesStyle::LineAndPoints,
                },
                Series { name: "validation".into(), points: vec![(0.0, 0.2), (19.0, 0.8)], style: SeriesStyle::Points },
            ],
            ..Default::default()
        };
        let png = chart.png(640, 480).unwrap();
        let img = image::load_from_memory(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (640, 480));
        // Something besides the white background was drawn: text, mesh, lines.
        let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 100)).count();
        assert!(dark > 500, "only {dark} dark pixels");
        let log = LineChart { x_axis: Axis::Log, y_axis: Axis::Log, ..chart };
        assert!(log.png(320, 240).is_ok());
    }
}
