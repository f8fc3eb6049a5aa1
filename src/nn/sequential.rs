//! The one model: a list of layers applied in order, as
//! `torch.nn.Sequential`. Shapes are inferred once, when the list is built,
//! so a layer that cannot take its input is an error naming the layer before
//! any data is read. Parameters are named as PyTorch names them
//! (`layers.<index>.weight`), or after the layer's own `name`, so a state
//! dict of the same PyTorch network loads as it is. Linear models, MLPs and
//! AlexNet are presets that build such lists (`presets.rs`).

use super::layer::{numel, Layer, ParamShape, Window2d};
use super::{Init, Params};
use crate::autodiff::{Reduction, Tape, Targets, Var};
use crate::error::{Error, Result};
use crate::gemm::Transpose;
use crate::tensor::Rng;

/// A layer as declared: what it is, an optional name (its parameters'
/// prefix), and initialisers overriding the model's.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerSpec {
    /// What the layer computes.
    pub layer: Layer,
    /// Its parameters' prefix (default `layers.<index>`).
    pub name: Option<String>,
    /// How its weight starts, if not as the model's.
    pub weight_init: Option<Init>,
    /// How its bias starts, if not as the model's.
    pub bias_init: Option<Init>,
}

impl LayerSpec {
    /// An unnamed layer with the model's initialisers.
    pub fn new(layer: Layer) -> LayerSpec {
        LayerSpec { layer, name: None, weight_init: None, bias_init: None }
    }

    /// A layer whose parameters are named `{name}.weight`, `{name}.bias`.
    pub fn named(layer: Layer, name: &str) -> LayerSpec {
        LayerSpec { name: Some(name.to_string()), ..LayerSpec::new(layer) }
    }
}

/// A built layer: its spec, its parameters' prefix and its shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the layer computes.
    pub layer: Layer,
    /// `layers.<index>` or the layer's name.
    pub prefix: String,
    /// The shape it takes (one example's).
    pub input: Vec<usize>,
    /// The shape it gives.
    pub output: Vec<usize>,
    /// The parameters it owns.
    pub params: Vec<ParamShape>,
    /// From its [`LayerSpec`].
    pub weight_init: Option<Init>,
    /// From its [`LayerSpec`].
    pub bias_init: Option<Init>,
}

impl Node {
    /// The full name of its parameter `suffix` (`"weight"`): `prefix.suffix`.
    pub fn param_name(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.prefix)
    }

    fn has_bias(&self) -> bool {
        self.params.iter().any(|p| p.suffix == "bias")
    }
}

/// Why a layer list cannot be built: the layer (1-based index and name) and
/// what is wrong with it.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerError {
    /// The layer's 1-based position (0: the list as a whole).
    pub index: usize,
    /// The layer's name, if it has one.
    pub name: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for LayerError {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        match &self.name {
            // Index 0: the list as a whole.
            _ if self.index == 0 => write!(f, "{}", self.message),
            Some(n) => write!(f, "layer {} ('{n}'): {}", self.index, self.message),
            None => write!(f, "layer {}: {}", self.index, self.message),
        }
    }
}

impl std::error::Error for LayerError {}

impl From<LayerError> for Error {
    fn from(e: LayerError) -> Error {
        Error::Other(Box::new(e))
    }
}

/// At most this many layers: a longer list is a generated mistake.
pub const MAX_LAYERS: usize = 1000;

/// A feed-forward network as an ordered list of layers, with every
/// layer's shapes inferred by [`Sequential::new`]; parameters live in
/// [`Params`] under PyTorch's names. [`Sequential::summary`] prints the
/// layer table.
#[derive(Clone, Debug, PartialEq)]
pub struct Sequential {
    /// One example's shape, e.g. `[1, 28, 28]` or `[784]`.
    pub input: Vec<usize>,
    /// The built layers, in order.
    pub nodes: Vec<Node>,
}

/// A parameter prefix PyTorch could have made: dotted words of letters,
/// digits and underscores.
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 200
        && name.split('.').all(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

impl Sequential {
    /// Infer every layer's shapes from one example's `input` shape.
    pub fn new(input: &[usize], specs: &[LayerSpec]) -> std::result::Result<Sequential, LayerError> {
        let error = |i: usize, s: Option<&LayerSpec>, message: String| LayerError {
            index: i + 1,
            name: s.and_then(|s| s.name.clone()),
            message,
        };
        if specs.is_empty() {
            let message = "the list of layers is empty".into();
            return Err(LayerError { index: 0, name: None, message });
        }
        if specs.len() > MAX_LAYERS {
            let message = format!("{} layers; at most {MAX_LAYERS}", specs.len());
            return Err(LayerError { index: 0, name: None, message });
        }
        if input.is_empty() || numel(input).is_err() || input.contains(&0) {
            let message = format!("the data's examples have no usable shape: {input:?}");
            return Err(LayerError { index: 0, name: None, message });
        }
        let mut nodes: Vec<Node> = Vec::with_capacity(specs.len());
        let mut shape = input.to_vec();
        for (i, spec) in specs.iter().enumerate() {
            let fail = |m: String| error(i, Some(spec), format!("{} {m}", spec.layer.type_name()));
            let prefix = match &spec.name {
                Some(n) if !valid_name(n) => {
                    return Err(error(
                        i,
                        Some(spec),
                        "a name is dotted words of letters, digits and '_' (at most 200 characters)".into(),
                    ))
                }
                Some(n) => n.clone(),
                None => format!("layers.{i}"),
            };
            if let Some(j) = nodes.iter().position(|n| n.prefix == prefix) {
                return Err(error(i, Some(spec), format!("layer {} has the same name '{prefix}'", j + 1)));
            }
            let output = spec.layer.why_not(&shape).map_err(fail)?;
            let params = spec.layer.params(&shape);
            if params.is_empty() && (spec.weight_init.is_some() || spec.bias_init.is_some()) {
                return Err(fail("has no parameters to initialise".into()));
            }
            if !params.iter().any(|p| p.suffix == "bias") && spec.bias_init.is_some() {
                return Err(fail("has no bias (bias = false) to initialise".into()));
            }
            nodes.push(Node {
                layer: spec.layer.clone(),
                prefix,
                input: std::mem::replace(&mut shape, output.clone()),
                output,
                params,
                weight_init: spec.weight_init,
                bias_init: spec.bias_init,
            });
        }
        Ok(Sequential { input: input.to_vec(), nodes })
    }

    /// One example's output shape (`[classes]` for a classifier).
    pub fn output(&self) -> &[usize] {
        &self.nodes.last().expect("at least one layer").output
    }

    /// Every parameter's name and shape, in layer order.
    pub fn param_shapes(&self) -> Vec<(String, Vec<usize>)> {
        self.nodes.iter().flat_map(|n| n.params.iter().map(|p| (n.param_name(p.suffix), p.shape.clone()))).collect()
    }

    /// Scalar parameters in all.
    pub fn param_count(&self) -> usize {
        self.nodes.iter().flat_map(|n| &n.params).map(|p| p.shape.iter().product::<usize>()).sum()
    }

    /// Create every parameter, layer by layer, weight before bias (PyTorch's
    /// order), each from its layer's initialiser or the model's.
    pub fn init(&self, params: &mut Params, weight: Init, bias: Init, rng: &mut Rng) {
        for n in &self.nodes {
            for p in &n.params {
                let init =
                    if p.suffix == "bias" { n.bias_init.unwrap_or(bias) } else { n.weight_init.unwrap_or(weight) };
                params.insert(&n.param_name(p.suffix), init.tensor(&p.shape, p.fan_in, rng));
            }
        }
    }

    /// The layers with parameters, in order (the first is what the units
    /// stage and the weight figures draw).
    pub fn weighted(&self) -> Vec<&Node> {
        self.nodes.iter().filter(|n| !n.params.is_empty()).collect()
    }

    /// Logits of `x` (`[batch, ...input]`, or rows of the input's size).
    /// `train` carries the dropout generator; `None` is evaluation.
    pub fn forward(&self, tape: &Tape, params: &Params, x: &Var, train: Option<&mut Rng>) -> Result<Var> {
        self.run(tape, params, x, &self.nodes, train)
    }

    /// Softmax cross-entropy of the logits against `targets`. A last linear
    /// layer with a bias is fused with the loss (one pass over its input; see
    /// `autodiff/fused.rs`).
    pub fn loss(
        &self,
        tape: &Tape,
        params: &Params,
        x: &Var,
        targets: &Targets,
        reduction: Reduction,
        mut train: Option<&mut Rng>,
    ) -> Result<Var> {
        let (last, body) = self.nodes.split_last().expect("at least one layer");
        if matches!(last.layer, Layer::Linear { .. }) && last.has_bias() {
            let h = self.run(tape, params, x, body, train.as_deref_mut())?;
            let h = flat_rows(tape, &h)?;
            let (w, b) = (params.var(tape, &last.param_name("weight"))?, params.var(tape, &last.param_name("bias"))?);
            return tape.linear_cross_entropy(&h, &w, &b, targets, reduction);
        }
        let logits = self.forward(tape, params, x, train)?;
        tape.softmax_cross_entropy(&logits, targets, reduction)
    }

    /// Apply `nodes` (a prefix of the list) to `x`.
    fn run(&self, tape: &Tape, params: &Params, x: &Var, nodes: &[Node], mut train: Option<&mut Rng>) -> Result<Var> {
        let batch = x.shape().first().copied().unwrap_or(0);
        let mut want = vec![batch];
        want.extend(&self.input);
        if x.value().numel() != numel(&want).unwrap_or(usize::MAX) {
            return Err(Error::Shape { op: "sequential", lhs: x.shape().to_vec(), rhs: want });
        }
        let mut h = if x.shape() == want.as_slice() { x.clone() } else { tape.reshape(x, &want)? };
        let mut i = 0;
        while i < nodes.len() {
            let n = &nodes[i];
            let bias =
                || -> Result<Option<Var>> { n.has_bias().then(|| params.var(tape, &n.param_name("bias"))).transpose() };
            h = match &n.layer {
                Layer::Conv2d { win, groups, .. } => {
                    let w = params.var(tape, &n.param_name("weight"))?;
                    let b = bias()?;
                    // A ReLU right after is one pass when no gradient flows.
                    if nodes.get(i + 1).is_some_and(|m| m.layer == Layer::Relu) {
                        i += 1;
                        tape.conv2d_relu(&h, &w, b.as_ref(), win.stride, win.padding, *groups)?
                    } else {
                        tape.conv2d(&h, &w, b.as_ref(), win.stride, win.padding, *groups)?
                    }
                }
                Layer::MaxPool2d(Window2d { kernel, stride, padding }) => {
                    tape.max_pool2d(&h, *kernel, *stride, *padding)?
                }
                Layer::AvgPool2d(Window2d { kernel, stride, padding }) => {
                    tape.avg_pool2d(&h, *kernel, *stride, *padding)?
                }
                Layer::Relu => tape.relu(&h),
                Layer::Tanh => tape.tanh(&h),
                Layer::Sigmoid => tape.sigmoid(&h),
                Layer::Dropout { p } => match train.as_deref_mut() {
                    // A data-parallel rank draws the whole batch's mask and keeps its rows.
                    Some(rng) => super::dropout::dropout(tape, &h, *p, rng)?,
                    None => h,
                },
                Layer::Flatten => flat_rows(tape, &h)?,
                Layer::Linear { .. } => {
                    let w = params.var(tape, &n.param_name("weight"))?;
                    let xw = tape.matmul_t(&h, Transpose::No, &w, Transpose::Yes)?;
                    match bias()? {
                        Some(b) => tape.add(&xw, &b)?,
                        None => xw,
                    }
                }
            };
            i += 1;
        }
        Ok(h)
    }

    /// The network table: each layer's output shape, parameters and forward
    /// FLOPs per example, and the totals (as torchinfo or Keras print).
    pub fn summary(&self) -> String {
        let mut rows = vec![["layer".to_string(), "type".into(), "output".into(), "parameters".into(), "FLOPs".into()]];
        rows.push(["input".into(), String::new(), format!("{:?}", self.input), String::new(), String::new()]);
        let (mut params, mut flops) = (0usize, 0.0f64);
        for n in &self.nodes {
            let p: usize = n.params.iter().map(|p| p.shape.iter().product::<usize>()).sum();
            let f = n.layer.flops(&n.input, &n.output);
            params += p;
            flops += f;
            rows.push([n.prefix.clone(), describe(&n.layer), format!("{:?}", n.output), group(p), si(f)]);
        }
        rows.push(["total".into(), String::new(), String::new(), group(params), si(flops)]);
        let mut md = String::new();
        for (r, row) in rows.iter().enumerate() {
            md += &format!("| {} |\n", row.join(" | "));
            if r == 0 {
                md += "| --- | --- | --- | ---: | ---: |\n";
            }
        }
        md
    }
}

/// `[batch, ...]` as `[batch, features]`.
fn flat_rows(tape: &Tape, h: &Var) -> Result<Var> {
    match h.shape() {
        [_, _] => Ok(h.clone()),
        [n, rest @ ..] => {
            let f = rest.iter().product();
            tape.reshape(h, &[*n, f])
        }
        [] => Err(Error::Rank { op: "flatten", expected: 2, shape: vec![] }),
    }
}

/// A layer's settings in a few words.
pub(crate) fn describe(l: &Layer) -> String {
    let win = |w: &Window2d| {
        let mut s = format!("{0}x{0}", w.kernel);
        if w.stride != 1 {
            s += &format!(" /{}", w.stride);
        }
        if w.padding > 0 {
            s += &format!(" pad {}", w.padding);
        }
        s
    };
    match l {
        Layer::Conv2d { out, win: w, groups, bias } => {
            let mut s = format!("conv2d {out} {}", win(w));
            if *groups > 1 {
                s += &format!(" groups {groups}");
            }
            if !bias {
                s += " no bias";
            }
            s
        }
        Layer::MaxPool2d(w) => format!("max_pool2d {}", win(w)),
        Layer::AvgPool2d(w) => format!("avg_pool2d {}", win(w)),
        Layer::Dropout { p } => format!("dropout {p}"),
        Layer::Linear { out, bias } => format!("linear {out}{}", if *bias { "" } else { " no bias" }),
        other => other.type_name().to_string(),
    }
}

/// 61706 as "61,706".
fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// 4.2e8 as "420.0 M".
pub(crate) fn si(x: f64) -> String {
    match x {
        x if x >= 1e9 => format!("{:.2} G", x / 1e9),
        x if x >= 1e6 => format!("{:.2} M", x / 1e6),
        x if x >= 1e3 => format!("{:.1} k", x / 1e3),
        x => format!("{x:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::autodiff::gradcheck::{gradcheck_params, GradcheckOptions};
    use crate::tensor::Tensor;

    fn small_cnn() -> Vec<LayerSpec> {
        let w = |kernel, stride, padding| Window2d { kernel, stride, padding };
        [
            Layer::Conv2d { out: 3, win: w(3, 1, 1), groups: 1, bias: true },
            Layer::Tanh,
            Layer::MaxPool2d(w(2, 2, 0)),
            Layer::Conv2d { out: 4, win: w(2, 1, 0), groups: 1, bias: false },
            Layer::Relu,
            Layer::Flatten,
            Layer::Linear { out: 5, bias: true },
            Layer::Sigmoid,
            Layer::Linear { out: 3, bias: true },
        ]
        .into_iter()
        .map(LayerSpec::new)
        .collect()
    }

    #[test]
    fn names_follow_pytorch_sequential() {
        let mut specs = small_cnn();
        specs[8].name = Some("head".into());
        let net = Sequential::new(&[2, 6, 6], &specs).unwrap();
        let names: Vec<String> = net.param_shapes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                "layers.0.weight",
                "layers.0.bias",
                "layers.3.weight",
                "layers.6.weight",
                "layers.6.bias",
                "head.weight",
                "head.bias"
            ]
        );
        assert_eq!(net.output(), &[3]);
        assert_eq!(net.nodes[6].input, vec![16]);
        let table = net.summary();
        assert!(table.contains("| layers.0 | conv2d 3 3x3 pad 1 | [3, 6, 6] | 57 |"), "{table}");
    }

    #[test]
    fn errors_name_the_layer() {
        let mut specs = small_cnn();
        specs.remove(5); // the flatten
        specs[4].name = Some("act".into());
        let err = Sequential::new(&[2, 6, 6], &specs).unwrap_err().to_string();
        assert_eq!(
            err,
            "layer 6: linear takes a flat input [features]; its input is [4, 2, 2]: put a flatten layer before it"
        );
        let mut specs = small_cnn();
        specs[0].name = Some("layers.3".into());
        assert!(Sequential::new(&[2, 6, 6], &specs).unwrap_err().to_string().contains("the same name 'layers.3'"));
        specs[0].name = Some("a..b".into());
        assert!(Sequential::new(&[2, 6, 6], &specs).is_err());
        let err = Sequential::new(&[2, 3, 3], &small_cnn()).unwrap_err().to_string();
        assert!(err.starts_with("layer 4: conv2d its 2x2 kernel is larger than its input [3, 1, 1]"), "{err}");
        assert!(Sequential::new(&[2, 6, 6], &[]).is_err());
    }

    #[test]
    fn gradients_of_every_layer_match_finite_differences() {
        let net = Sequential::new(&[2, 6, 6], &small_cnn()).unwrap();
        let mut params = Params::new();
        net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(5));
        let x = Var::constant(Tensor::uniform(&[2, 72], -1.0, 1.0, &mut Rng::new(6)));
        let f = |tape: &Tape, p: &Params| net.forward(tape, p, &x, None);
        let opts = GradcheckOptions { atol: 5e-4, rtol: 2e-3, skip_kinks: true, ..Default::default() };
        let report = gradcheck_params(f, &params, &opts).unwrap();
        assert!(report.passed() && report.checked > 100, "{report}");
    }

    #[test]
    fn fused_loss_matches_forward_then_loss() {
        let net = Sequential::new(&[2, 6, 6], &small_cnn()).unwrap();
        let mut params = Params::new();
        net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(1));
        let x = Var::constant(Tensor::uniform(&[7, 2, 6, 6], -1.0, 1.0, &mut Rng::new(2)));
        let y = Targets::Classes((0..7).map(|i| i % 3).collect());
        let fused = net.loss(&Tape::inference(), &params, &x, &y, Reduction::Mean, None).unwrap();
        let tape = Tape::inference();
        let logits = net.forward(&tape, &params, &x, None).unwrap();
        let plain = tape.softmax_cross_entropy(&logits, &y, Reduction::Mean).unwrap();
        assert!((fused.value().item().unwrap() - plain.value().item().unwrap()).abs() < 1e-5);
        let bad = Var::constant(Tensor::zeros(&[7, 71]));
        assert!(net.forward(&Tape::inference(), &params, &bad, None).is_err());
    }
}
