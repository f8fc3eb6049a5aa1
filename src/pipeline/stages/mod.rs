//! The stages a pipeline can have, and what they share.

pub(crate) mod backbone;
mod contour;
pub(crate) mod gradcheck;
pub(crate) mod mistakes;
mod run_folder;
mod samples;
pub mod scaling;
mod softmax64;
pub(crate) mod train;
pub(crate) mod units;

use super::checkpoint::Checkpoints;
use super::load::Loaded;
use super::model::{build, init};
use super::output::Outputs;
use super::report::Report;
use super::run::RunError;
use super::schema::{Backbone, BadImage, ColorName, Data, Dataset as DatasetName, Model, Normalize, Pipeline};
use crate::data::faces::{self, Color, OnBadImage, SplitSpec};
use crate::data::{mnist, Dataset};
use crate::error::Error;
use crate::nn::{Params, Sequential};
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
        mut checkpoints: Checkpoints,
    ) -> Result<Ctx<'a>, RunError> {
        // What the run computes; how often it checkpoints does not change it.
        let mut settings = loaded.pipeline.clone();
        settings.train.iter_mut().for_each(|t| t.checkpoint_every = 0);
        checkpoints.open(&settings).map_err(|message| RunError::Stage {
            file: loaded.file.clone(),
            stage: "resume",
            source: Box::new(message.into()),
        })?;
        Ok(Ctx { loaded, out, report, progress, params: None, backbone_source: Mutex::new(None), checkpoints })
    }

    pub fn pipeline(&self) -> &Pipeline {
        &self.loaded.pipeline
    }

    /// An error of `stage`, naming the pipeline file; `source` is why (an
    /// [`Error`] kept as it is, or a message).
    pub fn err(&self, stage: &'static str, source: impl Into<Error>) -> RunError {
        RunError::Stage { file: self.loaded.file.clone(), stage, source: Box::new(source.into()) }
    }

    /// The data set `d` describes (through the backbone, if there is one),
    /// loaded once per process and content; `train_limit` applied.
    pub fn data_for(&self, d: &Data) -> Result<Arc<Dataset>, RunError> {
        self.load(d, self.pipeline().backbone.as_ref())
    }

    /// The images `d` describes, never through the backbone (for figures).
    pub fn images_for(&self, d: &Data) -> Result<Arc<Dataset>, RunError> {
        self.load(d, None)
    }

    fn load(&self, d: &Data, backbone: Option<&Backbone>) -> Result<Arc<Dataset>, RunError> {
        /// The data set and where its backbone's weights came from.
        type Cached = (Arc<Dataset>, Option<String>);
        static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
        let root = d.resolved_root();
        let key = self.content_key(d, &root, backbone);
        let cache = CACHE.get_or_init(Default::default);
        let mut cache = cache.lock().unwrap_or_else(|e| e.into_inner());
        let (full, source) = match cache.get(&key) {
            Some(m) => m.clone(),
            None => {
                let mut ds = images(d, &root).map_err(|e| self.err("data", e))?;
                let mut source = None;
                if let Some(b) = backbone {
                    let (features, from) = backbone::extract(self, b, &ds)?;
                    (ds, source) = (features, Some(from));
                }
                let m = (Arc::new(ds), source);
                cache.insert(key, m.clone());
                m
            }
        };
        // A data set from the cache keeps its provenance too.
        if source.is_some() {
            *self.backbone_source.lock().unwrap_or_else(|e| e.into_inner()) = source;
        }
        if d.train_limit == 0 {
            return Ok(full);
        }
        if d.train_limit > full.train.len() {
            let message = format!(
                "{} is larger than the {} training images in {}",
                d.train_limit,
                full.train.len(),
                root.display()
            );
            return Err(self.err("data", Error::Format { key: Some("data.train_limit".into()), message }));
        }
        Ok(Arc::new(Dataset { train: full.train.head(d.train_limit), ..(*full).clone() }))
    }

    /// Everything that decides what [`Ctx::data_for`] holds: the folder and
    /// the data section (bar `train_limit`, applied after), and the backbone
    /// the images go through: its kind, which weights file (by its identity
    /// on disk, as a file can be replaced between pipelines), what to do
    /// when it is missing, and the seed of random weights.
    fn content_key(&self, d: &Data, root: &Path, backbone: Option<&Backbone>) -> String {
        let p = self.pipeline();
        let backbone = backbone.map(|b| {
            let weights = b.weights.as_ref().map(|w| (w.clone(), file_identity(w)));
            (b.kind, &b.layers, weights, b.if_missing, p.seed)
        });
        // Paths by Debug: exact, and never an error (JSON refuses non-UTF-8 paths).
        let data = Data { train_limit: 0, root: None, ..d.clone() };
        format!("{root:?}|{}|{backbone:?}", serde_json::to_string(&data).expect("a data section serialises"))
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

/// The images `d` describes, read from `root`: split, scaled, normalised as
/// the data section says (no backbone, no `train_limit`).
pub(crate) fn images(d: &Data, root: &Path) -> crate::Result<Dataset> {
    let loaded = match d.dataset {
        DatasetName::Mnist => mnist::load(root).map(|m| m.into_dataset()),
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
            faces::load(root, &d.actors, d.size, color, d.scale, &split, d.seed, bad).map(|f| {
                if !f.skipped.is_empty() {
                    crate::say!("warning: skipped {} unreadable images in {}", f.skipped.len(), root.display());
                }
                f.into_dataset(d.size, color)
            })
        }
    };
    let mut ds = loaded?;
    if d.normalize == Normalize::MeanMaxAbs {
        for s in [&mut ds.train, &mut ds.validation, &mut ds.test] {
            s.normalize_per_row();
        }
    }
    Ok(ds)
}

/// The network a `[model]` section describes, for `data`'s examples and
/// classes (checked for the shapes the file implies; an error here means the
/// data is not what the file said).
pub(crate) fn network(ctx: &Ctx, m: &Model, data: &Dataset) -> Result<Sequential, RunError> {
    build(m, &data.example_shape(), data.classes()).map_err(|e| ctx.err("model", e))
}

/// Fresh parameters for `m` from `seed`, or the file `m.load` names.
pub(crate) fn fresh_params(ctx: &Ctx, m: &Model, data: &Dataset, seed: u64) -> Result<Params, RunError> {
    let net = network(ctx, m, data)?;
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

/// Which file is at `path` (device, inode, size, modification time), or
/// None when there is none.
fn file_identity(path: &Path) -> Option<(u64, u64, u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some((m.dev(), m.ino(), m.size(), m.mtime(), m.mtime_nsec()))
}

/// Replace `params` with the file's tensors of the same names and shapes.
fn load_weights(ctx: &Ctx, params: &mut Params, path: &Path) -> Result<(), RunError> {
    // The model's tensors and a header: a larger file is not its weights.
    let limit = (params.numel() as u64).saturating_mul(4).saturating_add(1 << 20);
    let bytes = crate::files::read_capped(path, limit).map_err(|e| {
        let why = match e {
            crate::files::ReadError::Io(e) => format!("cannot read {}: {e}", path.display()),
            other => format!("{} {other}", path.display()),
        };
        ctx.err("model", format!("model.load: {why} (run the pipeline that saves it first)"))
    })?;
    params.load_safetensors(&bytes).map_err(|e| ctx.err("model", format!("model.load: {}: {e}", path.display())))?;
    for (name, t) in params.iter() {
        if let Some(v) = t.data().iter().find(|v| !v.is_finite()) {
            return Err(ctx.err("model", format!("model.load: {}: tensor '{name}' holds {v}", path.display())));
        }
    }
    Ok(())
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
    if let Some(m) = &p.model {
        // The network as it runs, for the data as loaded.
        let data = ctx.data()?;
        let net = network(ctx, m, &data)?;
        ctx.report.section(
            "Network",
            format!("One example in, logits out; FLOPs of the forward pass per example.\n\n{}", net.summary()),
        );
    }
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
        mistakes::run(ctx, &chosen)?;
        run_folder::write(ctx, &chosen, t)?;
    }
    if !crate::distributed::is_root() {
        // The ranks of an MPI job share the trainings; rank 0 does the rest.
        return Ok(());
    }
    if let Some(c) = &p.contour {
        contour::run(ctx, c)?;
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
                format!("Backbone features from pretrained weights, {source}.")
            },
        );
    }
    Ok(())
}
