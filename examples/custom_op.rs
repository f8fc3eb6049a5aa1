//! Add a new differentiable op from user code and check its gradient.
//!
//! ```sh
//! cargo run --release --example custom_op
//! ```
//!
//! The tape's set of primitives is closed: each has a variant of a private
//! `Op` enum and an arm in the one backward `match` (`src/autodiff/op.rs`,
//! `ops.rs`, `backward.rs`), so user code cannot register a new backward
//! rule. It does not need to: an op written as a composition of the tape's
//! primitives gets its gradient from theirs by the chain rule, as tinygrad
//! and micrograd build most of their ops. Here are two, GELU and a layer
//! normalisation, each checked with [`nabla::autodiff::gradcheck`] against
//! central finite differences. A third shows the classic mistake, computing
//! part of an op on `.value()` (off the tape), and that gradcheck catches it.
//!
//! When a composition is too slow (a fused loss, a convolution), the way
//! forward is a new primitive inside the crate: an `Op` variant saving what
//! the rule needs, a forward method on `Tape` in `ops.rs`, an arm in
//! `backward.rs`, and a gradcheck test in `autodiff/tests.rs`.

use nabla::autodiff::{gradcheck, GradcheckOptions, Tape, Var};
use nabla::{Result, Rng, Tensor};

/// GELU, tanh form: `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`.
/// `x` is used three times; the tape adds the three gradient paths.
fn gelu(tape: &Tape, x: &Var) -> Result<Var> {
    let x3 = tape.mul(&tape.mul(x, x)?, x)?;
    let inner = tape.scale(&tape.add(x, &tape.scale(&x3, 0.044715))?, (2.0 / std::f32::consts::PI).sqrt());
    let one_plus_tanh = tape.add_scalar(&tape.tanh(&inner), 1.0);
    Ok(tape.scale(&tape.mul(x, &one_plus_tanh)?, 0.5))
}

/// Normalise each row of `x [rows, d]` to mean 0 and variance 1. The row
/// statistics are `[rows, 1]` columns, broadcast back over the row; their
/// gradients are summed back to that shape by the tape.
fn layer_norm(tape: &Tape, x: &Var) -> Result<Var> {
    let centred = tape.sub(x, &tape.mean_axis(x, 1, true)?)?;
    let var = tape.mean_axis(&tape.mul(&centred, &centred)?, 1, true)?;
    // sqrt(var + eps) as exp(log(.) / 2): the tape has exp and log.
    let std = tape.exp(&tape.scale(&tape.log(&tape.add_scalar(&var, 1e-5)), 0.5));
    tape.div(&centred, &std)
}

/// GELU with its tanh factor computed on plain values: the factor becomes a
/// constant to the tape, so its share of the gradient is silently lost.
fn gelu_detached(tape: &Tape, x: &Var) -> Result<Var> {
    let v = x.value();
    let inner = v.add(&v.mul(v)?.mul(v)?.scale(0.044715))?.scale((2.0 / std::f32::consts::PI).sqrt());
    let one_plus_tanh = Var::constant(inner.tanh().add_scalar(1.0));
    Ok(tape.scale(&tape.mul(x, &one_plus_tanh)?, 0.5))
}

/// An op of one input, as the three above.
type UnaryOp = fn(&Tape, &Var) -> Result<Var>;

fn main() {
    if let Err(e) = run() {
        eprintln!("custom_op: {e}");
        std::process::exit(1);
    }
}

fn run() -> std::result::Result<(), Box<dyn std::error::Error>> {
    let mut rng = Rng::new(7);
    let x = Tensor::uniform(&[4, 6], -2.0, 2.0, &mut rng);
    let opts = GradcheckOptions::default();

    // gradcheck builds `f` on a recording tape, projects its output on a
    // random cotangent and compares the tape's gradient with differences.
    let ops: [(&str, UnaryOp, bool); 3] =
        [("gelu", gelu, true), ("layer_norm", layer_norm, true), ("gelu_detached", gelu_detached, false)];
    let mut surprises = Vec::new();
    for (name, op, should_pass) in ops {
        let report = gradcheck(|tape, v| op(tape, &v[0]), std::slice::from_ref(&x), &opts)?;
        let verdict = if report.passed() { "passed" } else { "FAILED" };
        println!("{name}: {verdict}: {report}");
        if report.passed() != should_pass {
            surprises.push(name);
        }
    }

    // The op in use: forward and backward through it like any other.
    let tape = Tape::new();
    let xv = tape.leaf(x);
    let loss = tape.sum(&gelu(&tape, &layer_norm(&tape, &xv)?)?);
    let grads = tape.backward(&loss)?;
    println!("loss {:.4}, d loss / d x has shape {:?}", loss.value().item()?, grads.get(&xv).map(Tensor::shape));

    match surprises.as_slice() {
        [] => {
            println!("as expected: the composed ops pass, and the detached one is caught");
            Ok(())
        }
        names => Err(format!("unexpected gradcheck result for {names:?}").into()),
    }
}
