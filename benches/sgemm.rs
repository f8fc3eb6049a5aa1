//! `cargo bench --bench sgemm`: nabla's SGEMM against `matrixmultiply`
//! (threading) on the shapes this project runs, side by side in one run.
//!
//! Prints `bench=sgemm shape=MxKxN op=.. impl=.. value=.. unit=GFLOP/s` per
//! measurement (GFLOP/s = 2*M*N*K / median time) and a `ratio` line.
//! `NABLA_BENCH_FILTER=1024` runs only shapes whose name contains it.

mod common;

use common::{fill, median_seconds, runs_for};
use nabla::gemm::{sgemm, Transpose};

struct Shape {
    name: &'static str,
    m: usize,
    k: usize,
    n: usize,
    ta: Transpose,
}

fn shapes() -> Vec<Shape> {
    let sq = |name, s| Shape { name, m: s, k: s, n: s, ta: Transpose::No };
    vec![
        sq("256x256x256", 256),
        sq("512x512x512", 512),
        sq("1024x1024x1024", 1024),
        sq("2048x2048x2048", 2048),
        // MNIST forward: X (60000x784) * W (784x10).
        Shape { name: "60000x784x10", m: 60000, k: 784, n: 10, ta: Transpose::No },
        // MNIST gradient: X^T (784x60000, X read in place) * D (60000x10).
        Shape { name: "784x60000x10", m: 784, k: 60000, n: 10, ta: Transpose::Yes },
        // AlexNet im2col: conv1 and conv2 of one 227x227 image.
        Shape { name: "64x363x3025", m: 64, k: 363, n: 3025, ta: Transpose::No },
        Shape { name: "192x1600x729", m: 192, k: 1600, n: 729, ta: Transpose::No },
    ]
}

fn main() {
    let filter = std::env::var("NABLA_BENCH_FILTER").unwrap_or_default();
    for s in shapes().into_iter().filter(|s| s.name.contains(&filter)) {
        let (m, k, n) = (s.m, s.k, s.n);
        let a = fill(m * k, 1);
        let b = fill(k * n, 2);
        let mut c = vec![0.0f32; m * n];
        // Row-major strides of stored A: m x k, or k x m when transposed.
        let (lda, rsa, csa) = match s.ta {
            Transpose::No => (k, k as isize, 1),
            Transpose::Yes => (m, 1, m as isize),
        };
        let flops = 2.0 * (m * n * k) as f64;
        let op = if s.ta == Transpose::Yes { "TN" } else { "NN" };
        let probe =
            median_seconds(1, || sgemm(s.ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, n, 0.0, &mut c, n).unwrap());
        let runs = runs_for(probe, 2.0);
        // Interleave the two implementations round by round so that drifts in
        // machine speed hit both alike.
        let mut ours = Vec::new();
        let mut theirs = Vec::new();
        for _ in 0..3 {
            ours.push(median_seconds(runs / 3 + 1, || {
                sgemm(s.ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, n, 0.0, &mut c, n).unwrap()
            }));
            theirs.push(median_seconds(runs / 3 + 1, || unsafe {
                matrixmultiply::sgemm(
                    m,
                    k,
                    n,
                    1.0,
                    a.as_ptr(),
                    rsa,
                    csa,
                    b.as_ptr(),
                    n as isize,
                    1,
                    0.0,
                    c.as_mut_ptr(),
                    n as isize,
                    1,
                )
            }));
        }
        ours.sort_by(f64::total_cmp);
        theirs.sort_by(f64::total_cmp);
        let (t_ours, t_theirs) = (ours[1], theirs[1]);
        for (name, t) in [("nabla", t_ours), ("matrixmultiply", t_theirs)] {
            println!(
                "bench=sgemm shape={} op={op} impl={name} value={:.1} unit=GFLOP/s ms={:.3}",
                s.name,
                flops / t / 1e9,
                t * 1e3
            );
        }
        println!("bench=sgemm shape={} op={op} impl=ratio value={:.2} unit=x", s.name, t_theirs / t_ours);
    }
}
