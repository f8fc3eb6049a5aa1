//! Where a network's time goes, layer by layer, as `caffe time` reports it:
//! each layer runs on its own small tape, on random inputs of its input
//! shape, and its forward pass and its backward pass are timed apart; the
//! whole network is then timed as evaluation and as a training step run it.
//!
//! Timing each layer alone needs no hook inside the tape: the layer is a
//! one-node [`Sequential`], so it runs exactly the code a network runs. Its
//! backward pass is seeded by `sum(output)`, whose own backward (a tensor of
//! ones of the output's shape) is timed on a bare leaf and subtracted.
//!
//! Every figure is the median over `iterations` runs after `warmup` runs.
//! Nothing here judges a time: they are noise on a loaded machine, and the
//! tests look only at the structure.

use super::layer::{numel, Layer};
use super::{Init, Params, Sequential};
use crate::autodiff::{Grads, Reduction, Tape, Targets, Var};
use crate::error::{Error, Result};
use crate::tensor::{Rng, Tensor};
use std::time::{Duration, Instant};

/// How many runs, on what batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimingOptions {
    /// Examples per run.
    pub batch: usize,
    /// Runs measured (the median is reported); at least 1.
    pub iterations: usize,
    /// Runs before those, not measured (caches, allocator, thread pool).
    pub warmup: usize,
    /// Seed of the random inputs, weights and dropout masks.
    pub seed: u64,
}

/// How a network is used, which decides what its layers are timed doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    /// Forward on a recording tape, then backward (a trained network).
    Training,
    /// Forward only, with nothing recorded (a fixed backbone, evaluation).
    Inference,
}

/// One layer's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerTiming {
    /// `layers.<index>` or the layer's name.
    pub prefix: String,
    /// The layer.
    pub layer: Layer,
    /// One example's input shape.
    pub input: Vec<usize>,
    /// One example's output shape.
    pub output: Vec<usize>,
    /// Its forward pass, on an inference tape.
    pub forward: Duration,
    /// None for [`Pass::Inference`].
    pub backward: Option<Duration>,
    /// Of the whole batch: [`Layer::flops`] times the batch.
    pub forward_flops: f64,
    /// Of the whole batch, by [`backward_flops`]; None for inference.
    pub backward_flops: Option<f64>,
    /// Whether the backward pass computed the gradient of the layer's input
    /// (not for the first layer of a trained network: its input is data).
    pub input_gradient: bool,
}

/// The whole network's figures.
#[derive(Clone, Debug, PartialEq)]
pub struct NetworkTiming {
    /// Forward on an inference tape, as evaluation runs it (a convolution
    /// followed by a ReLU is one fused pass there).
    pub forward_inference: Duration,
    /// Forward to the loss on a recording tape, as a training step runs it;
    /// None for [`Pass::Inference`]. The same for `backward` and `update`.
    pub forward_training: Option<Duration>,
    /// The backward pass from the loss.
    pub backward: Option<Duration>,
    /// The optimiser's step, when one was given.
    pub update: Option<Duration>,
}

/// Backward FLOPs of a layer for one example, by rule rather than count:
/// conv2d and linear do two products as large as their forward one (the
/// weight gradient, and the input gradient unless `input_gradient` is
/// false), so 2x their forward FLOPs, or 1x without an input gradient;
/// every other layer makes one pass over its output gradient, 1x.
pub fn backward_flops(layer: &Layer, input: &[usize], output: &[usize], input_gradient: bool) -> f64 {
    let forward = layer.flops(input, output);
    match layer {
        Layer::Conv2d { .. } | Layer::Linear { .. } if input_gradient => 2.0 * forward,
        _ => forward,
    }
}

/// Median of `f`'s measured times over `o.iterations` runs after `o.warmup`.
/// `f` returns the durations it measured itself, so its set-up is not timed.
fn median_of<const N: usize>(o: &TimingOptions, mut f: impl FnMut() -> Result<[Duration; N]>) -> Result<[Duration; N]> {
    for _ in 0..o.warmup {
        f()?;
    }
    let mut runs: Vec<[Duration; N]> = Vec::with_capacity(o.iterations);
    for _ in 0..o.iterations.max(1) {
        runs.push(f()?);
    }
    let mut out = [Duration::ZERO; N];
    for (k, slot) in out.iter_mut().enumerate() {
        let mut times: Vec<Duration> = runs.iter().map(|r| r[k]).collect();
        times.sort();
        let m = times.len() / 2;
        *slot = if times.len() % 2 == 1 { times[m] } else { (times[m - 1] + times[m]) / 2 };
    }
    Ok(out)
}

/// Time `f` once.
fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, Duration)> {
    let start = Instant::now();
    let v = f()?;
    Ok((v, start.elapsed()))
}

/// A random batch of examples of shape `example`.
fn batch_of(example: &[usize], batch: usize, rng: &mut Rng) -> Result<Tensor> {
    let mut shape = vec![batch];
    shape.extend(example);
    numel(&shape).map_err(|e| Error::Invalid { op: "timing", message: format!("a batch of {e}") })?;
    Ok(Tensor::uniform(&shape, -1.0, 1.0, rng))
}

/// Random weights for every parameter of `net` (timing does not depend on
/// their values, only on their shapes).
pub fn random_params(net: &Sequential, seed: u64) -> Params {
    let mut params = Params::new();
    net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(seed));
    params
}

/// What timing `net` as `pass` on batches of `batch` holds at most, in
/// bytes: its parameters, with (training) the working copy each update
/// writes and `moments` optimiser tensors per parameter; and the passes
/// besides them (with the parameters' gradients): the largest of a layer
/// alone on its random input (as [`time_layers`] runs them), and the whole
/// network on its random batch (as [`time_network`] does), with the
/// threads' scratch. The two are added: they run one after the other, and
/// the heap keeps the first's blocks, split by small allocations made
/// between them, where the second's may not fit (measured: a 1x1
/// convolution to 16384 channels at batch 8 peaked 0.4 GB above its
/// largest pass).
pub fn memory(net: &Sequential, pass: Pass, batch: usize, moments: f64, threads: usize) -> (f64, f64) {
    let rows = batch as f64;
    let size = |shape: &[usize]| rows * shape.iter().map(|&d| d as f64).product::<f64>() * 4.0;
    let params = net.param_count() as f64 * 4.0;
    let training = pass == Pass::Training;
    let weights = if training { params * (2.0 + moments) } else { params };
    let mut most = 0.0f64;
    let mut scratch = 0.0f64;
    for (i, node) in net.nodes.iter().enumerate() {
        let one = Sequential { input: node.input.clone(), nodes: vec![node.clone()] };
        let f =
            if training { one.layer_footprint(batch, threads, i > 0) } else { one.inference_footprint(batch, threads) };
        // Its input, then the pass (or the seed's: a batch of outputs and
        // the sum's gradient).
        most = most.max(size(&node.input) + f.peak.max(3.0 * size(&node.output)));
        scratch = scratch.max(f.scratch);
    }
    let inference = net.inference_footprint(batch, threads);
    let mut whole = inference.peak;
    scratch = scratch.max(inference.scratch);
    if training {
        let step = net.training_footprint(batch, threads);
        whole = whole.max(step.peak);
        scratch = scratch.max(step.scratch);
    }
    (weights, most + size(&net.input) + whole + scratch)
}

/// Time each layer of `net` alone, used as `pass` says.
pub fn time_layers(net: &Sequential, params: &Params, pass: Pass, o: &TimingOptions) -> Result<Vec<LayerTiming>> {
    let mut rng = Rng::new(o.seed);
    let mut out = Vec::with_capacity(net.nodes.len());
    for (i, node) in net.nodes.iter().enumerate() {
        let one = Sequential { input: node.input.clone(), nodes: vec![node.clone()] };
        let x = batch_of(&node.input, o.batch, &mut rng)?;
        let flops = node.layer.flops(&node.input, &node.output) * o.batch as f64;
        // The network's input is data, whose gradient no one wants.
        let input_gradient = pass == Pass::Training && i > 0;
        let timing = match pass {
            Pass::Inference => {
                let tape = Tape::inference();
                let x = Var::constant(x);
                let [forward] = median_of(o, || Ok([timed(|| one.forward(&tape, params, &x, None))?.1]))?;
                LayerTiming {
                    prefix: node.prefix.clone(),
                    layer: node.layer.clone(),
                    input: node.input.clone(),
                    output: node.output.clone(),
                    forward,
                    backward: None,
                    forward_flops: flops,
                    backward_flops: None,
                    input_gradient: false,
                }
            }
            Pass::Training => {
                let tape = Tape::new();
                let mut dropout = Rng::new(o.seed ^ 0x6472_6f70);
                let [forward, backward] = median_of(o, || {
                    tape.clear();
                    let x = if input_gradient { tape.leaf(x.clone()) } else { Var::constant(x.clone()) };
                    let (y, forward) = timed(|| one.forward(&tape, params, &x, Some(&mut dropout)))?;
                    let loss = tape.sum(&y);
                    let (grads, backward) = timed(|| tape.backward(&loss))?;
                    drop(grads);
                    Ok([forward, backward])
                })?;
                // What seeding the backward pass costs: sum's backward alone.
                let y = batch_of(&node.output, o.batch, &mut rng)?;
                let [seed] = median_of(o, || {
                    tape.clear();
                    let loss = tape.sum(&tape.leaf(y.clone()));
                    Ok([timed(|| tape.backward(&loss))?.1])
                })?;
                LayerTiming {
                    prefix: node.prefix.clone(),
                    layer: node.layer.clone(),
                    input: node.input.clone(),
                    output: node.output.clone(),
                    forward,
                    backward: Some(backward.saturating_sub(seed)),
                    forward_flops: flops,
                    backward_flops: Some(
                        backward_flops(&node.layer, &node.input, &node.output, input_gradient) * o.batch as f64,
                    ),
                    input_gradient,
                }
            }
        };
        out.push(timing);
    }
    Ok(out)
}

/// The optimiser's step, given to [`time_network`] (nn knows no optimiser).
pub type Update<'a> = &'a mut dyn FnMut(&mut Params, &Grads) -> Result<()>;

/// Time the whole of `net`: its inference forward pass, and for
/// [`Pass::Training`] a training step (loss against random classes with
/// `reduction`, backward, and `update` if given). `params` is restored after
/// each update, so every run starts from the same weights.
pub fn time_network(
    net: &Sequential,
    params: &Params,
    pass: Pass,
    reduction: Reduction,
    mut update: Option<Update>,
    o: &TimingOptions,
) -> Result<NetworkTiming> {
    let mut rng = Rng::new(o.seed ^ 0x7768_6f6c);
    let x = Var::constant(batch_of(&net.input, o.batch, &mut rng)?);
    let inference = Tape::inference();
    let [forward_inference] = median_of(o, || Ok([timed(|| net.forward(&inference, params, &x, None))?.1]))?;
    if pass == Pass::Inference {
        return Ok(NetworkTiming { forward_inference, forward_training: None, backward: None, update: None });
    }
    let classes = net.output().iter().product::<usize>().max(1);
    let targets = Targets::Classes((0..o.batch).map(|_| rng.below(classes)).collect());
    let tape = Tape::new();
    let mut dropout = Rng::new(o.seed ^ 0x6472_6f70);
    let mut working = params.clone();
    let [forward, backward, step] = median_of(o, || {
        working.clone_from(params);
        tape.clear();
        let (loss, forward) = timed(|| net.loss(&tape, &working, &x, &targets, reduction, Some(&mut dropout)))?;
        let (grads, backward) = timed(|| tape.backward(&loss))?;
        // As the training loop: cleared first, so the update writes in place.
        tape.clear();
        let step = match update.as_mut() {
            Some(u) => timed(|| u(&mut working, &grads))?.1,
            None => Duration::ZERO,
        };
        Ok([forward, backward, step])
    })?;
    Ok(NetworkTiming {
        forward_inference,
        forward_training: Some(forward),
        backward: Some(backward),
        update: update.is_some().then_some(step),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{LayerSpec, Window2d};

    fn net() -> Sequential {
        let w = Window2d { kernel: 3, stride: 1, padding: 1 };
        let specs: Vec<LayerSpec> = [
            Layer::Conv2d { out: 4, win: w, groups: 1, bias: true },
            Layer::Relu,
            Layer::MaxPool2d(Window2d { kernel: 2, stride: 2, padding: 0 }),
            Layer::Dropout { p: 0.5 },
            Layer::Flatten,
            Layer::Linear { out: 3, bias: true },
        ]
        .into_iter()
        .map(LayerSpec::new)
        .collect();
        Sequential::new(&[2, 6, 6], &specs).unwrap()
    }

    const QUICK: TimingOptions = TimingOptions { batch: 5, iterations: 3, warmup: 1, seed: 1 };

    #[test]
    fn every_layer_is_timed_with_its_flops() {
        let net = net();
        let params = random_params(&net, 0);
        let t = time_layers(&net, &params, Pass::Training, &QUICK).unwrap();
        assert_eq!(t.len(), net.nodes.len());
        for (l, n) in t.iter().zip(&net.nodes) {
            assert_eq!(l.prefix, n.prefix);
            assert_eq!(l.forward_flops, n.layer.flops(&n.input, &n.output) * 5.0);
            assert!(l.backward.is_some());
        }
        // The first layer's input is data: no input gradient, 1x its forward.
        assert!(!t[0].input_gradient && t[5].input_gradient);
        assert_eq!(t[0].backward_flops, Some(t[0].forward_flops));
        assert_eq!(t[5].backward_flops, Some(2.0 * t[5].forward_flops));
        let inf = time_layers(&net, &params, Pass::Inference, &QUICK).unwrap();
        assert!(inf.iter().all(|l| l.backward.is_none() && l.backward_flops.is_none()));
    }

    #[test]
    fn a_training_step_runs_the_update_in_every_run() {
        let net = net();
        let params = random_params(&net, 0);
        let mut steps = 0;
        let mut update = |p: &mut Params, g: &Grads| -> Result<()> {
            steps += 1;
            for (name, t) in p.iter_mut() {
                *t = t.sub(g.by_name(name).expect("every parameter has a gradient"))?;
            }
            Ok(())
        };
        let t = time_network(&net, &params, Pass::Training, Reduction::Mean, Some(&mut update), &QUICK).unwrap();
        assert!(t.forward_training.is_some() && t.backward.is_some() && t.update.is_some());
        assert_eq!(steps, 4, "one warm-up and three measured steps");
        let t = time_network(&net, &params, Pass::Inference, Reduction::Mean, None, &QUICK).unwrap();
        assert!(t.forward_training.is_none() && t.update.is_none());
    }

    #[test]
    fn the_median_is_the_middle_run() {
        let mut k = 0u64;
        let times = [5, 1, 9, 3, 7].map(Duration::from_millis);
        let o = TimingOptions { iterations: 5, warmup: 0, ..QUICK };
        let [m] = median_of(&o, || {
            k += 1;
            Ok([times[k as usize - 1]])
        })
        .unwrap();
        assert_eq!(m, Duration::from_millis(5));
        let o = TimingOptions { iterations: 2, warmup: 0, ..QUICK };
        let mut j = 0;
        let [m] = median_of(&o, || {
            j += 1;
            Ok([Duration::from_millis(if j == 1 { 2 } else { 4 })])
        })
        .unwrap();
        assert_eq!(m, Duration::from_millis(3));
    }
}
