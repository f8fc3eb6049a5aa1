//! Range checks the schema cannot express, on one resolved pipeline (after
//! `--set`). Sweep values and trials are variants of it: `load.rs` builds each
//! once and checks it here, with no recursion. Every message names the key,
//! and where the value came from: a line of the file or a `--set`.

use super::budget::MAX_FLOPS;
use super::model::{build, init_ok};
use super::names::file_name;
use super::schema::{Dataset, ModelKind, Pipeline};

/// Where values came from, for messages.
pub(crate) struct Source<'a> {
    pub text: &'a str,
    pub overrides: &'a [String],
    /// The variant being checked ("trial 'x'", "sweep.values: train.lr = 2"), if any.
    pub variant: Option<String>,
}

impl Source<'_> {
    /// "line 12: train.lr: what", "--set train.lr=-1: train.lr: what".
    pub fn at(&self, section: &str, key: &str, what: impl std::fmt::Display) -> String {
        let path = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
        let from_set = self.overrides.iter().rev().find(|o| {
            let k = o.split_once('=').map_or(o.as_str(), |(k, _)| k).trim();
            k == path || path.starts_with(&format!("{k}.")) || k.starts_with(&format!("{path}."))
        });
        let origin = match from_set {
            Some(o) => format!("--set {}: ", crate::terminal::inline(o)),
            None => line_of(self.text, section, key)
                .or_else(|| layer_line(self.text, &path, &what.to_string()))
                .map(|n| format!("line {n}: "))
                .unwrap_or_default(),
        };
        match &self.variant {
            Some(v) => format!("{v}: {path}: {what}"),
            None => format!("{origin}{path}: {what}"),
        }
    }
}

/// The line of `key` in `[section]` of `text`, for messages ("line 12").
pub(crate) fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (n, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.starts_with('[') {
            current = l.trim_matches(|c| c == '[' || c == ']').trim().to_string();
        } else if current == section && l.split('=').next().map(str::trim) == Some(key) {
            return Some(n + 1);
        }
    }
    None
}

/// The line of the `[[path]]` table a "layer N ..." message is about.
fn layer_line(text: &str, path: &str, what: &str) -> Option<usize> {
    let n: usize = what.strip_prefix("layer ")?.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()?;
    let header = format!("[[{path}]]");
    text.lines().enumerate().filter(|(_, l)| l.trim() == header).nth(n.checked_sub(1)?).map(|(i, _)| i + 1)
}

fn finite_positive(x: f64) -> bool {
    x > 0.0 && x.is_finite()
}

/// The examples' shape as the file implies it: inputs per example, classes,
/// and training examples at most (before any file is read).
pub(crate) struct DataShape {
    pub inputs: usize,
    pub classes: usize,
    pub train: usize,
    pub validation: usize,
    pub test: usize,
    /// Pixels per image before a backbone (channels x side x side).
    pub pixels: usize,
    /// One image's shape, `[channels, side, side]`.
    pub image: Vec<usize>,
    /// One example's shape as the model gets it: the image, or the
    /// backbone's output.
    pub example: Vec<usize>,
}

/// The widest MNIST can be: 60000 training images, 10000 test images split in two.
const MNIST_TRAIN: usize = 60000;

pub(crate) fn data_shape(p: &Pipeline) -> DataShape {
    let d = &p.data;
    let (image, classes, train, validation, test) = match d.dataset {
        Dataset::Mnist => {
            let train = if d.train_limit > 0 { d.train_limit.min(MNIST_TRAIN) } else { MNIST_TRAIN };
            ([1, 28, 28], 10, train, 5000, 5000)
        }
        Dataset::Faces => {
            let channels = if d.color == super::schema::ColorName::Rgb { 3 } else { 1 };
            let train = d.actors.iter().map(|a| *d.split.train_for.get(a).unwrap_or(&d.split.train)).sum::<usize>();
            let train = if d.train_limit > 0 { d.train_limit.min(train) } else { train };
            let n = d.actors.len();
            ([channels, d.size, d.size], n, train, n.saturating_mul(d.split.validation), n.saturating_mul(d.split.test))
        }
    };
    let pixels = image.iter().product();
    // A backbone that does not build is refused by `one`; meanwhile its
    // output is taken to be AlexNet's.
    let example = match &p.backbone {
        Some(b) => super::model::backbone(b, &image)
            .map_or(vec![256, 6, 6], |net| super::model::as_image(net.output()).to_vec()),
        None => image.to_vec(),
    };
    let inputs = example.iter().product();
    DataShape { inputs, classes, train, validation, test, pixels, image: image.to_vec(), example }
}

/// Checks of one resolved pipeline (its variants are checked by the caller).
pub(crate) fn one(p: &Pipeline, src: &Source) -> Result<(), String> {
    let at = |section: &str, key: &str, what: String| src.at(section, key, what);
    if p.version != 1 {
        return Err(at("", "version", format!("version {} is not supported (this nabla reads version 1)", p.version)));
    }
    // The name, like every output name, is checked in `names.rs`.
    for (key, v) in &p.reference {
        if !v.is_finite() {
            return Err(at("reference", key, format!("{v} is not a finite number")));
        }
    }
    let trains = p.sweep.is_some() || p.train.is_some() || !p.trials.is_empty();
    let needs_model =
        p.gradcheck.is_some() || p.sweep.is_some() || p.train.is_some() || p.contour.is_some() || p.units.is_some();
    if needs_model && p.model.is_none() {
        return Err(at(
            "",
            "model",
            "a [model] section is needed by the gradcheck, sweep, train, units and contour stages".into(),
        ));
    }
    if let Some(s) = &p.scaling {
        let sizes = s.depths.iter().chain(&s.widths).chain([&s.width_for_depths, &s.depth_for_widths]);
        if s.depths.len() < 2 || s.widths.len() < 2 || sizes.into_iter().any(|&v| v == 0 || v > 1024) {
            return Err(at(
                "scaling",
                "depths",
                "need at least two depths and two widths, each between 1 and 1024".into(),
            ));
        }
        if s.depths.len() > 64 || s.widths.len() > 64 {
            return Err(at("scaling", "depths", "at most 64 depths and 64 widths".into()));
        }
        if !(finite_positive(s.budget_seconds) && s.budget_seconds <= 600.0) {
            return Err(at("scaling", "budget_seconds", format!("{} is not in (0, 600]", s.budget_seconds)));
        }
        if s.repeats == 0 || s.repeats > 1000 {
            return Err(at("scaling", "repeats", format!("{} is not between 1 and 1000", s.repeats)));
        }
        // Each sweep's first point must fit the budget, or it draws nothing.
        use super::stages::scaling::Method;
        for (key, n, k) in [("depths", s.depths[0], s.width_for_depths), ("widths", s.depth_for_widths, s.widths[0])] {
            let least = Method::Paths.least_seconds(n, k);
            if least > s.budget_seconds {
                return Err(at(
                    "scaling",
                    key,
                    format!(
                        "the first point (N = {n}, K = {k}) takes at least {least:.1e} s by the naive method, over \
                         budget_seconds = {}: start the sweep smaller",
                        s.budget_seconds
                    ),
                ));
            }
        }
    }
    let d = &p.data;
    if d.dataset == Dataset::Faces {
        if d.actors.is_empty() {
            return Err(at("data", "actors", "faces need at least one actor".into()));
        }
        if d.actors.len() > 1000 {
            return Err(at("data", "actors", format!("{} actors; at most 1000", d.actors.len())));
        }
        for (i, a) in d.actors.iter().enumerate() {
            file_name(a).map_err(|e| at("data", "actors", format!("an actor is a file name prefix: {e}")))?;
            if d.actors[..i].contains(a) {
                return Err(at("data", "actors", format!("'{a}' is listed twice (each actor is one class)")));
            }
        }
        if let Some(a) = d.split.train_for.keys().find(|a| !d.actors.contains(a)) {
            return Err(at("data", "split", format!("split.train_for names '{a}', who is not in data.actors")));
        }
        if d.size == 0 || d.size > 1024 {
            return Err(at("data", "size", format!("{} is not between 1 and 1024", d.size)));
        }
        // Pixels are 0-255; a larger scale only makes sums overflow.
        if !(finite_positive(d.scale as f64) && d.scale <= 1.0) {
            return Err(at("data", "scale", format!("{} is not in (0, 1] (1/255 puts pixels in [0, 1])", d.scale)));
        }
        let counts =
            [d.split.train, d.split.test, d.split.validation].into_iter().chain(d.split.train_for.values().copied());
        if counts.into_iter().any(|c| c > 100_000) {
            return Err(at("data", "split", "at most 100000 images per actor in a split".into()));
        }
        if d.split.train == 0 || d.split.train_for.values().any(|&c| c == 0) {
            return Err(at("data", "split", "every actor needs at least one training image".into()));
        }
        if trains && (d.split.test == 0 || d.split.validation == 0) {
            return Err(at(
                "data",
                "split",
                "training measures validation and test accuracy: split.validation and split.test must be at least 1"
                    .into(),
            ));
        }
        let train = data_shape(p).train;
        if d.train_limit > train {
            return Err(at(
                "data",
                "train_limit",
                format!("{} is larger than the {train} training images the split takes", d.train_limit),
            ));
        }
    }
    if d.dataset == Dataset::Mnist && d.train_limit > MNIST_TRAIN {
        return Err(at(
            "data",
            "train_limit",
            format!("{} is larger than the {MNIST_TRAIN} MNIST training images", d.train_limit),
        ));
    }
    if let Some(c) = &p.crossval {
        if c.seeds.is_empty() || p.train.is_none() {
            return Err(at("crossval", "seeds", "needs at least one seed and a [train] section".into()));
        }
        if c.seeds.len() > 1000 {
            return Err(at("crossval", "seeds", format!("{} seeds; at most 1000", c.seeds.len())));
        }
        if let Some((i, s)) = c.seeds.iter().enumerate().find(|(i, s)| c.seeds[..*i].contains(s)) {
            return Err(at("crossval", "seeds", format!("seed {s} is listed twice (at {i})")));
        }
    }
    if !p.trials.is_empty() {
        if p.train.is_none() {
            return Err(at("", "trials", "trials need a [train] section".into()));
        }
        if p.trials.len() > 1000 {
            return Err(at("", "trials", format!("{} trials; at most 1000", p.trials.len())));
        }
        for (i, t) in p.trials.iter().enumerate() {
            if t.name.trim().is_empty() || t.name.len() > 200 || t.name.chars().any(char::is_control) {
                return Err(at("", "trials", format!("trial {}: a name of 1-200 printable characters", i + 1)));
            }
            if p.trials[..i].iter().any(|u| u.name == t.name) {
                return Err(at("", "trials", format!("two trials are named '{}'", t.name)));
            }
            if let Some(k) = t.set.keys().find(|k| !variable(k)) {
                return Err(at("", "trials", format!("trial '{}': '{k}' cannot vary between trials", t.name)));
            }
        }
    }
    if let Some(b) = &p.backbone {
        super::model::backbone(b, &data_shape(p).image).map_err(|e| {
            let (key, what) = e.split_once(": ").unwrap_or(("backbone.kind", &e));
            at("backbone", key.trim_start_matches("backbone."), what.to_string())
        })?;
    }
    if let Some(m) = &p.model {
        if m.hidden.len() > 100 {
            return Err(at("model", "hidden", format!("{} hidden layers; at most 100", m.hidden.len())));
        }
        for (key, spec) in [("weight_init", m.weight_init), ("bias_init", m.bias_init)] {
            init_ok(spec).map_err(|e| at("model", key, e))?;
        }
        let shape = data_shape(p);
        // Messages start with the key they concern: "model.layers: layer 3 ...".
        build(m, &shape.example, shape.classes).map_err(|e| {
            let (key, what) = e.split_once(": ").unwrap_or(("model.kind", &e));
            at("model", key.trim_start_matches("model."), what.to_string())
        })?;
    }
    if let Some(s) = &p.samples {
        if s.per_class == 0 || s.per_class > 100 {
            return Err(at("samples", "per_class", format!("{} is not between 1 and 100", s.per_class)));
        }
    }
    let shape = data_shape(p);
    if let Some(t) = &p.train {
        if !finite_positive(t.lr as f64) {
            return Err(at("train", "lr", format!("the learning rate must be positive, got {}", t.lr)));
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return Err(at("train", "momentum", format!("{} is not in [0, 1)", t.momentum)));
        }
        if t.iterations == 0 && t.epochs == 0 {
            return Err(at("train", "iterations", "must be at least 1".into()));
        }
        if t.epochs > 0 && (t.batches_per_epoch == 0 || t.steps_per_batch == 0) {
            return Err(at(
                "train",
                "batches_per_epoch",
                "batches_per_epoch and steps_per_batch must be at least 1".into(),
            ));
        }
        if t.epochs > 0 && t.batch_size > 0 && (t.batches_per_epoch != 1 || t.steps_per_batch != 1) {
            return Err(at(
                "train",
                "batch_size",
                "with epochs, give either batch_size (epochs of mini-batches of that size) or batches_per_epoch and \
                 steps_per_batch (the report's schedule), not both"
                    .into(),
            ));
        }
        if t.total_steps(shape.train).is_none() {
            return Err(at(
                "train",
                "epochs",
                format!(
                    "epochs x batches_per_epoch x steps_per_batch = {} x {} x {} does not fit in a step counter",
                    t.epochs, t.batches_per_epoch, t.steps_per_batch
                ),
            ));
        }
        if t.epochs > 0 && t.batches_per_epoch > shape.train {
            return Err(at(
                "train",
                "batches_per_epoch",
                format!(
                    "{} mini-batches of {} training examples would leave some empty",
                    t.batches_per_epoch, shape.train
                ),
            ));
        }
        if t.eval_every == 0 {
            return Err(at("train", "eval_every", "must be at least 1".into()));
        }
        if t.parallel == super::schema::Parallel::Data && !cfg!(feature = "mpi") {
            return Err(at(
                "train",
                "parallel",
                "\"data\" needs nabla built with `--features mpi` and run under mpirun (see the README)".into(),
            ));
        }
        if t.batch_size > shape.train {
            return Err(at(
                "train",
                "batch_size",
                format!("{} is larger than the {} training images", t.batch_size, shape.train),
            ));
        }
        let named = [("save", &t.save), ("curve_figure", &t.curve_figure), ("weights_figure", &t.weights_figure)];
        for (key, name) in named.into_iter().filter(|(key, name)| !(*key == "save" && name.is_empty())) {
            file_name(name).map_err(|e| at("train", key, e))?;
        }
    }
    if let Some(s) = &p.sweep {
        if s.values.is_empty() {
            return Err(at("sweep", "values", "needs at least one value".into()));
        }
        if s.values.len() > 1000 {
            return Err(at("sweep", "values", format!("{} values; at most 1000", s.values.len())));
        }
        if let Some((i, v)) = s.values.iter().enumerate().find(|(i, v)| s.values[..*i].contains(v)) {
            return Err(at("sweep", "values", format!("{v} is listed twice (value {})", i + 1)));
        }
        if p.train.is_none() {
            return Err(at("sweep", "key", "a sweep needs a [train] section to vary".into()));
        }
        if !variable(&s.key) {
            return Err(at(
                "sweep",
                "key",
                format!("'{}' cannot be swept (sweep seed, data.*, model.* or train.*)", s.key),
            ));
        }
    }
    let linear = p.model.as_ref().map(|m| m.kind) == Some(ModelKind::Linear);
    let weights = shape.inputs.saturating_mul(shape.classes);
    let in_w = |d: &[usize; 2]| d[0] < shape.inputs && d[1] < shape.classes;
    // The network the stages get (the model section has been checked above).
    let net = p.model.as_ref().and_then(|m| build(m, &shape.example, shape.classes).ok());
    let kind = p.model.as_ref().map_or(String::new(), |m| format!("{:?}", m.kind).to_lowercase());
    if let Some(g) = &p.gradcheck {
        if let Some(eps) = g.eps.filter(|&e| !finite_positive(e)) {
            return Err(at("gradcheck", "eps", format!("must be positive and finite, got {eps}")));
        }
        if let Some(t) = g.tolerance.filter(|&t| !finite_positive(t)) {
            return Err(at("gradcheck", "tolerance", format!("must be positive and finite, got {t}")));
        }
        if let Some(n) = g.examples {
            let most = if linear { shape.train } else { shape.train.min(MAX_GRADCHECK_EXAMPLES) };
            if n == 0 || n > most {
                return Err(at(
                    "gradcheck",
                    "examples",
                    format!(
                        "{n} is not between 1 and {most} (the {} training examples{})",
                        shape.train,
                        if linear { "" } else { ", at most 1000 through the network" }
                    ),
                ));
            }
        }
        if linear {
            if let Some(d) = g.directions.iter().find(|d| !in_w(d)) {
                return Err(at(
                    "gradcheck",
                    "directions",
                    format!("({}, {}) is outside W ({} x {})", d[0], d[1], shape.inputs, shape.classes),
                ));
            }
            if g.directions.len() > 10_000 || g.random > weights.min(10_000) {
                return Err(at(
                    "gradcheck",
                    "random",
                    format!(
                        "{} random and {} listed entries; at most 10000 of each, and no more random ones than W's {weights} weights",
                        g.random,
                        g.directions.len()
                    ),
                ));
            }
        } else if let Some(net) = &net {
            if !g.directions.is_empty() {
                return Err(at(
                    "gradcheck",
                    "directions",
                    format!(
                        "directions are W[i, j] of a linear model; a {kind} model is checked on `random` entries of \
                         every parameter tensor"
                    ),
                ));
            }
            if g.random > 10_000 {
                return Err(at("gradcheck", "random", format!("{} entries per tensor; at most 10000", g.random)));
            }
            let examples = g.examples.unwrap_or(super::stages::gradcheck::EXAMPLES).min(shape.train) as f64;
            let (units, flops) = network_work(net);
            let tape = examples * units * 4.0 * 3.0;
            if tape > MAX_STAGE_BYTES {
                return Err(at(
                    "gradcheck",
                    "examples",
                    format!(
                        "{examples} examples through layers of {units} values hold about {:.1e} bytes, more than {:.0e}",
                        tape, MAX_STAGE_BYTES
                    ),
                ));
            }
            let entries: usize = net.param_shapes().iter().map(|(_, s)| g.random.max(1).min(s.iter().product())).sum();
            let work = (entries as f64 * 4.0 + 4.0) * examples * flops;
            if work > MAX_FLOPS {
                return Err(at(
                    "gradcheck",
                    "random",
                    format!(
                        "{entries} entries, each 4 forward passes of {examples} examples, are about {work:.1e} \
                         floating-point operations, more than the {MAX_FLOPS:.0e} one run may take"
                    ),
                ));
            }
        }
    }
    if let Some(c) = &p.contour {
        match (&c.weights, &c.tensor, &c.entries) {
            (Some(_), None, None) if !linear => {
                return Err(at(
                    "contour",
                    "weights",
                    format!(
                        "weights are W[i, j] of a linear model; name two entries of a {kind} model's tensor with \
                         `tensor` and `entries`"
                    ),
                ))
            }
            (Some(_), None, None) => {}
            (None, Some(name), Some(entries)) => {
                let shapes = net.as_ref().map(|n| n.param_shapes()).unwrap_or_default();
                let Some((_, tshape)) = shapes.iter().find(|(n, _)| n == name) else {
                    let names: Vec<&str> = shapes.iter().map(|(n, _)| n.as_str()).collect();
                    return Err(at(
                        "contour",
                        "tensor",
                        format!("the model has no tensor '{name}'; its tensors are {}", names.join(", ")),
                    ));
                };
                let flat = entries
                    .iter()
                    .map(|e| e.flat(tshape).map_err(|e| at("contour", "entries", format!("in '{name}': {e}"))))
                    .collect::<Result<Vec<usize>, String>>()?;
                if flat[0] == flat[1] {
                    return Err(at("contour", "entries", format!("both name entry {} of '{name}'", flat[0])));
                }
            }
            (None, Some(_), None) => {
                return Err(at("contour", "entries", "`tensor` needs `entries`, the two entries to vary".into()))
            }
            (None, None, Some(_)) => {
                return Err(at("contour", "tensor", "`entries` needs `tensor`, the tensor they are in".into()))
            }
            (None, None, None) => {
                return Err(at(
                    "contour",
                    "weights",
                    "name two weights: `weights` (W[i, j] of a linear model) or `tensor` and `entries`".into(),
                ))
            }
            (Some(_), _, _) => {
                return Err(at(
                    "contour",
                    "weights",
                    "give either `weights` or `tensor` and `entries`, not both".into(),
                ))
            }
        }
        if c.edge_weights.is_some() && !linear {
            return Err(at("contour", "edge_weights", format!("W[i, j] of a linear model; this model is {kind}")));
        }
        let all = c.weights.iter().chain(c.edge_weights.iter()).flatten();
        if let Some(d) = all.into_iter().find(|d| !in_w(d)) {
            return Err(at(
                "contour",
                if c.weights.is_some_and(|w| w.contains(d)) { "weights" } else { "edge_weights" },
                format!("({}, {}) is outside W ({} x {})", d[0], d[1], shape.inputs, shape.classes),
            ));
        }
        if c.grid < 2 || c.grid > 400 {
            return Err(at("contour", "grid", format!("{} is not between 2 and 400", c.grid)));
        }
        let positive = |x: f32| finite_positive(x as f64);
        if !positive(c.span)
            || !positive(c.lr)
            || c.steps == 0
            || c.steps > 100_000
            || !(0.0..1.0).contains(&c.momentum)
        {
            return Err(at(
                "contour",
                "lr",
                "need span > 0, lr > 0, 1 <= steps <= 100000 and 0 <= momentum < 1".into(),
            ));
        }
        if !c.start.iter().all(|s| s.is_finite()) {
            return Err(at("contour", "start", format!("{:?} is not two finite numbers", c.start)));
        }
        if let (false, Some(net)) = (linear, &net) {
            // A grid point is a forward pass over the training set; a step
            // a forward and a backward pass (about three forward passes).
            let (_, flops) = network_work(net);
            let passes = (c.grid * c.grid) as f64 + 2.0 * 3.0 * c.steps as f64;
            let work = passes * shape.train as f64 * flops;
            if work > MAX_FLOPS {
                return Err(at(
                    "contour",
                    "grid",
                    format!(
                        "{} x {} grid points and 2 x {} steps over {} training examples are about {work:.1e} \
                         floating-point operations, more than the {MAX_FLOPS:.0e} one run may take (a smaller grid, \
                         fewer steps or data.train_limit)",
                        c.grid, c.grid, c.steps, shape.train
                    ),
                ));
            }
        }
    }
    if let Some(u) = &p.units {
        let net = net.as_ref().ok_or_else(|| at("units", "columns", "the model does not build".into()))?;
        let plan = super::stages::units::plan(net, &shape.example, p.backbone.is_some())
            .map_err(|e| at("units", "columns", format!("the units stage cannot draw this model: {e}")))?;
        let most = plan.units.clamp(1, 100);
        if u.columns == 0 || u.columns > most {
            return Err(at(
                "units",
                "columns",
                format!(
                    "{} is not between 1 and {most} (the first layer's {} units, at most 100)",
                    u.columns, plan.units
                ),
            ));
        }
    }
    Ok(())
}

/// At most this many examples go through a network for a gradient check.
const MAX_GRADCHECK_EXAMPLES: usize = 1000;
/// The memory one check or surface may hold for its tape.
const MAX_STAGE_BYTES: f64 = 4e9;

/// A network's values per example (every layer's output) and forward FLOPs.
fn network_work(net: &crate::nn::Sequential) -> (f64, f64) {
    let size = |s: &[usize]| s.iter().map(|&d| d as f64).product::<f64>();
    let units = net.nodes.iter().map(|n| size(&n.output)).sum();
    (units, net.nodes.iter().map(|n| n.layer.flops(&n.input, &n.output)).sum())
}

/// Keys a sweep or a trial may vary: what one training run reads.
fn variable(key: &str) -> bool {
    let first = key.split('.').next().unwrap_or("");
    key == "seed" || (matches!(first, "data" | "model" | "train") && key.len() > first.len() + 1)
}

#[cfg(test)]
mod stage_tests {
    use super::*;

    const LENET: &str = "version = 1\nname = \"t\"\n[model]\nkind = \"sequential\"\n\
        [[model.layers]]\ntype = \"conv2d\"\nout = 6\nkernel = 5\n[[model.layers]]\ntype = \"relu\"\n\
        [[model.layers]]\ntype = \"max_pool2d\"\nkernel = 2\n[[model.layers]]\ntype = \"flatten\"\n\
        [[model.layers]]\ntype = \"linear\"\nout = 10\n";

    fn check(text: &str) -> Result<(), String> {
        let p: Pipeline = toml::from_str(text).unwrap();
        one(&p, &Source { text, overrides: &[], variant: None })
    }

    /// Data-parallel training is refused by a build that cannot do it.
    #[test]
    fn parallel_data_needs_the_mpi_feature() {
        let train = "[train]\noptimizer = \"sgd\"\nlr = 0.1\niterations = 3\nbatch_size = 8\n";
        assert_eq!(check(&format!("{LENET}{train}")), Ok(()));
        let r = check(&format!("{LENET}{train}parallel = \"data\"\n"));
        if cfg!(feature = "mpi") {
            assert_eq!(r, Ok(()));
        } else {
            assert!(r.unwrap_err().contains("train.parallel: \"data\" needs nabla built with `--features mpi`"));
        }
    }

    #[test]
    fn stages_on_any_model_check_their_keys() {
        let contour = "start = [0.0, 0.0]\nlr = 1e-3\nsteps = 2\nmomentum = 0.5\n";
        check(&format!("{LENET}[gradcheck]\nrandom = 3\n[units]\ncolumns = 6\n")).unwrap();
        let ok = format!("{LENET}[contour]\ntensor = \"layers.0.weight\"\nentries = [[0, 0, 2, 2], 7]\n{contour}");
        check(&format!("{ok}[data]\ndataset = \"mnist\"\ntrain_limit = 100\n")).unwrap();
        let e = |extra: &str| check(&format!("{LENET}{extra}")).err().unwrap_or_else(|| panic!("accepted: {extra}"));
        let m = e(&format!("[contour]\ntensor = \"fc1.weight\"\nentries = [0, 1]\n{contour}"));
        assert!(m.contains("contour.tensor: the model has no tensor 'fc1.weight'; its tensors are layers.0.weight, layers.0.bias, layers.4.weight, layers.4.bias"), "{m}");
        let m = e(&format!("[contour]\ntensor = \"layers.0.bias\"\nentries = [0, 6]\n{contour}"));
        assert!(
            m.contains("contour.entries: in 'layers.0.bias': flat index 6 is outside the tensor's 6 entries [6]"),
            "{m}"
        );
        let m = e(&format!("[contour]\ntensor = \"layers.0.weight\"\nentries = [[0, 0, 5, 0], 1]\n{contour}"));
        assert!(m.contains("index [0, 0, 5, 0] is outside the tensor's shape [6, 1, 5, 5]"), "{m}");
        let m = e(&format!("[contour]\nweights = [[0, 0], [1, 1]]\n{contour}"));
        assert!(m.contains("contour.weights: weights are W[i, j] of a linear model"), "{m}");
        let m = e(&format!("[contour]\ntensor = \"layers.0.bias\"\n{contour}"));
        assert!(m.contains("contour.entries: `tensor` needs `entries`"), "{m}");
        // The whole training set through a CNN at 400 x 400 points: refused.
        let wide = LENET.replace("out = 6", "out = 64");
        let m = check(&format!("{wide}[contour]\ntensor = \"layers.0.bias\"\nentries = [0, 1]\ngrid = 400\n{contour}"))
            .unwrap_err();
        assert!(m.contains("contour.grid: 400 x 400 grid points") && m.contains("data.train_limit"), "{m}");
        let m = e("[gradcheck]\ndirections = [[1, 2]]\n");
        assert!(m.contains("gradcheck.directions: directions are W[i, j] of a linear model"), "{m}");
        let m = e("[gradcheck]\nexamples = 0\n");
        assert!(m.contains("gradcheck.examples: 0 is not between 1 and 1000"), "{m}");
        let m = e("[units]\ncolumns = 7\n");
        assert!(m.contains("units.columns: 7 is not between 1 and 6 (the first layer's 6 units"), "{m}");
        let mlp = "version = 1\nname = \"t\"\n[model]\nkind = \"linear\"\n[units]\ncolumns = 10\n";
        check(mlp).unwrap();
        assert!(check(&mlp.replace("columns = 10", "columns = 11")).unwrap_err().contains("between 1 and 10"));
    }
}
