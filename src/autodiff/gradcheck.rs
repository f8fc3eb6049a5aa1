//! Gradient checking: the tape's gradients against central differences.
//!
//! `f` maps leaves to an output of any shape. The check draws a fixed random
//! cotangent `w` and compares the tape's gradient of `sum(w * f(x))` with
//! `(S(x + eps e_i) - S(x - eps e_i)) / 2 eps`, where `S(x) = sum(w * f(x))`
//! is accumulated in f64. Accumulating in f64 matters: the engine computes in
//! f32, and a scalar loss summed in f32 would lose the small differences that
//! finite differences measure. What remains is each output's own f32
//! rounding (about 1e-7 relative), divided by `2 eps`.
//!
//! Kinks (ReLU at 0, max-pool ties) make a central difference meaningless.
//! With `skip_kinks`, an element whose two one-sided slopes disagree by more
//! than the tolerance is counted as skipped rather than failed (as Caffe's
//! checker does).

use super::backward::Grads;
use super::tape::{Tape, Var};
use crate::error::{Error, Result};
use crate::params::Params;
use crate::tensor::{Rng, Tensor};

/// How [`gradcheck`] compares: the finite-difference step, the tolerance,
/// and which elements. The default suits f32 ops on values of order 1.
#[derive(Clone, Debug)]
pub struct GradcheckOptions {
    /// Step of the central difference.
    pub eps: f32,
    /// An element passes if `|analytic - numeric| <= atol + rtol * |numeric|`.
    pub atol: f64,
    /// Relative part of the tolerance (see `atol`).
    pub rtol: f64,
    /// Skip elements where the function has a kink within `eps`.
    pub skip_kinks: bool,
    /// Seed of the random cotangent.
    pub seed: u64,
    /// Check only these `(input, flat element)` pairs (all if `None`).
    pub elements: Option<Vec<(usize, usize)>>,
}

impl Default for GradcheckOptions {
    fn default() -> Self {
        GradcheckOptions { eps: 1e-2, atol: 1e-3, rtol: 3e-3, skip_kinks: false, seed: 0, elements: None }
    }
}

/// One compared element.
#[derive(Clone, Debug, PartialEq)]
pub struct GradEntry {
    /// Which input (its position, or the parameter's in name order).
    pub input: usize,
    /// The element's flat (row-major) index in that input.
    pub index: usize,
    /// The tape's gradient.
    pub analytic: f64,
    /// The central difference.
    pub numeric: f64,
}

impl GradEntry {
    /// `|analytic - numeric|`.
    pub fn abs_err(&self) -> f64 {
        (self.analytic - self.numeric).abs()
    }

    /// The absolute error relative to the larger of the two magnitudes.
    pub fn rel_err(&self) -> f64 {
        self.abs_err() / self.analytic.abs().max(self.numeric.abs()).max(1e-12)
    }
}

/// What [`gradcheck`] found. Its `Display` is a one-line summary naming
/// the worst element.
#[derive(Clone, Debug, Default)]
pub struct GradcheckReport {
    /// Elements compared.
    pub checked: usize,
    /// Elements skipped because the function has a kink there
    /// (`skip_kinks`).
    pub skipped_kinks: usize,
    /// The largest absolute error seen.
    pub max_abs_err: f64,
    /// The largest relative error seen.
    pub max_rel_err: f64,
    /// The entry with the largest absolute error.
    pub worst: Option<GradEntry>,
    /// Entries outside the tolerance.
    pub failures: Vec<GradEntry>,
}

impl GradcheckReport {
    /// Whether every compared element was within the tolerance.
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

impl std::fmt::Display for GradcheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} checked, {} skipped at kinks, {} failed; max abs err {:.3e}, max rel err {:.3e}",
            self.checked,
            self.skipped_kinks,
            self.failures.len(),
            self.max_abs_err,
            self.max_rel_err
        )?;
        if let Some(w) = &self.worst {
            write!(
                f,
                "; worst: input {} element {}: analytic {:.6e} vs numeric {:.6e}",
                w.input, w.index, w.analytic, w.numeric
            )?;
        }
        Ok(())
    }
}

/// Compare the tape's gradients of `f` at `inputs` with finite differences.
pub fn gradcheck(
    f: impl Fn(&Tape, &[Var]) -> Result<Var>,
    inputs: &[Tensor],
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    check_finite(inputs.iter().enumerate().map(|(i, x)| (format!("input {i}"), x)))?;
    let tape = Tape::new();
    let vars: Vec<Var> = inputs.iter().map(|x| tape.leaf(x.clone())).collect();
    let out = f(&tape, &vars)?;
    let (grads, w) = project_backward(&tape, &out, opts.seed)?;
    let analytic: Vec<Option<Tensor>> = vars.iter().map(|v| grads.get(v).cloned()).collect();
    let project = |xs: &[Tensor]| {
        let vs: Vec<Var> = xs.iter().map(|x| Var::constant(x.clone())).collect();
        dot(f(&Tape::inference(), &vs)?.value(), &w)
    };
    compare(inputs, &analytic, project, opts)
}

/// [`gradcheck`] for model code that reads its parameters by name: checks
/// the gradient of every tensor in `params` (inputs are numbered in name order).
pub fn gradcheck_params(
    f: impl Fn(&Tape, &Params) -> Result<Var>,
    params: &Params,
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    check_finite(params.iter().map(|(n, x)| (format!("parameter '{n}'"), x)))?;
    let tape = Tape::new();
    let out = f(&tape, params)?;
    let (grads, w) = project_backward(&tape, &out, opts.seed)?;
    let names: Vec<&str> = params.iter().map(|(n, _)| n).collect();
    let inputs: Vec<Tensor> = params.iter().map(|(_, t)| t.clone()).collect();
    let analytic: Vec<Option<Tensor>> = names.iter().map(|n| grads.by_name(n).cloned()).collect();
    let project = |xs: &[Tensor]| {
        let mut p = Params::new();
        names.iter().zip(xs).for_each(|(n, x)| p.insert(n, x.clone()));
        dot(f(&Tape::inference(), &p)?.value(), &w)
    };
    compare(&inputs, &analytic, project, opts)
}

fn check_finite<'a>(inputs: impl Iterator<Item = (String, &'a Tensor)>) -> Result<()> {
    for (what, x) in inputs {
        if let Some(j) = x.data().iter().position(|v| !v.is_finite()) {
            return Err(Error::Invalid {
                op: "gradcheck",
                message: format!("{what} holds a non-finite value {} at element {j}", x.data()[j]),
            });
        }
    }
    Ok(())
}

/// Backward of `sum(w * out)` for a seeded random cotangent `w`.
fn project_backward(tape: &Tape, out: &Var, seed: u64) -> Result<(Grads, Tensor)> {
    let w = Tensor::uniform(out.shape(), -1.0, 1.0, &mut Rng::new(seed));
    let projected = tape.mul(out, &Var::constant(w.clone()))?;
    let loss = tape.sum(&projected);
    Ok((tape.backward(&loss)?, w))
}

/// `sum(y * w)` in f64.
fn dot(y: &Tensor, w: &Tensor) -> Result<f64> {
    y.expect_same_shape(w, "gradcheck")?;
    Ok(y.data().iter().zip(w.data()).map(|(&a, &b)| a as f64 * b as f64).sum())
}

/// Central differences of `project` at `inputs`, against `analytic`.
fn compare(
    inputs: &[Tensor],
    analytic: &[Option<Tensor>],
    project: impl Fn(&[Tensor]) -> Result<f64>,
    opts: &GradcheckOptions,
) -> Result<GradcheckReport> {
    if !(opts.eps > 0.0 && opts.eps.is_finite()) {
        return Err(Error::Invalid { op: "gradcheck", message: format!("eps must be positive, got {}", opts.eps) });
    }
    let all: Vec<(usize, usize)>;
    let elements = match &opts.elements {
        Some(e) => e.as_slice(),
        None => {
            all = inputs.iter().enumerate().flat_map(|(i, x)| (0..x.numel()).map(move |j| (i, j))).collect();
            &all
        }
    };
    let mut report = GradcheckReport::default();
    let base = if opts.skip_kinks { project(inputs)? } else { 0.0 };
    let mut xs = inputs.to_vec();
    for &(i, j) in elements {
        if i >= xs.len() || j >= xs[i].numel() {
            return Err(Error::Invalid { op: "gradcheck", message: format!("element ({i}, {j}) does not exist") });
        }
        let x0 = xs[i].data()[j];
        // The step actually taken, after f32 rounding of x0 +- eps.
        let (hi, lo) = (x0 + opts.eps, x0 - opts.eps);
        xs[i].data_mut()[j] = hi;
        let up = project(&xs)?;
        xs[i].data_mut()[j] = lo;
        let down = project(&xs)?;
        xs[i].data_mut()[j] = x0;
        let numeric = (up - down) / (hi as f64 - lo as f64);
        let analytic = analytic[i].as_ref().map_or(0.0, |g| g.data()[j] as f64);
        let entry = GradEntry { input: i, index: j, analytic, numeric };
        let tol = |n: f64| opts.atol + opts.rtol * n.abs();
        if opts.skip_kinks {
            let right = (up - base) / (hi as f64 - x0 as f64);
            let left = (base - down) / (x0 as f64 - lo as f64);
            if (right - left).abs() > tol(numeric) {
                report.skipped_kinks += 1;
                continue;
            }
        }
        report.checked += 1;
        report.max_rel_err = report.max_rel_err.max(entry.rel_err());
        if report.worst.as_ref().is_none_or(|w| entry.abs_err() > w.abs_err()) {
            report.max_abs_err = entry.abs_err();
            report.worst = Some(entry.clone());
        }
        if entry.abs_err() > tol(numeric) {
            report.failures.push(entry);
        }
    }
    Ok(report)
}
