//! The stages a pipeline can have, and what they share.

mod backbone;
mod contour;
mod finetune;
mod gradcheck;
mod samples;
pub mod scaling;
mod softmax64;
mod train;
mod units;

use super::checkpoint::Checkpoints;
use super::load::Loaded;
use super::output::Outputs;
use super::report::Report;
use super::run::RunError;
use super::schema::{
    ActivationName, BadImage, ColorName, Data, Dataset as DatasetName, InitSpec, Model, ModelKind, Normalize, Pipeline,
};
use crate::data::faces::{self, Color, OnBadImage, SplitSpec};
use crate::data::{mnist, Dataset};
use crate::nn::{Activation, Init, Mlp, Params};
use crate::tensor::Rng;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};

/// What the stages of one run share: the file, the outputs, the report, and
/// the model's current parameters (a stage that trains leaves them trained
/// for the next).
pub(crate) struct Ctx<'a> {
    pub loaded: &'a Loaded,
    pub out: &'a mut Outputs,
    pub report: &'a mut Report,
    pub progress: bool,
    pub params: Option<Params>,
    /// Where the backbone's weights came from, once loaded.
    pub backbone_source: Mutex<Option<String>>,
    pub checkpoints: Checkpoints,
}

impl<'a> Ctx<'a> {
    pub fn new(
        loaded: &'a Loaded,
        out: &'a mut Outputs,
        report: &'a mut Report,
        progress: bool,
        checkpoints: Checkpoints,
    ) -> Result<Ctx<'a>, RunError> {
        Ok(Ctx { loaded, out, report, progress, params: None, backbone_source: Mutex::new(None), checkpoints })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.loaded.pipeline
    }

    /// An error of `stage`, naming the pipeline file.
    pub fn err(&self, stage: &'static str, message: impl std::fmt::Display) -> RunError {
        RunError::Stage { file: self.loaded.file.clone(), stage, message: message.to_string() }
    }

    /// The data set `d` describes, loaded once per process and settings;
    /// `train_limit` applied.
    pub fn data_for(&self, d: &Data) -> Result<Arc<Dataset>, RunError> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<Dataset>>>> = OnceLock::new();
        let root = d.resolved_root();
        let key = format!(
            "{}|{}",
            root.display(),
            serde_json::to_string(&Data { train_limit: 0, ..d.clone() }).expect("serialises")
        );
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let full = match cache.get(&key) {
            Some(m) => m.clone(),
            None => {
                let loaded = match d.dataset {
                    DatasetName::Mnist => mnist::load(&root).map(|m| m.into_dataset()),
                    DatasetName::Faces => {
                        let color = if d.color == ColorName::Gray { Color::Gray } else { Color::Rgb };
                        let split = SplitSpec {
                            train: d.split.train,
                            train_for: d.split.train_for.clone(),
                            test: d.split.test,
                            validation: d.split.validation,
                            validation_exact: d.split.exact_validation,
                        };
                        let bad = if d.on_bad_image == BadImage::Skip { OnBadImage::Skip } else { OnBadImage::Fail };
                        faces::load(&root, &d.actors, d.size, color, d.scale, &split, d.seed, bad).map(|f| {
                            if !f.skipped.is_empty() {
                                eprintln!(
                                    "warning: skipped {} unreadable images in {}",
                                    f.skipped.len(),
                                    root.display()
                                );
                            }
                            f.into_dataset(d.size, color)
                        })
                    }
                };
                let mut ds = loaded.map_err(|e| self.err("data", e))?;
                if d.normalize == Normalize::MeanMaxAbs {
                    for s in [&mut ds.train, &mut ds.validation, &mut ds.test] {
                        s.normalize_per_row();
                    }
                }
                if let Some(b) = &self.pipeline().backbone {
                    let (features, source) = backbone::extract(self, b, &ds)?;
                    *self.backbone_source.lock().unwrap_or_else(|e| e.into_inner()) = Some(source);
                    ds = features;
                }
                let m = Arc::new(ds);
                cache.insert(key, m.clone());
                m
            }
        };
        if d.train_limit == 0 {
            return Ok(full);
        }
        if d.train_limit > full.train.len() {
            return Err(self.err(
                "data",
                format!(
                    "data.train_limit: {} is larger than the {} training images in {}",
                    d.train_limit,
                    full.train.len(),
                    root.display()
                ),
            ));
        }
        Ok(Arc::new(Dataset { train: full.train.head(d.train_limit), ..(*full).clone() }))
    }

    /// The data set of this pipeline.
    pub fn data(&self) -> Result<Arc<Dataset>, RunError> {
        self.data_for(&self.pipeline().data)
    }

    /// Stage a file in the output folder.
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), RunError> {
        Ok(self.out.write(name, bytes)?)
    }
}

/// The network a `[model]` section describes, for `data`'s inputs and classes.
pub(crate) fn network(m: &Model, data: &Dataset) -> Mlp {
    let mut widths = vec![data.inputs()];
    if m.kind == ModelKind::Mlp {
        widths.extend(&m.hidden);
    }
    widths.push(data.classes());
    let act = match m.activation {
        ActivationName::Relu => Activation::Relu,
        ActivationName::Tanh => Activation::Tanh,
        ActivationName::Sigmoid => Activation::Sigmoid,
    };
    Mlp::new(&widths, act).expect("validated widths")
}

pub(crate) fn init(spec: InitSpec) -> Init {
    match spec {
        InitSpec::Zeros => Init::Zeros,
        InitSpec::Uniform { lo, hi } => Init::Uniform { lo, hi },
        InitSpec::Normal { mean, std } => Init::Normal { mean, std },
        InitSpec::FanIn => Init::FanIn,
    }
}

/// Fresh parameters for `m` from `seed`, or the file `m.load` names.
pub(crate) fn fresh_params(ctx: &Ctx, m: &Model, data: &Dataset, seed: u64) -> Result<Params, RunError> {
    let net = network(m, data);
    let mut params = Params::new();
    net.init(&mut params, init(m.weight_init), init(m.bias_init), &mut Rng::new(seed));
    if let Some(path) = &m.load {
        load_weights(ctx, &mut params, path)?;
    }
    if let Some((name, i, v)) = params.first_non_finite() {
        let from = match &m.load {
            Some(path) => format!("model.load: {} holds", path.display()),
            None => "model.weight_init / model.bias_init give".to_string(),
        };
        return Err(ctx.err("model", format!("{from} {v} at index {i} of '{name}'; weights must be finite")));
    }
    Ok(params)
}

fn load_weights(ctx: &Ctx, params: &mut Params, path: &Path) -> Result<(), RunError> {
    let bytes = std::fs::read(path).map_err(|e| {
        ctx.err(
            "model",
            format!("model.load: cannot read {}: {e} (run the pipeline that saves it first)", path.display()),
        )
    })?;
    params.load_safetensors(&bytes).map_err(|e| ctx.err("model", format!("model.load: {}: {e}", path.display())))
}

/// The model's current parameters (created on first use).
pub(crate) fn params<'c>(ctx: &'c mut Ctx) -> Result<&'c mut Params, RunError> {
    if ctx.params.is_none() {
        let m = ctx.pipeline().model.clone().expect("validated: stages with a model have [model]");
        let seed = ctx.pipeline().seed;
        let data = ctx.data()?;
        ctx.params = Some(fresh_params(ctx, &m, &data, seed)?);
    }
    Ok(ctx.params.as_mut().expect("just set"))
}

/// Run the stages present in the file, in their fixed order.
pub(crate) fn run_all(ctx: &mut Ctx) -> Result<(), RunError> {
    let p = ctx.pipeline().clone();
    if let Some(s) = &p.samples {
        samples::run(ctx, s)?;
    }
    if let Some(g) = &p.gradcheck {
        gradcheck::run(ctx, g)?;
    }
    let mut chosen = p.clone();
    if let Some(s) = &p.sweep {
        chosen = train::sweep(ctx, s)?;
    }
    if !p.trials.is_empty() {
        // Trials start from the sweep's choice, as `check` validated them.
        chosen = train::trials(ctx, &chosen, &p.trials)?;
    }
    if let Some(t) = &chosen.train {
        train::run(ctx, &chosen, t)?;
    }
    if let Some(c) = &p.contour {
        contour::run(ctx, c)?;
    }
    if let Some(f) = &p.finetune {
        finetune::run(ctx, f)?;
    }
    if let Some(u) = &p.units {
        units::run(ctx, u)?;
    }
    if let Some(s) = &p.scaling {
        scaling::run(ctx, s)?;
    }
    let source = ctx.backbone_source.lock().unwrap_or_else(|e| e.into_inner()).clone();
    if let Some(source) = source {
        let random = source == "random-init";
        ctx.report.set("weights", if random { "random-init".to_string() } else { source.clone() });
        ctx.report.section(
            "Backbone",
            if random {
                "**The AlexNet backbone ran with seeded random weights** (`weights = \"random-init\"`): the pretrained \
                 file was not found and the pipeline says `if_missing = \"random\"`. These are features of an untrained \
                 network, so the accuracies say how well the head does on random convolutional features, not what the \
                 report measured."
                    .to_string()
            } else {
                format!("AlexNet features (9216 per image) from pretrained weights, {source}.")
            },
        );
    }
    Ok(())
}
