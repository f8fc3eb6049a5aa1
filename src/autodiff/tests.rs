//! Every backward rule against finite differences, on random shapes and
//! values (proptest), plus fan-out, the inference path and bad input.

use super::gradcheck::{gradcheck, GradcheckOptions};
use super::{Reduction, Tape, Targets, Var};
use crate::error::Result;
use crate::gemm::Transpose;
use crate::tensor::{Rng, Tensor};
use proptest::prelude::*;

/// Tolerances tight enough that a 1% error in any gradient element of size
/// >= 0.07 fails (see `checker_catches_a_one_percent_error`).
fn opts() -> GradcheckOptions {
    GradcheckOptions { atol: 5e-4, rtol: 2e-3, ..GradcheckOptions::default() }
}

fn rand(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    Tensor::uniform(shape, lo, hi, &mut Rng::new(seed))
}

/// Values in [lo, hi] with a random sign: away from zero (kinks, poles).
fn away_from_zero(shape: &[usize], lo: f32, hi: f32, seed: u64) -> Tensor {
    let mut r = Rng::new(seed);
    let data = (0..shape.iter().product::<usize>())
        .map(|_| {
            let m = lo + (hi - lo) * r.uniform();
            if r.uniform() < 0.5 {
                -m
            } else {
                m
            }
        })
        .collect();
    Tensor::from_vec(data, shape).unwrap()
}

fn assert_grads(f: impl Fn(&Tape, &[Var]) -> Result<Var>, inputs: &[Tensor]) {
    let report = gradcheck(f, inputs, &opts()).unwrap();
    assert!(report.checked > 0 || inputs.iter().all(|x| x.numel() == 0));
    assert!(report.passed(), "{report}\nfailures: {:?}", &report.failures[..report.failures.len().min(5)]);
}

fn transpose() -> impl Strategy<Value = Transpose> {
    prop_oneof![Just(Transpose::No), Just(Transpose::Yes)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn matmul(m in 1usize..5, k in 1usize..6, n in 1usize..5, ta in transpose(), tb in transpose(), seed in any::<u64>()) {
        let a_shape = if ta == Transpose::No { [m, k] } else { [k, m] };
        let b_shape = if tb == Transpose::No { [k, n] } else { [n, k] };
        let a = rand(&a_shape, -1.0, 1.0, seed);
        let b = rand(&b_shape, -1.0, 1.0, seed ^ 1);
        assert_grads(|t, v| t.matmul_t(&v[0], ta, &v[1], tb), &[a, b]);
    }

    #[test]
    fn binary_ops_with_broadcasting(r in 1usize..4, c in 1usize..5, which in 0usize..4, form in 0usize..4, seed in any::<u64>()) {
        let a = rand(&[r, c], -2.0, 2.0, seed);
        // Same shape, a bias row, a column, a scalar.
        let b_shape: Vec<usize> = match form { 0 => vec![r, c], 1 => vec![c], 2 => vec![r, 1], _ => vec![] };
        let b = away_from_zero(&b_shape, 0.5, 2.0, seed ^ 2);
        let f = move |t: &Tape, v: &[Var]| match which {
            0 => t.add(&v[0], &v[1]),
            1 => t.sub(&v[1], &v[0]),
            2 => t.mul(&v[0], &v[1]),
            _ => t.div(&v[0], &v[1]),
        };
        assert_grads(f, &[a, b]);
    }

    #[test]
    fn unary_ops(r in 1usize..4, c in 1usize..5, which in 0usize..7, seed in any::<u64>()) {
        // ReLU and log get inputs away from their kink / pole.
        let x = match which {
            3 => away_from_zero(&[r, c], 0.05, 2.0, seed),
            4 => rand(&[r, c], 0.3, 3.0, seed),
            _ => rand(&[r, c], -2.0, 2.0, seed),
        };
        let f = move |t: &Tape, v: &[Var]| -> Result<Var> {
            Ok(match which {
                0 => t.exp(&v[0]),
                1 => t.tanh(&v[0]),
                2 => t.sigmoid(&v[0]),
                3 => t.relu(&v[0]),
                4 => t.log(&v[0]),
                5 => t.scale(&v[0], -1.7),
                _ => t.add_scalar(&v[0], 0.3),
            })
        };
        assert_grads(f, &[x]);
    }

    #[test]
    fn reductions_and_reshape(d0 in 1usize..4, d1 in 1usize..4, d2 in 1usize..4, axis in 0usize..3, keep in any::<bool>(), which in 0usize..5, seed in any::<u64>()) {
        let x = rand(&[d0, d1, d2], -2.0, 2.0, seed);
        let f = move |t: &Tape, v: &[Var]| match which {
            0 => Ok(t.sum(&v[0])),
            1 => t.mean(&v[0]),
            2 => t.sum_axis(&v[0], axis, keep),
            3 => t.mean_axis(&v[0], axis, keep),
            _ => t.reshape(&v[0], &[d2, d0 * d1]),
        };
        assert_grads(f, &[x]);
    }

    #[test]
    fn softmax_family(r in 1usize..4, c in 1usize..6, which in 0usize..2, seed in any::<u64>()) {
        let x = rand(&[r, c], -3.0, 3.0, seed);
        let f = move |t: &Tape, v: &[Var]| if which == 0 { t.softmax(&v[0]) } else { t.log_softmax(&v[0]) };
        assert_grads(f, &[x]);
    }

    #[test]
    fn softmax_cross_entropy(r in 1usize..5, c in 1usize..6, mean in any::<bool>(), soft in any::<bool>(), seed in any::<u64>()) {
        let x = rand(&[r, c], -3.0, 3.0, seed);
        let mut rng = Rng::new(seed ^ 3);
        let targets = if soft {
            Targets::Probabilities(rand(&[r, c], 0.0, 1.0, seed ^ 4))
        } else {
            Targets::Classes((0..r).map(|_| rng.below(c)).collect())
        };
        let reduction = if mean { Reduction::Mean } else { Reduction::Sum };
        assert_grads(move |t, v| t.softmax_cross_entropy(&v[0], &targets, reduction), &[x]);
    }

    #[test]
    fn fused_linear_cross_entropy(n in 1usize..300, inputs in 1usize..5, out in 1usize..5, mean in any::<bool>(), soft in any::<bool>(), seed in any::<u64>()) {
        // n crosses the 128-row blocks of the fused pass. The loss is one f32
        // scalar, so its rounding (about 1e-7 of its size) is what the finite
        // difference sees: summed losses stay small (n <= 20) to keep that
        // below the tolerance; the equality test below covers large sums.
        let n = if mean { n } else { n % 20 + 1 };
        let x = rand(&[n, inputs], -1.0, 1.0, seed);
        let w = rand(&[out, inputs], -1.0, 1.0, seed ^ 8);
        let b = rand(&[out], -1.0, 1.0, seed ^ 9);
        let mut rng = Rng::new(seed ^ 10);
        let targets = if soft {
            Targets::Probabilities(rand(&[n, out], 0.0, 1.0, seed ^ 11))
        } else {
            Targets::Classes((0..n).map(|_| rng.below(out)).collect())
        };
        let reduction = if mean { Reduction::Mean } else { Reduction::Sum };
        assert_grads(|t, v| t.linear_cross_entropy(&v[0], &v[1], &v[2], &targets, reduction), &[x, w, b]);
    }

    #[test]
    fn conv2d_strides_paddings_groups(
        n in 1usize..3, groups in 1usize..3, cpg in 1usize..3, opg in 1usize..3,
        h in 1usize..8, w in 1usize..8, k in 1usize..5, stride in 1usize..4, padding in 0usize..3,
        bias in any::<bool>(), seed in any::<u64>(),
    ) {
        prop_assume!(h + 2 * padding >= k && w + 2 * padding >= k);
        let x = rand(&[n, groups * cpg, h, w], -1.0, 1.0, seed);
        let wt = rand(&[groups * opg, cpg, k, k], -1.0, 1.0, seed ^ 12);
        let b = rand(&[groups * opg], -1.0, 1.0, seed ^ 13);
        let f = |t: &Tape, v: &[Var]| t.conv2d(&v[0], &v[1], if bias { Some(&v[2]) } else { None }, stride, padding, groups);
        assert_grads(f, &[x, wt, b]);
    }

    #[test]
    fn max_pool2d_without_ties(n in 1usize..3, c in 1usize..3, h in 1usize..8, w in 1usize..8, k in 1usize..4, stride in 1usize..4, padding in 0usize..2, seed in any::<u64>()) {
        prop_assume!(2 * padding <= k && h + 2 * padding >= k && w + 2 * padding >= k);
        // Distinct values 0.05 apart: a step of eps = 0.01 never changes
        // which input is the maximum (no kinks inside the difference).
        let count = n * c * h * w;
        let mut order: Vec<usize> = (0..count).collect();
        Rng::new(seed).shuffle(&mut order);
        let x = Tensor::from_vec(order.iter().map(|&i| i as f32 * 0.05 - 1.0).collect(), &[n, c, h, w]).unwrap();
        assert_grads(|t, v| t.max_pool2d(&v[0], k, stride, padding), &[x]);
    }

    #[test]
    fn avg_pool2d_strides_paddings(n in 1usize..3, c in 1usize..3, h in 1usize..9, w in 1usize..9, k in 1usize..5, stride in 1usize..5, padding in 0usize..3, seed in any::<u64>()) {
        prop_assume!(2 * padding <= k && h + 2 * padding >= k && w + 2 * padding >= k);
        // Linear: no kinks, any values.
        let x = rand(&[n, c, h, w], -1.0, 1.0, seed);
        assert_grads(|t, v| t.avg_pool2d(&v[0], k, stride, padding), &[x]);
    }

    #[test]
    fn dropout_in_training(r in 1usize..5, c in 1usize..6, p in 0.0f32..0.9, seed in any::<u64>()) {
        let x = rand(&[r, c], -1.0, 1.0, seed);
        // The same mask on every evaluation: the rng is made inside.
        assert_grads(move |t, v| t.dropout(&v[0], p, true, &mut Rng::new(seed)), &[x]);
    }

    #[test]
    fn two_layer_network_with_fan_out(n in 1usize..4, seed in any::<u64>()) {
        // x is used twice (fan-out) and the hidden layer feeds two branches.
        let x = rand(&[n, 3], -1.0, 1.0, seed);
        let w1 = rand(&[3, 4], -1.0, 1.0, seed ^ 5);
        let b1 = rand(&[4], -0.5, 0.5, seed ^ 6);
        let w2 = rand(&[4, 2], -1.0, 1.0, seed ^ 7);
        let f = |t: &Tape, v: &[Var]| {
            let h = t.tanh(&t.add(&t.matmul(&v[0], &v[1])?, &v[2])?);
            let y = t.matmul(&h, &v[3])?;
            let skip = t.sum_axis(&t.mul(&v[0], &v[0])?, 1, true)?;
            t.add(&t.add(&y, &skip)?, &t.sigmoid(&t.sum_axis(&h, 1, true)?))
        };
        assert_grads(f, &[x, w1, b1, w2]);
    }
}

#[test]
fn fused_loss_equals_the_three_ops_it_replaces() {
    let (n, inputs, out) = (1000, 30, 10);
    let x = rand(&[n, inputs], 0.0, 1.0, 1);
    let w = rand(&[out, inputs], -1.0, 1.0, 2);
    let b = rand(&[out], -1.0, 1.0, 3);
    let targets = Targets::Classes((0..n).map(|i| i % out).collect());
    let run = |fused: bool| {
        let tape = Tape::new();
        let (xv, wv, bv) = (tape.leaf(x.clone()), tape.leaf(w.clone()), tape.leaf(b.clone()));
        let loss = if fused {
            tape.linear_cross_entropy(&xv, &wv, &bv, &targets, Reduction::Sum).unwrap()
        } else {
            let z = tape.add(&tape.matmul_t(&xv, Transpose::No, &wv, Transpose::Yes).unwrap(), &bv).unwrap();
            tape.softmax_cross_entropy(&z, &targets, Reduction::Sum).unwrap()
        };
        let g = tape.backward(&loss).unwrap();
        let grads: Vec<Tensor> = [&xv, &wv, &bv].iter().map(|v| g.get(v).unwrap().clone()).collect();
        (loss.value().item().unwrap(), grads)
    };
    let ((l1, g1), (l2, g2)) = (run(true), run(false));
    assert!((l1 - l2).abs() <= 1e-5 * l2.abs(), "{l1} vs {l2}");
    for (a, b) in g1.iter().zip(&g2) {
        for (x, y) in a.data().iter().zip(b.data()) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()), "{x} vs {y}");
        }
    }
    // On an inference tape: the same loss, nothing recorded.
    let tape = Tape::inference();
    let c = |t: &Tensor| Var::constant(t.clone());
    let l = tape.linear_cross_entropy(&c(&x), &c(&w), &c(&b), &targets, Reduction::Sum).unwrap();
    assert_eq!(l.value().item().unwrap(), l1);
    assert!(tape.is_empty());
}

#[test]
fn checker_catches_a_one_percent_error() {
    // The tape sees a gradient 1% too large; the finite differences see the
    // true function. Gradients here are O(0.1..2).
    let x = rand(&[3, 4], 0.1, 2.0, 1);
    let wrong = |t: &Tape, v: &[Var]| -> Result<Var> {
        let scale = if t.is_recording() { 1.01 } else { 1.0 };
        Ok(t.scale(&t.tanh(&v[0]), scale))
    };
    let report = gradcheck(wrong, &[x], &opts()).unwrap();
    assert!(!report.passed(), "a 1% error went unnoticed: {report}");
}

#[test]
fn conv_fan_out_and_a_small_cnn() {
    // x feeds two convolutions; pooling and a linear head on top.
    let x = rand(&[2, 2, 7, 6], -1.0, 1.0, 1);
    let w1 = rand(&[3, 2, 3, 3], -0.5, 0.5, 2);
    let w2 = rand(&[3, 2, 1, 1], -0.5, 0.5, 3);
    let head = rand(&[5, 3 * 4 * 3], -0.5, 0.5, 4);
    let f = |t: &Tape, v: &[Var]| {
        let a = t.conv2d(&v[0], &v[1], None, 1, 1, 1)?;
        let b = t.conv2d(&v[0], &v[2], None, 1, 0, 1)?;
        let h = t.tanh(&t.add(&a, &b)?);
        let p = t.max_pool2d(&h, 3, 2, 1)?;
        let flat = t.reshape(&p, &[2, 36])?;
        t.matmul_t(&flat, Transpose::No, &v[3], Transpose::Yes)
    };
    let report = gradcheck(f, &[x, w1, w2, head], &GradcheckOptions { skip_kinks: true, ..opts() }).unwrap();
    assert!(report.passed() && report.checked > 100, "{report}");
}

#[test]
fn a_batch_in_uneven_chunks_gives_each_image_its_own_output() {
    // 16 x 16 outputs: 4 images share a product, 10 images make chunks of
    // 3, 3, 3 and 1 (the last uses a prefix of the chunk's offsets).
    let tape = Tape::inference();
    let x = rand(&[10, 2, 16, 16], -1.0, 1.0, 3);
    let w = Var::constant(rand(&[5, 2, 3, 3], -1.0, 1.0, 4));
    let all = tape.conv2d(&Var::constant(x.clone()), &w, None, 1, 1, 1).unwrap();
    let image = 2 * 16 * 16;
    for i in 0..10 {
        let one = Tensor::from_vec(x.data()[i * image..(i + 1) * image].to_vec(), &[1, 2, 16, 16]).unwrap();
        let y = tape.conv2d(&Var::constant(one), &w, None, 1, 1, 1).unwrap();
        assert_eq!(y.value().data(), &all.value().data()[i * 5 * 256..(i + 1) * 5 * 256], "image {i}");
    }
}

#[test]
fn conv_and_pool_shapes_and_errors() {
    let tape = Tape::inference();
    let x = Var::constant(Tensor::zeros(&[1, 3, 227, 227]));
    let w = Var::constant(Tensor::zeros(&[64, 3, 11, 11]));
    let y = tape.conv2d(&x, &w, None, 4, 2, 1).unwrap();
    assert_eq!(y.shape(), &[1, 64, 56, 56]);
    assert_eq!(tape.max_pool2d(&y, 3, 2, 0).unwrap().shape(), &[1, 64, 27, 27]);
    let err = tape.conv2d(&x, &Var::constant(Tensor::zeros(&[64, 2, 11, 11])), None, 4, 2, 1).unwrap_err();
    assert!(err.to_string().contains("conv2d: shape mismatch"), "{err}");
    let small = Var::constant(Tensor::zeros(&[1, 1, 2, 2]));
    let err = tape.max_pool2d(&small, 3, 1, 0).unwrap_err();
    assert!(err.to_string().contains("does not fit a 2x2 input"), "{err}");
    assert!(tape.max_pool2d(&small, 2, 1, 2).is_err());
    assert_eq!(tape.avg_pool2d(&y, 3, 2, 1).unwrap().shape(), &[1, 64, 28, 28]);
    let err = tape.avg_pool2d(&small, 3, 1, 0).unwrap_err();
    assert!(
        err.to_string().contains("avg_pool2d: a 3x3 window (stride 1, padding 0) does not fit a 2x2 input"),
        "{err}"
    );
    let err = tape.avg_pool2d(&small, 2, 1, 2).unwrap_err();
    assert!(err.to_string().contains("padding 2 is more than half the 2x2 window"), "{err}");
    assert!(tape.avg_pool2d(&small, 2, 0, 0).is_err(), "stride 0");
    assert!(tape.avg_pool2d(&Var::constant(Tensor::zeros(&[2, 2])), 1, 1, 0).is_err(), "not 4-d");
    assert!(tape.dropout(&small, 1.0, true, &mut Rng::new(0)).is_err());
}

#[test]
fn fan_out_accumulates() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(vec![3.0], &[1]).unwrap());
    let y = tape.add(&tape.mul(&x, &x).unwrap(), &x).unwrap(); // x^2 + x
    let loss = tape.sum(&y);
    let g = tape.backward(&loss).unwrap();
    assert_eq!(g.get(&x).unwrap().data(), &[7.0]);
}

#[test]
fn parameters_are_reachable_by_name() {
    let tape = Tape::new();
    let w = Tensor::full(&[2, 2], 0.5);
    let wv = tape.param("layer.weight", &w);
    let x = Var::constant(Tensor::full(&[1, 2], 1.0));
    let loss = tape.sum(&tape.matmul(&x, &wv).unwrap());
    let grads = tape.backward(&loss).unwrap();
    assert_eq!(grads.by_name("layer.weight").unwrap().data(), &[1.0; 4]);
    assert_eq!(grads.named().map(|(n, _)| n).collect::<Vec<_>>(), vec!["layer.weight"]);
    assert!(grads.by_name("missing").is_none());
}

#[test]
fn inference_tape_records_nothing() {
    let tape = Tape::inference();
    let w = tape.param("w", &Tensor::full(&[2, 2], 1.0));
    let y = tape.tanh(&tape.matmul(&w, &w).unwrap());
    assert!(!y.requires_grad());
    assert!(tape.is_empty());
}

#[test]
fn bad_input_is_an_error() {
    let tape = Tape::new();
    let a = tape.leaf(Tensor::zeros(&[2, 3]));
    let err = tape.matmul(&a, &a).unwrap_err();
    assert_eq!(err.to_string(), "matmul: shape mismatch: [2, 3] vs [2, 3]");
    let err = tape.backward(&a).unwrap_err();
    assert!(err.to_string().contains("the loss must be a scalar"), "{err}");
    let err = tape.softmax_cross_entropy(&a, &Targets::Classes(vec![0, 7]), Reduction::Sum).unwrap_err();
    assert!(err.to_string().contains("class index 7 is out of range for 3 classes"), "{err}");
    let nan = Tensor::from_vec(vec![1.0, f32::NAN], &[2]).unwrap();
    let err = gradcheck(|t, v| Ok(t.exp(&v[0])), &[nan], &opts()).unwrap_err();
    assert!(err.to_string().contains("non-finite value NaN at element 1"), "{err}");
}

#[test]
fn kinks_are_skipped_not_failed() {
    let x = Tensor::from_vec(vec![0.0, 1e-3, -0.5, 0.7], &[4]).unwrap();
    let report = gradcheck(|t, v| Ok(t.relu(&v[0])), &[x], &GradcheckOptions { skip_kinks: true, ..opts() }).unwrap();
    assert!(report.passed(), "{report}");
    assert_eq!(report.skipped_kinks, 2);
    assert_eq!(report.checked, 2);
}

/// A batch whose small outputs are multiplied in chunks of images side by
/// side (5 images of 16 x 20 outputs: chunks of 3 and 2) gives the values and
/// gradients of one image at a time; and the fused `conv2d_relu` of an
/// inference tape gives `relu(conv2d)`.
#[test]
fn chunked_images_match_one_image_at_a_time() {
    let (n, groups, cpg, opg) = (5, 2, 3, 4);
    let x = rand(&[n, groups * cpg, 18, 22], -1.0, 1.0, 1);
    let w = rand(&[groups * opg, cpg, 3, 3], -1.0, 1.0, 2);
    let b = rand(&[groups * opg], -1.0, 1.0, 3);
    let run = |x: Tensor| {
        let tape = Tape::new();
        let (xv, wv, bv) = (tape.leaf(x), tape.leaf(w.clone()), tape.leaf(b.clone()));
        let y = tape.conv2d(&xv, &wv, Some(&bv), 1, 0, groups).unwrap();
        // A loss that weights every output differently.
        let weights = Var::constant(rand(y.shape(), -1.0, 1.0, 4 + y.shape()[0] as u64));
        let g = tape.backward(&tape.sum(&tape.mul(&y, &weights).unwrap())).unwrap();
        let grad = |v: &Var| g.get(v).unwrap().clone();
        (y.value().clone(), grad(&xv), grad(&wv), grad(&bv), weights)
    };
    let (y, dx, dw, db, _) = run(x.clone());
    let image = x.numel() / n;
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-4 * (1.0 + q.abs()));
    let (mut dw_sum, mut db_sum) = (vec![0.0f32; dw.numel()], vec![0.0f32; db.numel()]);
    let out = y.numel() / n;
    for i in 0..n {
        let xi = Tensor::from_vec(x.data()[i * image..(i + 1) * image].to_vec(), &[1, groups * cpg, 18, 22]).unwrap();
        let tape = Tape::new();
        let (xv, wv, bv) = (tape.leaf(xi), tape.leaf(w.clone()), tape.leaf(b.clone()));
        let yi = tape.conv2d(&xv, &wv, Some(&bv), 1, 0, groups).unwrap();
        assert!(close(yi.value().data(), &y.data()[i * out..(i + 1) * out]), "image {i}: values differ");
        // The same output weights as the batch run gave this image.
        let weights = rand(y.shape(), -1.0, 1.0, 4 + n as u64);
        let wi = Tensor::from_vec(weights.data()[i * out..(i + 1) * out].to_vec(), yi.shape()).unwrap();
        let g = tape.backward(&tape.sum(&tape.mul(&yi, &Var::constant(wi)).unwrap())).unwrap();
        assert!(close(g.get(&xv).unwrap().data(), &dx.data()[i * image..(i + 1) * image]), "image {i}: dx differs");
        dw_sum.iter_mut().zip(g.get(&wv).unwrap().data()).for_each(|(s, v)| *s += v);
        db_sum.iter_mut().zip(g.get(&bv).unwrap().data()).for_each(|(s, v)| *s += v);
    }
    assert!(close(&dw_sum, dw.data()) && close(&db_sum, db.data()), "weight or bias gradients differ");

    let tape = Tape::inference();
    let (xv, wv, bv) = (Var::constant(x), Var::constant(w), Var::constant(b));
    let fused = tape.conv2d_relu(&xv, &wv, Some(&bv), 1, 0, groups).unwrap();
    assert_eq!(fused.value().data(), tape.conv2d(&xv, &wv, Some(&bv), 1, 0, groups).unwrap().value().relu().data());
}

/// Every op refuses a Var of another tape, or of a recording since cleared:
/// its node id would name some other node of this tape (a wrong gradient)
/// or none at all (a panic past the end). Ops that cannot return an error
/// make a node whose backward pass fails instead.
#[test]
fn vars_of_another_tape_or_recording_are_refused() {
    let x4 = || Tensor::full(&[1, 1, 4, 4], 0.5);
    let (ours, theirs) = (Tape::new(), Tape::new());
    // `theirs` has more nodes than `ours`: the foreign id is past our end.
    let _pad = (theirs.leaf(Tensor::zeros(&[1])), theirs.leaf(Tensor::zeros(&[1])));
    let m = ours.leaf(Tensor::full(&[2, 2], 1.0));
    let foreign = theirs.leaf(Tensor::full(&[2, 2], 1.0));
    let foreign4 = theirs.leaf(x4());
    let w4 = ours.leaf(Tensor::full(&[1, 1, 2, 2], 0.1));
    let labels = Targets::Classes(vec![0, 1]);
    type Attempt<'a> = Box<dyn Fn(&Var, &Var) -> Result<Var> + 'a>;
    let t = &ours;
    let attempts: Vec<(&str, Attempt)> = vec![
        ("matmul", Box::new(|a, b| t.matmul(a, b))),
        ("add", Box::new(|a, b| t.add(a, b))),
        ("mul", Box::new(|a, b| t.mul(b, a))),
        ("sum_axis", Box::new(|_, b| t.sum_axis(b, 0, false))),
        ("mean", Box::new(|_, b| t.mean(b))),
        ("reshape", Box::new(|_, b| t.reshape(b, &[4]))),
        ("softmax", Box::new(|_, b| t.softmax(b))),
        ("log_softmax", Box::new(|_, b| t.log_softmax(b))),
        ("softmax_cross_entropy", Box::new(|_, b| t.softmax_cross_entropy(b, &labels, Reduction::Sum))),
        (
            "linear_cross_entropy",
            Box::new(|a, b| t.linear_cross_entropy(a, b, &Var::constant(Tensor::zeros(&[2])), &labels, Reduction::Sum)),
        ),
        ("dropout", Box::new(|_, b| t.dropout(b, 0.5, true, &mut Rng::new(1)))),
        ("backward", Box::new(|_, b| t.backward(b).map(|_| b.clone()))),
    ];
    let conv: Vec<(&str, Attempt)> = vec![
        ("conv2d", Box::new(|_, b| t.conv2d(b, &w4, None, 1, 0, 1))),
        ("conv2d", Box::new(|_, b| t.conv2d(&Var::constant(x4()), &w4, Some(b), 1, 0, 1))),
        ("conv2d", Box::new(|_, b| t.conv2d_relu(b, &w4, None, 1, 0, 1))),
        ("max_pool2d", Box::new(|_, b| t.max_pool2d(b, 2, 2, 0))),
        ("avg_pool2d", Box::new(|_, b| t.avg_pool2d(b, 2, 2, 0))),
    ];
    for (name, attempt) in &attempts {
        let err = attempt(&m, &foreign).err().unwrap_or_else(|| panic!("{name} took a foreign Var"));
        assert!(err.to_string().contains(&format!("{name}: a Var recorded on another tape")), "{name}: {err}");
    }
    for (name, attempt) in &conv {
        let err = attempt(&m, &foreign4).err().unwrap_or_else(|| panic!("{name} took a foreign Var"));
        assert!(err.to_string().contains("another tape"), "{name}: {err}");
    }
    // The ops without a Result: the gradient through them fails instead.
    type Unary<'a> = Box<dyn Fn(&Var) -> Var + 'a>;
    let infallible: Vec<Unary> = vec![
        Box::new(|v| t.relu(v)),
        Box::new(|v| t.exp(v)),
        Box::new(|v| t.log(v)),
        Box::new(|v| t.tanh(v)),
        Box::new(|v| t.sigmoid(v)),
        Box::new(|v| t.scale(v, 2.0)),
        Box::new(|v| t.add_scalar(v, 2.0)),
        Box::new(|v| t.sum(v)),
    ];
    for f in &infallible {
        let y = f(&foreign);
        assert_eq!(y.value(), f(&Var::constant(foreign.value().clone())).value(), "the value is still right");
        let loss = t.add(&t.sum(&y), &t.sum(&m)).unwrap();
        let err = t.backward(&loss).unwrap_err();
        assert!(err.to_string().contains("another tape"), "{err}");
    }
    // The gradients of one tape do not answer for another's Vars (same id 0).
    let (a, b) = (Tape::new(), Tape::new());
    let (xa, xb) = (a.leaf(Tensor::full(&[1], 3.0)), b.leaf(Tensor::full(&[1], 5.0)));
    let grads = a.backward(&a.mul(&xa, &xa).unwrap()).unwrap();
    assert_eq!(grads.get(&xa).unwrap().data(), &[6.0]);
    assert!(grads.get(&xb).is_none(), "a Var of tape b got tape a's gradient");
    // On an inference tape a foreign Var is refused by the checked ops too.
    assert!(Tape::inference().add(&m, &m).is_err());
}

#[test]
fn vars_from_before_clear_are_refused() {
    let tape = Tape::new();
    let w = tape.leaf(Tensor::full(&[2, 2], 1.0));
    let loss = tape.sum(&tape.mul(&w, &w).unwrap());
    assert!(tape.backward(&loss).is_ok());
    tape.clear();
    let fresh = tape.leaf(Tensor::full(&[2, 2], 2.0));
    for err in [
        tape.mul(&fresh, &w).unwrap_err(),
        tape.backward(&loss).unwrap_err(),
        tape.backward(&tape.sum(&tape.relu(&w))).unwrap_err(),
    ] {
        assert!(err.to_string().contains("before this tape's clear()"), "{err}");
    }
    // Made again after clearing, the same computation works.
    let w = tape.leaf(Tensor::full(&[2, 2], 1.0));
    let grads = tape.backward(&tape.sum(&tape.mul(&w, &fresh).unwrap())).unwrap();
    assert_eq!(grads.get(&w).unwrap().data(), &[2.0; 4]);
}

/// Hostile pooling and convolution geometry is an error, not a wrapped size.
#[test]
fn geometry_that_overflows_is_an_error() {
    let tape = Tape::new();
    let x = tape.leaf(Tensor::full(&[1, 1, 4, 4], 1.0));
    // 2 * 2^63 wraps to 0, which passed the "at most half the window" test.
    let half = 1usize << (usize::BITS - 1);
    assert!(tape.max_pool2d(&x, 2, 2, half).is_err());
    assert!(tape.max_pool2d(&x, 3, 1, usize::MAX).is_err());
    assert!(tape.avg_pool2d(&x, 2, 2, half).is_err());
    assert!(tape.avg_pool2d(&x, 3, 1, usize::MAX).is_err());
    let w = Var::constant(Tensor::full(&[1, 1, 1, 1], 1.0));
    let err = tape.conv2d(&x, &w, None, 1, half, 1).unwrap_err();
    assert!(err.to_string().contains("too large"), "{err}");
    // 2^62-padded 4x4 input: the output's element count overflows.
    let err = tape.conv2d(&x, &w, None, 1, 1 << 61, 1).unwrap_err();
    assert!(err.to_string().contains("more elements than memory can hold"), "{err}");
}

/// Average pooling records only what a gradient will flow through, and an
/// all-padding window (an empty plane) averages to 0 with an empty gradient.
#[test]
fn avg_pool2d_recording_and_empty_planes() {
    let x = rand(&[2, 3, 5, 4], -1.0, 1.0, 7);
    let inference = Tape::inference();
    let y = inference.avg_pool2d(&inference.leaf(x.clone()), 2, 2, 1).unwrap();
    assert!(!y.requires_grad() && inference.is_empty());
    let tape = Tape::new();
    let constant = tape.avg_pool2d(&Var::constant(x.clone()), 2, 2, 1).unwrap();
    assert!(!constant.requires_grad() && tape.is_empty(), "an untracked input records nothing");
    assert_eq!(constant.value(), y.value());
    let xv = tape.leaf(x);
    let tracked = tape.avg_pool2d(&xv, 2, 2, 1).unwrap();
    assert!(tracked.requires_grad() && tape.len() == 2);
    assert_eq!(tracked.value(), y.value());

    let empty = tape.leaf(Tensor::zeros(&[2, 1, 0, 0]));
    let y = tape.avg_pool2d(&empty, 2, 1, 1).unwrap();
    assert_eq!((y.shape(), y.value().data()), (&[2, 1, 1, 1][..], &[0.0, 0.0][..]));
    let g = tape.backward(&tape.sum(&y)).unwrap();
    assert_eq!(g.get(&empty).unwrap().shape(), &[2, 1, 0, 0]);
}
