//! The memory a network holds while it runs, worked out from its shapes
//! before anything is allocated: the budget of `nabla check` and the cap of
//! `nabla time` are built on it.
//!
//! A pass does not hold every layer's output at once, so the sum of the
//! activations is no bound worth having (a 300-layer ReLU network summed to
//! 14 GB and peaked at 0.27 GB). Instead the tensors a pass allocates are
//! replayed in the order the tape and the layers allocate and free them:
//!
//! - **Inference** (an inference tape records nothing): a layer's input is
//!   freed once its output exists, so at most one layer's input and output
//!   (and a linear layer's product before its bias) are alive, plus the
//!   layer's workspace. A convolution followed by a ReLU is one pass.
//! - **Training** (a recording tape): every tensor a backward rule needs
//!   stays until the tape is cleared: a convolution's and a linear layer's
//!   input, a ReLU's input, a tanh's or sigmoid's output, a max-pool's
//!   argmax, a dropout mask, the product before a bias, and the fused last
//!   layer's gradients. Then the backward pass walks back, holding one
//!   layer's output gradient and its input gradient at a time, while every
//!   parameter's gradient accumulates.
//!
//! Sizes are f64 bytes: no shape a file can declare overflows them.

use super::layer::Layer;
use super::Sequential;
use crate::conv::footprint::ConvShape;

const F32: f64 = 4.0;

/// Bytes of a shape's elements for `rows` examples.
fn bytes(rows: f64, shape: &[usize]) -> f64 {
    rows * shape.iter().map(|&d| d as f64).product::<f64>() * F32
}

/// What a pass of a network holds, in bytes.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Footprint {
    /// The most the pass's tensors (activations, saved values, gradients,
    /// workspace) hold at once; not the input batch or the parameters.
    pub peak: f64,
    /// The layer at that peak (its parameter prefix).
    pub at: String,
    /// Of the peak, the parameters' gradients (training only): they outlive
    /// the pass, until the optimiser's step is done.
    pub param_grads: f64,
    /// Kept per thread between passes, in all threads (convolution scratch
    /// and the matrix products' packing buffers): held from the first pass
    /// on, besides `peak`.
    pub scratch: f64,
}

/// How a step's loss is made from the network's output.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Loss {
    /// Softmax cross-entropy (fused with a last linear layer with a bias).
    CrossEntropy,
    /// The sum of the outputs (`nabla time`'s one-layer passes).
    Sum,
}

/// Live bytes over time.
#[derive(Default)]
struct Live {
    now: f64,
    peak: f64,
    at: String,
}

impl Live {
    fn alloc(&mut self, bytes: f64, at: &str) {
        self.now += bytes;
        self.note(0.0, at);
    }

    fn free(&mut self, bytes: f64) {
        self.now -= bytes;
    }

    /// A buffer held only while the layer `at` computes.
    fn note(&mut self, briefly: f64, at: &str) {
        if self.now + briefly > self.peak {
            self.peak = self.now + briefly;
            self.at = at.to_string();
        }
    }
}

/// Floats a matrix product packs per thread: its block of A (at most
/// `MC x KC`, below 80 k floats for every kernel) and its block of B (`KC x
/// NC` at most, 512 x 4096), for a product with `n` columns and depth `k`.
fn packing(n: f64, k: f64) -> f64 {
    80e3 + k.min(512.0) * n.min(4096.0)
}

impl Sequential {
    /// The convolution of node `i` on `rows` images, if it is one.
    fn conv_shape(&self, i: usize, rows: f64) -> Option<ConvShape> {
        let n = &self.nodes[i];
        match (&n.layer, n.input.as_slice()) {
            (Layer::Conv2d { out, win, groups, .. }, &[c, h, w]) => Some(ConvShape {
                n: rows,
                c,
                h,
                w,
                oc: *out,
                k: win.kernel,
                stride: win.stride,
                padding: win.padding,
                groups: *groups,
            }),
            _ => None,
        }
    }

    /// Scratch kept per thread for passes of `rows` examples: the largest
    /// convolution's and the largest product's packing, times `threads`.
    fn scratch(&self, rows: f64, training: bool, threads: usize) -> f64 {
        let per_thread = (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                let conv = self.conv_shape(i, rows).map_or(0.0, |c| c.memory(training).scratch);
                let (a, b) = (bytes(1.0, &n.input) / F32, bytes(1.0, &n.output) / F32);
                let pack = match n.layer {
                    Layer::Linear { .. } if training => packing(b, a).max(packing(a, rows)).max(packing(a, b)),
                    Layer::Linear { .. } => packing(b, a),
                    Layer::Conv2d { .. } => packing(b.max(1024.0), a),
                    _ => 0.0,
                };
                conv + pack
            })
            .fold(0.0, f64::max);
        per_thread * F32 * threads.max(1) as f64
    }

    /// What an evaluation pass of `rows` examples holds (forward on an
    /// inference tape, as [`crate::nn::infer`] runs it), the input aside.
    pub fn inference_footprint(&self, rows: usize, threads: usize) -> Footprint {
        let r = rows as f64;
        let mut live = Live::default();
        // The current value: its bytes, and whether it is the caller's input.
        let mut cur = (0.0, true);
        let mut i = 0;
        while i < self.nodes.len() {
            let n = &self.nodes[i];
            let out = bytes(r, &n.output);
            let made = match &n.layer {
                Layer::Conv2d { .. } => {
                    let m = self.conv_shape(i, r).expect("a convolution").memory(false);
                    live.note(m.forward * F32 + out, &n.prefix);
                    // The ReLU after it is the same pass.
                    if self.nodes.get(i + 1).is_some_and(|m| m.layer == Layer::Relu) {
                        i += 1;
                    }
                    Some(out)
                }
                Layer::Linear { bias, .. } => {
                    live.alloc(out, &n.prefix);
                    if *bias {
                        live.alloc(out, &n.prefix);
                        live.free(out);
                    }
                    live.free(if cur.1 { 0.0 } else { cur.0 });
                    cur = (out, false);
                    None
                }
                Layer::Flatten | Layer::Dropout { .. } => None,
                _ => Some(out),
            };
            if let Some(out) = made {
                live.alloc(out, &n.prefix);
                live.free(if cur.1 { 0.0 } else { cur.0 });
                cur = (out, false);
            }
            i += 1;
        }
        Footprint { peak: live.peak, at: live.at, param_grads: 0.0, scratch: self.scratch(r, false, threads) }
    }

    /// What a training step on `batch` examples holds: the forward pass to
    /// the loss on a recording tape (the last linear layer fused with the
    /// loss, as [`Sequential::loss`] does), then the backward pass, the
    /// input batch and the parameters aside.
    pub fn training_footprint(&self, batch: usize, threads: usize) -> Footprint {
        self.step_footprint(batch, threads, Loss::CrossEntropy, false)
    }

    /// What `nabla time` holds timing one layer alone on `batch` examples
    /// (`nn::timing`): the layer on a recording tape, its input a leaf when
    /// `input_gradient`, its output summed, then backward; the input batch
    /// and the parameters aside.
    pub fn layer_footprint(&self, batch: usize, threads: usize, input_gradient: bool) -> Footprint {
        self.step_footprint(batch, threads, Loss::Sum, input_gradient)
    }

    fn step_footprint(&self, batch: usize, threads: usize, loss: Loss, input_tracked: bool) -> Footprint {
        let r = batch as f64;
        let nodes = &self.nodes;
        let fused = loss == Loss::CrossEntropy
            && nodes.last().is_some_and(|l| matches!(l.layer, Layer::Linear { bias: true, .. }));
        let mut live = Live::default();
        // Per node: whether it is recorded (a parameter at or before it) and
        // whether its input carries a gradient (a parameter before it).
        let mut recorded = Vec::with_capacity(nodes.len());
        let mut tracked = input_tracked;
        for n in nodes {
            recorded.push((tracked || !n.params.is_empty(), tracked));
            tracked |= !n.params.is_empty();
        }
        // The current value: its bytes, whether it is the caller's input,
        // and whether the tape holds it.
        let (mut cur, mut external, mut held) = (0.0, true, false);
        for (i, n) in nodes.iter().enumerate() {
            let (rec, _) = recorded[i];
            let out = bytes(r, &n.output);
            let last = i + 1 == nodes.len();
            let weights = n.params.iter().map(|p| bytes(1.0, &p.shape)).sum::<f64>();
            // The new value's bytes (None: the same storage) and whether the tape holds it.
            let made: Option<(f64, bool)> = match &n.layer {
                Layer::Linear { .. } if last && fused => {
                    // dX, dW and db kept for the backward rule; the groups'
                    // partial dW and db while they are summed.
                    let groups = (r / 1152.0).ceil().max(1.0);
                    live.note(groups * weights + 1152.0 * bytes(1.0, &n.output), &n.prefix);
                    let dx = if recorded[i].1 { bytes(r, &n.input) } else { 0.0 };
                    live.alloc(dx + weights, &n.prefix);
                    Some((0.0, true))
                }
                Layer::Linear { bias, .. } => {
                    held |= rec;
                    if *bias {
                        // The product before the bias is the bias add's saved input.
                        live.alloc(out, &n.prefix);
                    }
                    Some((out, false))
                }
                Layer::Conv2d { .. } => {
                    let m = self.conv_shape(i, r).expect("a convolution").memory(recorded[i].1);
                    live.note(m.forward * F32 + out, &n.prefix);
                    held |= rec;
                    Some((out, false))
                }
                Layer::Relu => {
                    held |= rec;
                    Some((out, false))
                }
                Layer::Tanh | Layer::Sigmoid => Some((out, rec)),
                Layer::MaxPool2d(_) => {
                    if rec {
                        // The argmax of each output (u32).
                        live.alloc(out, &n.prefix);
                    }
                    Some((out, false))
                }
                Layer::AvgPool2d(_) => Some((out, false)),
                Layer::Dropout { p } if *p > 0.0 => {
                    // The mask, kept when recorded.
                    live.alloc(out, &n.prefix);
                    if !rec {
                        live.free(out);
                    }
                    Some((out, false))
                }
                Layer::Dropout { .. } | Layer::Flatten => None,
            };
            if let Some((bytes, keep)) = made {
                live.alloc(bytes, &n.prefix);
                if !held && !external {
                    live.free(cur);
                }
                (cur, external, held) = (bytes, false, keep);
            }
        }
        let output = nodes.last().map_or(0.0, |l| bytes(r, &l.output));
        cur = 0.0;
        if loss == Loss::Sum {
            // The sum's gradient: ones of the output's shape, times the seed.
            live.note(2.0 * output, "loss");
            live.alloc(output, "loss");
            cur = output;
        } else if !fused {
            // Softmax cross-entropy: the probabilities, kept, then the
            // logits' gradient.
            live.alloc(2.0 * output, "loss");
            cur = output;
        }
        // Backward: the output gradient of each recorded layer, last first.
        let mut grads = 0.0;
        for (i, n) in nodes.iter().enumerate().rev() {
            let (rec, input_grad) = recorded[i];
            if !rec {
                break;
            }
            let weights = n.params.iter().map(|p| bytes(1.0, &p.shape)).sum::<f64>();
            let g_in = if input_grad { bytes(r, &n.input) } else { 0.0 };
            match &n.layer {
                Layer::Linear { .. } if i + 1 == nodes.len() && fused => {
                    // Its gradients are the ones it kept.
                    grads += weights;
                    cur = 0.0;
                    continue;
                }
                Layer::Flatten => continue,
                Layer::Dropout { p } if *p == 0.0 => continue,
                Layer::Conv2d { .. } => {
                    let m = self.conv_shape(i, r).expect("a convolution").memory(input_grad);
                    live.note(m.backward * F32 + weights + g_in, &n.prefix);
                }
                Layer::Sigmoid => live.note(cur, &n.prefix),
                _ => {}
            }
            live.alloc(weights + g_in, &n.prefix);
            grads += weights;
            live.free(cur);
            cur = g_in;
        }
        Footprint { peak: live.peak, at: live.at, param_grads: grads, scratch: self.scratch(r, true, threads) }
    }
}

#[cfg(test)]
mod tests {
    use crate::nn::layer::{Layer, Window2d};
    use crate::nn::{LayerSpec, Sequential};

    fn net(input: &[usize], layers: Vec<Layer>) -> Sequential {
        Sequential::new(input, &layers.into_iter().map(LayerSpec::new).collect::<Vec<_>>()).unwrap()
    }

    const MB: f64 = 1e6;

    /// 300 ReLUs on 784 values: inference holds one input and one output,
    /// training every ReLU's input; neither is the sum of the outputs
    /// counted three times.
    #[test]
    fn deep_relu_stacks_hold_two_layers_in_inference() {
        let mut layers = vec![Layer::Flatten, Layer::Linear { out: 784, bias: true }];
        layers.extend(std::iter::repeat_n(Layer::Relu, 300));
        layers.push(Layer::Linear { out: 10, bias: true });
        let n = net(&[1, 28, 28], layers);
        let inf = n.inference_footprint(1000, 1);
        let layer = 1000.0 * 784.0 * 4.0;
        assert!(inf.peak >= 2.0 * layer && inf.peak <= 3.0 * layer + MB, "{inf:?}");
        let train = n.training_footprint(1000, 1);
        // Every ReLU's input (301 tensors, the first linear's product among
        // them), the first product's bias input, two gradients at a time.
        assert!(train.peak >= 301.0 * layer && train.peak <= 305.0 * layer, "{train:?}");
    }

    #[test]
    fn a_layer_list_before_any_parameter_records_nothing() {
        let pool = Window2d { kernel: 2, stride: 2, padding: 0 };
        let n = net(
            &[1, 28, 28],
            vec![Layer::MaxPool2d(pool), Layer::Relu, Layer::Flatten, Layer::Linear { out: 10, bias: true }],
        );
        let t = n.training_footprint(100, 1);
        // The pooled images (kept as the fused layer's input is not), dX is
        // not wanted (the input is data), dW and the partial dW.
        let pooled = 100.0 * 196.0 * 4.0;
        assert!(t.peak <= 2.0 * pooled + 3.0 * 1960.0 * 4.0 + 1152.0 * 40.0, "{t:?}");
        assert_eq!(t.param_grads, 1970.0 * 4.0);
    }
}
