//! Colour maps from a value to RGB.

use plotters::style::RGBColor;

/// A map from a value to a colour.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ColorMap {
    /// Black (0) to white (1).
    Gray,
    /// Blue (negative) through white (0) to red (positive), symmetric in
    /// `[-1, 1]`: weights, whose sign matters.
    Diverging,
    /// Dark purple to yellow through blue and green (viridis-like), `[0, 1]`.
    Viridis,
}

fn lerp(a: (f64, f64, f64), b: (f64, f64, f64), t: f64) -> RGBColor {
    let c = |x: f64, y: f64| (255.0 * (x + (y - x) * t)).round().clamp(0.0, 255.0) as u8;
    RGBColor(c(a.0, b.0), c(a.1, b.1), c(a.2, b.2))
}

/// Piecewise-linear interpolation through evenly spaced stops, `t` in [0, 1].
fn stops(points: &[(f64, f64, f64)], t: f64) -> RGBColor {
    let t = t.clamp(0.0, 1.0) * (points.len() - 1) as f64;
    let i = (t.floor() as usize).min(points.len() - 2);
    lerp(points[i], points[i + 1], t - i as f64)
}

impl ColorMap {
    /// The colour of `v` (clamped to the map's range; a non-finite value as 0).
    pub fn color(self, v: f64) -> RGBColor {
        let v = if v.is_finite() { v } else { 0.0 };
        match self {
            ColorMap::Gray => stops(&[(0.0, 0.0, 0.0), (1.0, 1.0, 1.0)], v),
            ColorMap::Diverging => stops(
                &[(0.02, 0.19, 0.38), (0.26, 0.58, 0.76), (1.0, 1.0, 1.0), (0.84, 0.38, 0.30), (0.40, 0.0, 0.12)],
                (v + 1.0) / 2.0,
            ),
            ColorMap::Viridis => stops(
                &[
                    (0.267, 0.005, 0.329),
                    (0.230, 0.322, 0.546),
                    (0.128, 0.567, 0.551),
                    (0.369, 0.789, 0.383),
                    (0.993, 0.906, 0.144),
                ],
                v,
            ),
        }
    }
}
