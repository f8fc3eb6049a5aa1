//! The pipeline file format. These structs *are* the documentation: every
//! field's doc comment is printed by `nabla schema`, and unknown keys are
//! errors. A file is one experiment: what data, which model, how to train
//! it, what to sweep, what to check and which figures to draw, like a Caffe
//! net and solver in one file. Stages run in this order when their section
//! is present: samples, gradcheck, sweep, train, contour.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A pipeline file: one experiment.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Version of this format; must be 1.
    pub version: u32,
    /// Name of the experiment; outputs go to `resources/<name>/` unless `--out` says otherwise.
    pub name: String,
    /// One line on what the experiment shows (printed in `report.md`).
    #[serde(default)]
    pub description: String,
    /// Seed of every random choice: initial weights, samples, mini-batches.
    #[serde(default)]
    pub seed: u64,
    /// Where the examples come from (not needed by the scaling stage).
    #[serde(default)]
    pub data: Data,
    /// The network (needed by the gradcheck, train, sweep and contour stages).
    pub model: Option<Model>,
    /// A fixed network the examples pass through first (report part 10).
    pub backbone: Option<Backbone>,
    /// Stage: a grid of random training samples, one row per class.
    pub samples: Option<Samples>,
    /// Stage: the tape's gradient against finite differences in f64.
    pub gradcheck: Option<Gradcheck>,
    /// Stage: try several values of one field, keep the best for `train`.
    pub sweep: Option<Sweep>,
    /// Stage: train the model, draw learning curves and weights, save weights.
    pub train: Option<Train>,
    /// Train once per data seed (a new split each) and report each and the mean.
    pub crossval: Option<Crossval>,
    /// Stage, before `train`: try each trial's settings (cross-validated when
    /// `[crossval]` is present), keep the best mean validation accuracy.
    #[serde(default)]
    pub trials: Vec<Trial>,
    /// Stage: the first layer's weights as images and the class each hidden
    /// unit favours (report part 9).
    pub units: Option<Units>,
    /// Stage: the cost surface over two weights, with descent trajectories.
    pub contour: Option<Contour>,
    /// Stage: time naive per-weight differentiation against backpropagation
    /// as a network deepens and widens (report part 7; needs no data).
    pub scaling: Option<Scaling>,
    /// The reference report's numbers, shown beside ours in `report.md`
    /// (e.g. `test_accuracy = 0.919`).
    #[serde(default)]
    pub reference: BTreeMap<String, f64>,
}

/// Where the examples come from.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Data {
    /// The data set: "mnist" or "faces" (FaceScrub crops, never committed).
    pub dataset: Dataset,
    /// Folder holding the data set's files: the four MNIST IDX files, or the
    /// face crops. Default: `data/mnist`; for faces, `facescrub/cropped<size>`
    /// under `$NABLA_DATA_ROOT` if set, else under `data/` if it holds them,
    /// else under `../shared/data`.
    pub root: Option<PathBuf>,
    /// Use only the first N training examples (0 = all); for quick runs.
    #[serde(default)]
    pub train_limit: usize,
    /// Faces: the actors (file name prefixes), in class order.
    #[serde(default)]
    pub actors: Vec<String>,
    /// Faces: image side in pixels; files of another size are resized.
    #[serde(default = "default_side")]
    pub size: usize,
    /// Faces: "gray" or "rgb" (channels first).
    #[serde(default)]
    pub color: ColorName,
    /// Faces: pixels are multiplied by this; 1/255 puts them in [0, 1] (the
    /// report's code divided by 255 twice: 1/65025).
    #[serde(default = "default_scale")]
    pub scale: f32,
    /// Faces: images per actor in each split.
    #[serde(default)]
    pub split: SplitCounts,
    /// Faces: a file that cannot be decoded is "fail" (an error naming it) or
    /// "skip" (counted in `metrics.json`).
    #[serde(default)]
    pub on_bad_image: BadImage,
    /// Faces: seed of the per-actor shuffle that makes the split (the
    /// report's data seed; `[crossval]` varies it).
    #[serde(default)]
    pub seed: u64,
    /// Per-image normalisation after scaling: "none", or "mean_max_abs"
    /// (subtract the image's mean, divide by its largest absolute value, as
    /// the report's part 10 fed AlexNet).
    #[serde(default)]
    pub normalize: Normalize,
}

/// How an image is scaled before the network.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Normalize {
    #[default]
    /// As read (pixels times `pixel_scale`).
    None,
    /// Minus the image's mean, divided by its largest absolute value.
    MeanMaxAbs,
}

/// A fixed network whose outputs replace the images as the examples: the
/// model then trains on them (report part 10: AlexNet's 9216 conv features).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Backbone {
    /// "alexnet" (torchvision's, features after the last max-pool) or
    /// "sequential" (the layers of `layers`, as in `[model]`).
    pub kind: BackboneKind,
    /// The layers ("sequential" only): `[[backbone.layers]]` tables; the
    /// output must be `[channels, side, side]` or `[features]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerFields>,
    /// Pretrained weights: a `torch.save` file (torchvision's
    /// `alexnet-owt-7be5be79.pth`) or a safetensors file, with the
    /// backbone's parameter names (other tensors, such as a classifier's, are
    /// ignored).
    pub weights: Option<PathBuf>,
    /// When `weights` is absent: "error" (stop, saying where to get it) or
    /// "random" (warn loudly, use seeded random weights, and say so in
    /// `metrics.json` and `report.md`).
    #[serde(default)]
    pub if_missing: IfMissing,
    /// Folder caching extracted features, keyed by weights and image content.
    pub cache: Option<PathBuf>,
}

/// Which fixed network a backbone is.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum BackboneKind {
    /// torchvision's AlexNet, features after the last max-pool.
    Alexnet,
    /// The layers of `layers`, as in `[model]`.
    Sequential,
}

/// What a backbone does when its weights file is missing.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum IfMissing {
    #[default]
    /// Stop with an error naming the file.
    Error,
    /// Warn, and use seeded random weights (said in the outputs).
    Random,
}

fn default_side() -> usize {
    32
}

impl Data {
    /// The folder the data set is read from (see `root`).
    pub fn resolved_root(&self) -> PathBuf {
        if let Some(root) = &self.root {
            return root.clone();
        }
        match self.dataset {
            Dataset::Mnist => PathBuf::from("data/mnist"),
            Dataset::Faces => {
                let sub = PathBuf::from("facescrub").join(format!("cropped{}", self.size));
                let from_env = std::env::var_os("NABLA_DATA_ROOT").map(PathBuf::from);
                let candidates = from_env.into_iter().chain([PathBuf::from("data"), PathBuf::from("../shared/data")]);
                let mut candidates = candidates.map(|r| r.join(&sub)).peekable();
                let first = candidates.peek().cloned().expect("at least one candidate");
                candidates.find(|c| c.is_dir()).unwrap_or(first)
            }
        }
    }
}

fn default_scale() -> f32 {
    1.0 / 255.0
}

impl Default for Data {
    fn default() -> Data {
        Data {
            dataset: Dataset::Mnist,
            root: None,
            train_limit: 0,
            actors: vec![],
            size: default_side(),
            color: ColorName::default(),
            scale: default_scale(),
            split: SplitCounts::default(),
            on_bad_image: BadImage::default(),
            seed: 0,
            normalize: Normalize::None,
        }
    }
}

/// A data set the pipeline can read.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Dataset {
    #[default]
    /// The four MNIST IDX files.
    Mnist,
    /// FaceScrub face crops in a folder.
    Faces,
}

/// The channels a face image is read into.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum ColorName {
    #[default]
    /// One channel.
    Gray,
    /// Three channels, red first.
    Rgb,
}

/// What an image that cannot be decoded does.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum BadImage {
    #[default]
    /// Stop with an error naming the file.
    Fail,
    /// Leave it out and count it.
    Skip,
}

/// Images per actor: after a shuffle with the data seed, the first `train`,
/// the next `test`, then up to (or, with `exact_validation`, exactly)
/// `validation`.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SplitCounts {
    /// Training images per actor.
    pub train: usize,
    /// Actors with another training count, e.g. `{ gilpin = 37 }`.
    #[serde(default)]
    pub train_for: BTreeMap<String, usize>,
    /// Test images per actor.
    pub test: usize,
    /// Validation images per actor.
    pub validation: usize,
    /// Fail unless every actor has all `validation` images left.
    #[serde(default)]
    pub exact_validation: bool,
}

impl Default for SplitCounts {
    fn default() -> SplitCounts {
        SplitCounts { train: 70, train_for: BTreeMap::new(), test: 10, validation: 20, exact_validation: false }
    }
}

/// The network.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Model {
    /// "linear": softmax regression, inputs -> classes (the report's part 2);
    /// "mlp": hidden layers between them; "alexnet": torchvision's AlexNet
    /// (3 x 227 x 227 images); "sequential": the layers of `layers`.
    pub kind: ModelKind,
    /// Widths of the hidden layers ("mlp" only), e.g. `[25]`.
    #[serde(default)]
    pub hidden: Vec<usize>,
    /// Activation between layers ("mlp" only): "relu", "tanh" or "sigmoid".
    #[serde(default = "default_activation")]
    pub activation: ActivationName,
    /// The layers, in order ("sequential" only): `[[model.layers]]` tables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layers: Vec<LayerFields>,
    /// How weights start.
    #[serde(default = "default_init")]
    pub weight_init: InitSpec,
    /// How biases start.
    #[serde(default = "default_init")]
    pub bias_init: InitSpec,
    /// Start from weights saved by an earlier run (a safetensors file).
    pub load: Option<PathBuf>,
}

/// The kind of network `[model]` builds.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Softmax regression: inputs straight to classes.
    Linear,
    /// Fully connected hidden layers between them.
    Mlp,
    /// torchvision's AlexNet.
    Alexnet,
    /// The layers of `layers`.
    Sequential,
}

/// One layer of `[[model.layers]]`: a `type` and the fields that type takes
/// (any other field is an error). The input shape comes from the data (MNIST
/// [1, 28, 28], faces [channels, size, size], a backbone's output); shapes are
/// inferred when the file is checked. Parameters are named as
/// torch.nn.Sequential names them: `layers.<index>.weight` (index from 0).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LayerFields {
    /// "conv2d", "max_pool2d", "avg_pool2d", "relu", "tanh", "sigmoid",
    /// "dropout", "flatten" or "linear".
    #[serde(rename = "type")]
    pub kind: String,
    /// The layer's parameter prefix instead of `layers.<index>` (dotted words
    /// of letters, digits and '_'), e.g. "conv1" for `conv1.weight`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// conv2d: output channels; linear: output features (required for both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out: Option<usize>,
    /// conv2d and pooling: side of the square window (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernel: Option<usize>,
    /// conv2d (default 1) and pooling (default: the kernel): window step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stride: Option<usize>,
    /// conv2d and pooling: zeros added on each side (default 0; pooling at
    /// most half the kernel).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub padding: Option<usize>,
    /// conv2d: channel groups, dividing input and output channels (default 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub groups: Option<usize>,
    /// conv2d and linear: add a bias (default true).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias: Option<bool>,
    /// dropout: probability of zeroing each value while training, in [0, 1) (required).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p: Option<f32>,
    /// conv2d and linear: how this layer's weight starts (default: model.weight_init).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub weight_init: Option<InitSpec>,
    /// conv2d and linear: how this layer's bias starts (default: model.bias_init).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bias_init: Option<InitSpec>,
}

/// An activation between an MLP's layers.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ActivationName {
    /// max(0, x).
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + exp(-x)).
    Sigmoid,
}

fn default_activation() -> ActivationName {
    ActivationName::Relu
}

/// An initialiser: `{ kind = "uniform", lo = 0.0, hi = 1.0 }`,
/// `{ kind = "normal", mean = 0.0, std = 1.0 }`, `{ kind = "zeros" }` or
/// `{ kind = "fan_in" }` (PyTorch's default for linear layers).
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq)]
#[serde(try_from = "InitFields", into = "InitFields")]
pub enum InitSpec {
    /// Every value 0.
    Zeros,
    /// Uniform in `[lo, hi)`.
    #[allow(missing_docs)] // the bounds' names say it
    Uniform { lo: f32, hi: f32 },
    /// Normal with this mean and standard deviation.
    #[allow(missing_docs)] // the parameters' names say it
    Normal { mean: f32, std: f32 },
    /// Uniform in `[-1/sqrt(fan_in), 1/sqrt(fan_in))`, PyTorch's default for linear layers.
    FanIn,
}

/// An initialiser as written: every field optional, so that a field the
/// kind does not take is an error (serde's tagged enums let unit variants
/// ignore unknown keys).
#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct InitFields {
    kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lo: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hi: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    mean: Option<f32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    std: Option<f32>,
}

impl TryFrom<InitFields> for InitSpec {
    type Error = String;

    fn try_from(f: InitFields) -> Result<InitSpec, String> {
        let given: Vec<&str> = [("lo", f.lo), ("hi", f.hi), ("mean", f.mean), ("std", f.std)]
            .iter()
            .filter(|(_, v)| v.is_some())
            .map(|(k, _)| *k)
            .collect();
        let (spec, takes): (InitSpec, &[&str]) = match f.kind.as_str() {
            "zeros" => (InitSpec::Zeros, &[]),
            "fan_in" => (InitSpec::FanIn, &[]),
            "uniform" => match (f.lo, f.hi) {
                (Some(lo), Some(hi)) => (InitSpec::Uniform { lo, hi }, &["lo", "hi"]),
                _ => return Err("kind \"uniform\" needs lo and hi".into()),
            },
            "normal" => match (f.mean, f.std) {
                (Some(mean), Some(std)) => (InitSpec::Normal { mean, std }, &["mean", "std"]),
                _ => return Err("kind \"normal\" needs mean and std".into()),
            },
            other => {
                return Err(format!(
                    "unknown initialiser kind `{other}`, expected one of `zeros`, `uniform`, `normal`, `fan_in`"
                ))
            }
        };
        if let Some(extra) = given.iter().find(|k| !takes.contains(k)) {
            return Err(format!("kind \"{}\" takes no `{extra}`", f.kind));
        }
        Ok(spec)
    }
}

impl From<InitSpec> for InitFields {
    fn from(s: InitSpec) -> InitFields {
        match s {
            InitSpec::Zeros => InitFields { kind: "zeros".into(), ..Default::default() },
            InitSpec::FanIn => InitFields { kind: "fan_in".into(), ..Default::default() },
            InitSpec::Uniform { lo, hi } => {
                InitFields { kind: "uniform".into(), lo: Some(lo), hi: Some(hi), ..Default::default() }
            }
            InitSpec::Normal { mean, std } => {
                InitFields { kind: "normal".into(), mean: Some(mean), std: Some(std), ..Default::default() }
            }
        }
    }
}

fn default_init() -> InitSpec {
    InitSpec::FanIn
}

/// A grid of random training samples, one row per class.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Samples {
    /// Samples per class (columns of the grid).
    #[serde(default = "ten")]
    pub per_class: usize,
}

fn ten() -> usize {
    10
}

/// The tape's gradient of the summed cross-entropy against central
/// differences of the same cost. A linear model is checked against its cost
/// computed in f64 over the whole training set (report part 3); any other
/// model on `random` entries of every parameter tensor, biases too, with the
/// cost summed in f64 from the network's f32 logits over a few examples.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gradcheck {
    /// Step of the central difference (default 1e-4).
    pub eps: Option<f64>,
    /// Weights of a linear model to check, as (input pixel i, class j) in the
    /// report's W[i, j] (W is 784 x 10 there; our weight is its transpose).
    #[serde(default)]
    pub directions: Vec<[usize; 2]>,
    /// A linear model: also check this many random weights and every bias.
    /// Other models: this many random entries of every parameter tensor (at
    /// least one each, at most all of a tensor's).
    #[serde(default)]
    pub random: usize,
    /// The cost is over the first this many training examples (default: the
    /// whole training set for a linear model, 8 for other models).
    pub examples: Option<usize>,
    /// A linear model's entry passes if |analytic - numeric| <= tolerance *
    /// max(1, |numeric|) (default 1e-3). Another model's if |analytic -
    /// numeric| <= tolerance * max(|numeric|, the largest |analytic| of its
    /// tensor) (default 0.1: the f32 forward pass rounds the cost); and an
    /// entry whose difference quotients at eps and eps / 2 disagree by more
    /// than that is skipped: a ReLU or max-pool kink lies within the step.
    pub tolerance: Option<f64>,
}

impl Gradcheck {
    /// The step and tolerance for a linear model or another.
    pub fn eps_tolerance(&self, linear: bool) -> (f64, f64) {
        (self.eps.unwrap_or(1e-4), self.tolerance.unwrap_or(if linear { 1e-3 } else { 0.1 }))
    }
}

/// Try each value of one field, train, and keep the value with the best
/// final validation accuracy for the `train` stage.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// The field to vary, as `section.key` (e.g. "train.lr").
    pub key: String,
    /// The values to try.
    pub values: Vec<toml::Value>,
    /// The metric that selects: "validation_accuracy" at the last iteration
    /// or "best_validation_accuracy" over the run (higher is better), or
    /// "final_loss" (lower is better).
    #[serde(default = "default_select")]
    pub select: SelectMetric,
}

/// How a sweep or trials pick the best setting.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SelectMetric {
    /// The final validation accuracy (higher is better).
    ValidationAccuracy,
    /// The best validation accuracy over the run (higher is better).
    BestValidationAccuracy,
    /// The final training loss (lower is better).
    FinalLoss,
}

fn default_select() -> SelectMetric {
    SelectMetric::ValidationAccuracy
}

/// Train the model.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Train {
    /// "sgd" (with optional momentum, the report's form v = m v + lr g) or "adam".
    pub optimizer: OptimizerName,
    /// Learning rate.
    pub lr: f32,
    /// Momentum of "sgd" (0 = plain gradient descent).
    #[serde(default)]
    pub momentum: f32,
    /// Optimiser steps (when `epochs` is 0).
    #[serde(default)]
    pub iterations: usize,
    /// Epochs of the report's faces schedule: each epoch shuffles the training
    /// set into `batches_per_epoch` mini-batches and takes `steps_per_batch`
    /// steps on each, measuring accuracies after each mini-batch. 0 = use
    /// `iterations` instead.
    #[serde(default)]
    pub epochs: usize,
    /// Mini-batches per epoch (with `epochs`).
    #[serde(default = "one")]
    pub batches_per_epoch: usize,
    /// Steps on each mini-batch (with `epochs`).
    #[serde(default = "one")]
    pub steps_per_batch: usize,
    /// Examples per step (0 = the whole training set every step). With
    /// `epochs`: each epoch is shuffled mini-batches of this size (the last
    /// one smaller), accuracies measured after each epoch.
    #[serde(default)]
    pub batch_size: usize,
    /// "sum" (the report's cost for MNIST) or "mean" over the batch.
    #[serde(default = "default_loss")]
    pub loss: LossReduction,
    /// Measure accuracies every N steps (and after the last).
    #[serde(default = "fifty")]
    pub eval_every: usize,
    /// Save the trained weights under this name in the output folder ("" saves none).
    #[serde(default = "default_save")]
    pub save: String,
    /// File name of the learning-curve figure (named after the report's figure).
    #[serde(default = "default_curve_figure")]
    pub curve_figure: String,
    /// File name of the figure of the first layer's weights.
    #[serde(default = "default_weights_figure")]
    pub weights_figure: String,
    /// Save a checkpoint (weights, optimiser and loop state) every N steps,
    /// so `nabla FILE --resume` continues an interrupted run (0: never).
    #[serde(default)]
    pub checkpoint_every: usize,
    /// How a training uses the ranks of `mpirun -np N` (a build with
    /// `--features mpi`). "none": the independent trainings of a sweep,
    /// trials or cross-validation are shared out over the ranks. "data":
    /// every rank takes its slice of each mini-batch and the gradients are
    /// summed over the ranks in rank order (a mini-batch needs at least one
    /// example per rank). In one process both train alike.
    #[serde(default)]
    pub parallel: Parallel,
}

impl Train {
    /// Optimiser steps in all for `train` training examples, or `None` if
    /// the product overflows.
    pub fn total_steps(&self, train: usize) -> Option<usize> {
        if self.epochs > 0 && self.batch_size > 0 {
            self.epochs.checked_mul(train.div_ceil(self.batch_size))
        } else if self.epochs > 0 {
            self.epochs.checked_mul(self.batches_per_epoch)?.checked_mul(self.steps_per_batch)
        } else {
            Some(self.iterations)
        }
    }
}

fn default_curve_figure() -> String {
    "learning_curve.png".into()
}

fn default_weights_figure() -> String {
    "weights.png".into()
}

/// The optimiser that trains the model.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerName {
    /// SGD, with optional momentum.
    Sgd,
    /// Adam, as PyTorch's.
    Adam,
}

/// How training uses the ranks of an MPI run.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum Parallel {
    #[default]
    /// Each rank trains on its own (or one process).
    None,
    /// Data-parallel: each rank takes a slice of every mini-batch.
    Data,
}

/// How the loss combines a mini-batch's examples.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LossReduction {
    /// The sum over the examples.
    Sum,
    /// The mean over the examples.
    Mean,
}

fn default_loss() -> LossReduction {
    LossReduction::Sum
}

fn fifty() -> usize {
    50
}

fn one() -> usize {
    1
}

fn default_save() -> String {
    "weights.safetensors".into()
}

/// The cost over a grid of two weights around their trained values, with
/// the paths of gradient descent with and without momentum drawn on it.
/// Name the two weights either as `weights` (a linear model's W[i, j]) or
/// as `tensor` and `entries` (any model's parameters).
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Contour {
    /// The two weights of a linear model, as (input pixel i, class j) in the
    /// report's W[i, j].
    pub weights: Option<[[usize; 2]; 2]>,
    /// Or: the parameter tensor the two entries are in, by its name in the
    /// network table (e.g. "layers.0.weight", "fc1.bias").
    pub tensor: Option<String>,
    /// With `tensor`: its two entries, each a flat index (e.g. [5, 17]) or one
    /// index per dimension (e.g. [[0, 0, 2, 2], [1, 0, 2, 2]]). A model other
    /// than linear evaluates the cost with forward passes of the network over
    /// the training set (`data.train_limit` bounds it).
    pub entries: Option<[EntryIndex; 2]>,
    /// The grid spans trained value +- span on each axis.
    #[serde(default = "default_span")]
    pub span: f32,
    /// Grid points per axis.
    #[serde(default = "default_grid")]
    pub grid: usize,
    /// Where the trajectories start, as offsets from the trained values.
    pub start: [f32; 2],
    /// Learning rate of the trajectories.
    pub lr: f32,
    /// Steps of each trajectory.
    pub steps: usize,
    /// Momentum of the second trajectory.
    pub momentum: f32,
    /// Also draw the surface for these two weights of a linear model (the
    /// report's edge pixels).
    pub edge_weights: Option<[[usize; 2]; 2]>,
}

/// An entry of a tensor: a flat index, or one index per dimension.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(untagged)]
pub enum EntryIndex {
    /// The index into the tensor's row-major values.
    Flat(usize),
    /// One index per axis.
    Multi(Vec<usize>),
}

impl EntryIndex {
    /// The flat (row-major) index in a tensor of `shape`, or why there is
    /// none (an [`Error::Format`](crate::Error::Format)).
    pub fn flat(&self, shape: &[usize]) -> crate::Result<usize> {
        let numel: usize = shape.iter().product();
        match self {
            EntryIndex::Flat(i) if *i < numel => Ok(*i),
            EntryIndex::Flat(i) => {
                Err(crate::Error::format(format!("flat index {i} is outside the tensor's {numel} entries {shape:?}")))
            }
            EntryIndex::Multi(ix) if ix.len() != shape.len() || ix.iter().zip(shape).any(|(i, d)| i >= d) => {
                Err(crate::Error::format(format!("index {ix:?} is outside the tensor's shape {shape:?}")))
            }
            EntryIndex::Multi(ix) => Ok(ix.iter().zip(shape).fold(0, |a, (i, d)| a * d + i)),
        }
    }
}

fn default_span() -> f32 {
    2.0
}

fn default_grid() -> usize {
    41
}

/// Chains of N fully connected layers of K neurons (tanh, softmax
/// cross-entropy, a batch of K): the time to get every weight's gradient by
/// naive path sums, by backpropagation on the tape, and by finite differences.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scaling {
    /// Depths N to time, at K = `width_for_depths`.
    pub depths: Vec<usize>,
    /// K while the depth varies.
    pub width_for_depths: usize,
    /// Widths K to time, at N = `depth_for_widths`.
    pub widths: Vec<usize>,
    /// N while the width varies.
    pub depth_for_widths: usize,
    /// A method stops at the first point that takes (or, extrapolated, would
    /// take) longer than this many seconds.
    #[serde(default = "default_budget")]
    pub budget_seconds: f64,
    /// At least this many timed runs per point (the median is kept).
    #[serde(default = "default_repeats")]
    pub repeats: usize,
    /// Also time central finite differences.
    #[serde(default)]
    pub finite_differences: bool,
}

fn default_budget() -> f64 {
    1.0
}

fn default_repeats() -> usize {
    5
}

/// The data seeds to cross-validate over.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Crossval {
    /// One training run per seed, e.g. [0, 1, 2, 3].
    pub seeds: Vec<u64>,
}

/// One set of hyper-parameters to try, as `section.key` overrides.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Trial {
    /// A label for the report.
    pub name: String,
    /// Overrides, e.g. `{ "model.hidden" = [25], "train.lr" = 1e-3 }`.
    pub set: BTreeMap<String, toml::Value>,
}

/// The first layer's weights drawn as images: a first `linear` layer's
/// weights into each unit over the image's pixels (with the class each unit
/// favours when a ReLU or sigmoid and a linear layer follow it, report part
/// 9), or a first `conv2d` layer's filters.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Units {
    /// Images per row of the grid (at most the first layer's units or filters).
    #[serde(default = "five")]
    pub columns: usize,
}

fn five() -> usize {
    5
}
