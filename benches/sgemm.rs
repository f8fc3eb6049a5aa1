//! `cargo bench --bench sgemm`: nabla's SGEMM against `matrixmultiply`
//! (threading) and OpenBLAS (through numpy, `benches/peers/sgemm.py`, when
//! python3 has numpy) on the shapes this project runs, side by side: three
//! alternating rounds per shape, the median of each.
//!
//! Prints `bench=sgemm shape=MxKxN op=.. impl=.. value=.. unit=GFLOP/s` per
//! measurement (GFLOP/s = 2*M*N*K / median time) and `ratio` lines (peer
//! time / ours: above 1 = we are faster). On a CPU with AVX-512 it also
//! measures our AVX2 kernel against OpenBLAS forced to its Haswell kernel,
//! what users without AVX-512 get. `NABLA_BENCH_FILTER=1024` runs only
//! shapes whose name contains it.

mod common;

use common::{fill, median, median_seconds, runs_for};
use nabla::gemm::{sgemm, sgemm_with, KernelChoice, Transpose};
use std::process::Command;

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
        // AlexNet fc6's weight gradient at batch 32: dY^T (4096x32) * X (32x9216),
        // a 151 MB C written once.
        Shape { name: "4096x32x9216", m: 4096, k: 32, n: 9216, ta: Transpose::Yes },
    ]
}

/// OpenBLAS's median seconds for `s` over `runs` calls, or None without
/// python3 and numpy. `core`: OPENBLAS_CORETYPE (None: its own choice).
fn openblas(s: &Shape, runs: usize, core: Option<&str>) -> Option<f64> {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers/sgemm.py");
    let ta = if s.ta == Transpose::Yes { "T" } else { "N" };
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args([s.m, s.k, s.n].map(|v| v.to_string())).arg(ta).arg(runs.to_string());
    // The same two threads as ours; OpenBLAS picks its kernel unless told.
    cmd.env("OPENBLAS_NUM_THREADS", std::thread::available_parallelism().map_or(1, |n| n.get()).to_string());
    cmd.env_remove("OPENBLAS_CORETYPE").env_remove("OPENBLAS_L2_SIZE");
    if let Some(core) = core {
        cmd.env("OPENBLAS_CORETYPE", core);
    }
    let out = cmd.output().ok().filter(|o| o.status.success())?;
    String::from_utf8_lossy(&out.stdout).trim().strip_prefix("seconds=")?.parse().ok()
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
        // Interleave the implementations round by round so that drifts in
        // machine speed hit all alike.
        let avx2_too = KernelChoice::Avx512.is_available();
        let mut times: std::collections::BTreeMap<&str, Vec<f64>> = Default::default();
        let per = runs / 3 + 1;
        for _ in 0..3 {
            times.entry("nabla").or_default().push(median_seconds(per, || {
                sgemm(s.ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, n, 0.0, &mut c, n).unwrap()
            }));
            times.entry("matrixmultiply").or_default().push(median_seconds(per, || unsafe {
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
            if let Some(t) = openblas(&s, per, None) {
                times.entry("openblas").or_default().push(t);
            }
            if avx2_too {
                times.entry("nabla-avx2").or_default().push(median_seconds(per, || {
                    sgemm_with(KernelChoice::Avx2, s.ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, n, 0.0, &mut c, n)
                        .unwrap()
                }));
                if let Some(t) = openblas(&s, per, Some("Haswell")) {
                    times.entry("openblas-haswell").or_default().push(t);
                }
            }
        }
        let t: std::collections::BTreeMap<&str, f64> =
            times.into_iter().filter(|(_, v)| v.len() == 3).map(|(name, v)| (name, median(v))).collect();
        for (name, t) in &t {
            println!(
                "bench=sgemm shape={} op={op} impl={name} value={:.1} unit=GFLOP/s ms={:.3}",
                s.name,
                flops / t / 1e9,
                t * 1e3
            );
        }
        println!(
            "bench=sgemm shape={} op={op} impl=ratio value={:.2} unit=x",
            s.name,
            t["matrixmultiply"] / t["nabla"]
        );
        if let Some(o) = t.get("openblas") {
            println!("bench=sgemm shape={} op={op} impl=ratio-vs-openblas value={:.2} unit=x", s.name, o / t["nabla"]);
        }
        if let (Some(o), Some(ours)) = (t.get("openblas-haswell"), t.get("nabla-avx2")) {
            println!(
                "bench=sgemm shape={} op={op} impl=ratio-avx2-vs-openblas-haswell value={:.2} unit=x",
                s.name,
                o / ours
            );
        }
    }
}
