//! `cargo bench --bench backprop_scaling`: time every gradient of a chain of
//! N layers of K neurons by naive path sums, by backpropagation (the tape)
//! and by finite differences, over a grid of N (at K = 6) and of K (at N = 3);
//! naive only while a point takes under the budget. Prints
//! `bench=backprop_scaling method=.. N=.. K=.. value=.. unit=s` per point and
//! the fitted growth rates. `pipelines/part7.toml` draws the same on a
//! smaller grid.

use nabla::nn::chain::fit_line;
use nabla::pipeline::scaling::{time_gradient, Method};

const BUDGET_SECONDS: f64 = 5.0;

fn main() {
    let methods = [Method::Paths, Method::Tape, Method::Finite];
    for m in methods {
        let mut depth_points = Vec::new();
        for n in 1..=9 {
            let t = time_gradient(m, n, 6, 5);
            println!("bench=backprop_scaling method={} N={n} K=6 value={t:.4e} unit=s", m.name());
            depth_points.push((n as f64, t.ln()));
            if t * 6.0 > BUDGET_SECONDS {
                break;
            }
        }
        let mut width_points = Vec::new();
        for k in [2usize, 4, 8, 16, 32, 64, 128, 256, 512] {
            let t = time_gradient(m, 3, k, 5);
            println!("bench=backprop_scaling method={} N=3 K={k} value={t:.4e} unit=s", m.name());
            width_points.push(((k as f64).ln(), t.ln()));
            let growth = if width_points.len() > 1 {
                (t / (width_points[width_points.len() - 2].1).exp()).max(2.0)
            } else {
                32.0
            };
            if t * growth > BUDGET_SECONDS {
                break;
            }
        }
        let (xs, ys): (Vec<f64>, Vec<f64>) = depth_points.iter().copied().unzip();
        let (per_layer, _) = fit_line(&xs, &ys);
        // Over the three largest K, where the products (not per-op costs) dominate.
        let upper = &width_points[width_points.len().saturating_sub(3)..];
        let (xs, ys): (Vec<f64>, Vec<f64>) = upper.iter().copied().unzip();
        let (exponent, _) = fit_line(&xs, &ys);
        println!(
            "bench=backprop_scaling method={} fit=ln_time_per_layer K=6 value={per_layer:.3} unit=1 theory_naive={:.3}",
            m.name(),
            6f64.ln()
        );
        println!("bench=backprop_scaling method={} fit=exponent_of_K N=3 value={exponent:.3} unit=1", m.name());
    }
}
