//! Reading a pipeline file: TOML syntax, then the schema (unknown keys and
//! wrong types are errors with the line), then `--set` overrides, then value
//! ranges. Every error names the file, the key and what was wrong.

use super::schema::{Dataset, ModelKind, Pipeline};
use std::path::{Path, PathBuf};

/// A pipeline file that cannot be run, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    pub file: PathBuf,
    pub message: String,
}

/// A loaded pipeline with its source, for error messages and `metrics.json`.
#[derive(Clone, Debug)]
pub struct Loaded {
    pub file: PathBuf,
    pub text: String,
    pub pipeline: Pipeline,
}

/// Parse `text` (from `file`), apply `overrides` (`section.key=value`) and
/// validate.
pub fn parse(file: &Path, text: &str, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let err = |message: String| ConfigError { file: file.to_path_buf(), message };
    // Syntax and schema errors from the file itself carry its line numbers.
    let mut table: toml::Table = toml::from_str(text).map_err(|e| err(one_line(&e.to_string())))?;
    let mut pipeline: Pipeline = toml::from_str(text).map_err(|e| err(one_line(&e.to_string())))?;
    if !overrides.is_empty() {
        for o in overrides {
            let (key, value) =
                o.split_once('=').ok_or_else(|| err(format!("--set {o}: expected section.key=value")))?;
            set_path(&mut table, key.trim(), parse_value(value.trim())).map_err(|m| err(format!("--set {o}: {m}")))?;
        }
        pipeline = from_table(&table).map_err(|m| err(format!("after --set: {m}")))?;
    }
    validate(&pipeline, text).map_err(err)?;
    Ok(Loaded { file: file.to_path_buf(), text: text.to_string(), pipeline })
}

/// Read and parse a pipeline file.
pub fn load(file: &Path, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let text = crate::files::read_text_capped(file, crate::files::PIPELINE_LIMIT)
        .map_err(|e| ConfigError { file: file.to_path_buf(), message: format!("the pipeline file {e}") })?;
    parse(file, &text, overrides)
}

/// Check that the files a pipeline names exist (for `nabla check`): the data
/// folder and any weights to load.
pub fn check_paths(l: &Loaded) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError { file: l.file.clone(), message };
    let p = &l.pipeline;
    let uses_data = p.samples.is_some() || p.model.is_some();
    let root = p.data.resolved_root();
    if uses_data && !root.is_dir() {
        return Err(err(format!("data.root: folder {} not found", root.display())));
    }
    if let Some(path) = p.model.as_ref().and_then(|m| m.load.as_ref()) {
        if !path.is_file() {
            return Err(err(format!(
                "model.load: {} not found (run the pipeline that saves it first)",
                path.display()
            )));
        }
    }
    Ok(())
}

/// toml's messages span several lines (a source excerpt); keep them compact.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect::<Vec<_>>().join("; ")
}

/// A `--set` value: TOML if it parses as TOML (numbers, booleans, arrays,
/// quoted strings, inline tables), else a bare string.
pub fn parse_value(text: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {text}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(text.to_string()))
}

/// Set `a.b.c = value` in `table`, creating tables on the way.
pub fn set_path(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("'{key}' is not a dotted key"));
    }
    let mut t = table;
    for p in &parts[..parts.len() - 1] {
        let entry = t.entry(p.to_string()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| format!("'{p}' is not a section"))?;
    }
    t.insert(parts[parts.len() - 1].to_string(), value);
    Ok(())
}

/// A pipeline as an editable table (the inverse of [`from_table`]).
pub fn to_table(p: &Pipeline) -> Result<toml::Table, String> {
    match toml::Value::try_from(p).map_err(|e| e.to_string())? {
        toml::Value::Table(t) => Ok(t),
        _ => unreachable!("a pipeline serialises to a table"),
    }
}

/// Deserialize a pipeline from an edited table.
pub fn from_table(table: &toml::Table) -> Result<Pipeline, String> {
    let text = toml::to_string(table).map_err(|e| e.to_string())?;
    toml::from_str(&text).map_err(|e| one_line(&e.to_string()))
}

/// A name that stays inside the output folder: no separators, not hidden.
fn plain_file_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('/') && !name.contains('\\') && !name.starts_with('.')
}

/// The line of `key` in `[section]` of `text`, for messages ("line 12").
fn line_of(text: &str, section: &str, key: &str) -> Option<usize> {
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

/// Range checks the schema cannot express.
fn validate(p: &Pipeline, text: &str) -> Result<(), String> {
    let at = |section: &str, key: &str, what: String| {
        let line = line_of(text, section, key).map(|n| format!("line {n}: ")).unwrap_or_default();
        let path = if section.is_empty() { key.to_string() } else { format!("{section}.{key}") };
        format!("{line}{path}: {what}")
    };
    if p.version != 1 {
        return Err(at("", "version", format!("version {} is not supported (this nabla reads version 1)", p.version)));
    }
    if p.name.is_empty() || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(at("", "name", format!("'{}' must be non-empty letters, digits, '-', '_' or '.'", p.name)));
    }
    let needs_model =
        p.gradcheck.is_some() || p.sweep.is_some() || p.train.is_some() || p.contour.is_some() || p.units.is_some();
    if needs_model && p.model.is_none() {
        return Err(at(
            "",
            "model",
            "a [model] section is needed by the gradcheck, sweep, train and contour stages".into(),
        ));
    }
    if let Some(s) = &p.scaling {
        let sizes = s.depths.iter().chain(&s.widths).chain([&s.width_for_depths, &s.depth_for_widths]);
        if s.depths.len() < 2 || s.widths.len() < 2 || sizes.into_iter().any(|&v| v == 0 || v > 4096) {
            return Err(at(
                "scaling",
                "depths",
                "need at least two depths and two widths, each between 1 and 4096".into(),
            ));
        }
        if !(s.budget_seconds > 0.0 && s.budget_seconds.is_finite()) {
            return Err(at("scaling", "budget_seconds", format!("must be positive, got {}", s.budget_seconds)));
        }
    }
    if p.data.dataset == Dataset::Faces {
        if p.data.actors.is_empty() {
            return Err(at("data", "actors", "faces need at least one actor".into()));
        }
        if p.data.size == 0 || p.data.size > 1024 {
            return Err(at("data", "size", format!("{} is not between 1 and 1024", p.data.size)));
        }
        if !(p.data.scale > 0.0 && p.data.scale.is_finite()) {
            return Err(at("data", "scale", format!("must be positive, got {}", p.data.scale)));
        }
        if p.data.split.train == 0 {
            return Err(at("data", "split", "split.train must be at least 1".into()));
        }
    }
    if let Some(f) = &p.finetune {
        let positive = |x: f32| x > 0.0 && x.is_finite();
        if f.epochs == 0 || f.batch_size == 0 || !positive(f.lr) || !(0.0..1.0).contains(&f.momentum) {
            return Err(at(
                "finetune",
                "epochs",
                "need epochs >= 1, batch_size >= 1, lr > 0 and 0 <= momentum < 1".into(),
            ));
        }
        if p.backbone.is_some() {
            return Err(at("finetune", "epochs", "finetune trains on the images: remove [backbone]".into()));
        }
        if let Some(name) = &f.save {
            if !plain_file_name(name) {
                return Err(at("finetune", "save", format!("'{name}' must be a plain file name")));
            }
        }
    }
    if let Some(c) = &p.crossval {
        if c.seeds.is_empty() || p.train.is_none() {
            return Err(at("crossval", "seeds", "needs at least one seed and a [train] section".into()));
        }
    }
    for t in &p.trials {
        if p.train.is_none() {
            return Err(at("", "trials", "trials need a [train] section".into()));
        }
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for (key, v) in &t.set {
            set_path(&mut table, key, v.clone()).map_err(|m| at("", "trials", format!("{}: {m}", t.name)))?;
        }
        let tried = from_table(&table).map_err(|m| at("", "trials", format!("trial '{}': {m}", t.name)))?;
        validate(&Pipeline { trials: vec![], ..tried }, text)
            .map_err(|m| at("", "trials", format!("trial '{}': {m}", t.name)))?;
    }
    if p.data.train_limit > 60000 {
        return Err(at(
            "data",
            "train_limit",
            format!("{} is larger than the 60000 MNIST training images", p.data.train_limit),
        ));
    }
    if let Some(m) = &p.model {
        if m.kind == ModelKind::Linear && !m.hidden.is_empty() {
            return Err(at("model", "hidden", "a linear model has no hidden layers (use kind = \"mlp\")".into()));
        }
        if m.kind == ModelKind::Mlp && (m.hidden.is_empty() || m.hidden.contains(&0)) {
            return Err(at("model", "hidden", format!("an mlp needs positive hidden widths, got {:?}", m.hidden)));
        }
    }
    if let Some(s) = &p.samples {
        if s.per_class == 0 || s.per_class > 100 {
            return Err(at("samples", "per_class", format!("{} is not between 1 and 100", s.per_class)));
        }
    }
    if let Some(t) = &p.train {
        if !(t.lr > 0.0 && t.lr.is_finite()) {
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
        if t.eval_every == 0 {
            return Err(at("train", "eval_every", "must be at least 1".into()));
        }
        let available = if p.data.train_limit > 0 { p.data.train_limit } else { 60000 };
        if p.data.dataset == Dataset::Mnist && t.batch_size > available {
            return Err(at(
                "train",
                "batch_size",
                format!("{} is larger than the {available} training images", t.batch_size),
            ));
        }
        for (key, name) in [("save", &t.save), ("curve_figure", &t.curve_figure), ("weights_figure", &t.weights_figure)]
        {
            if !plain_file_name(name) {
                return Err(at("train", key, format!("'{name}' must be a plain file name")));
            }
        }
    }
    if let Some(s) = &p.sweep {
        if s.values.is_empty() {
            return Err(at("sweep", "values", "needs at least one value".into()));
        }
        if p.train.is_none() {
            return Err(at("sweep", "key", "a sweep needs a [train] section to vary".into()));
        }
        // Each value must make a valid pipeline.
        let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
        for v in &s.values {
            set_path(&mut table, &s.key, v.clone()).map_err(|m| at("sweep", "key", m))?;
            let swept = from_table(&table).map_err(|m| at("sweep", "values", format!("{} = {v}: {m}", s.key)))?;
            validate(&Pipeline { sweep: None, ..swept }, text)
                .map_err(|m| at("sweep", "values", format!("{} = {v}: {m}", s.key)))?;
        }
    }
    if let Some(g) = &p.gradcheck {
        if !(g.eps > 0.0 && g.eps.is_finite()) {
            return Err(at("gradcheck", "eps", format!("must be positive, got {}", g.eps)));
        }
        if p.model.as_ref().map(|m| m.kind) != Some(ModelKind::Linear) {
            return Err(at("gradcheck", "directions", "the f64 reference covers the linear model only".into()));
        }
        if let Some(d) = g.directions.iter().find(|d| d[0] >= 784 || d[1] >= 10) {
            return Err(at("gradcheck", "directions", format!("({}, {}) is outside W (784 x 10)", d[0], d[1])));
        }
    }
    if let Some(c) = &p.contour {
        if p.model.as_ref().map(|m| m.kind) != Some(ModelKind::Linear) {
            return Err(at("contour", "weights", "the contour stage covers the linear model only".into()));
        }
        let all = c.weights.iter().chain(c.edge_weights.iter().flatten());
        if let Some(d) = all.into_iter().find(|d| d[0] >= 784 || d[1] >= 10) {
            return Err(at("contour", "weights", format!("({}, {}) is outside W (784 x 10)", d[0], d[1])));
        }
        if c.grid < 2 || c.grid > 400 {
            return Err(at("contour", "grid", format!("{} is not between 2 and 400", c.grid)));
        }
        let positive = |x: f32| x > 0.0 && x.is_finite();
        if !positive(c.span) || !positive(c.lr) || c.steps == 0 || !(0.0..1.0).contains(&c.momentum) {
            return Err(at("contour", "lr", "need span > 0, lr > 0, steps > 0 and 0 <= momentum < 1".into()));
        }
    }
    super::names::check(p).map_err(|e| {
        at(e.key.split_once('.').map_or("", |s| s.0), e.key.rsplit('.').next().unwrap_or(""), e.message)
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
version = 1
name = "t"
[data]
dataset = "mnist"
[model]
kind = "linear"
[train]
optimizer = "sgd"
lr = 1e-4
iterations = 10
"#;

    fn msg(text: &str, overrides: &[&str]) -> String {
        let o: Vec<String> = overrides.iter().map(|s| s.to_string()).collect();
        parse(Path::new("p.toml"), text, &o).unwrap_err().to_string()
    }

    #[test]
    fn a_good_file_and_overrides() {
        let l = parse(Path::new("p.toml"), GOOD, &["train.lr=0.5".into(), "train.momentum=0.8".into()]).unwrap();
        let t = l.pipeline.train.unwrap();
        assert_eq!((t.lr, t.momentum, t.iterations), (0.5, 0.8, 10));
    }

    #[test]
    fn broken_files_name_file_line_and_key() {
        assert!(msg("version = 1\nname = \n", &[]).starts_with("p.toml: TOML parse error at line 2"));
        let m = msg(&GOOD.replace("lr = 1e-4", "lrr = 1e-4"), &[]);
        assert!(m.contains("line 10") && m.contains("unknown field `lrr`"), "{m}");
        let m = msg(&GOOD.replace("iterations = 10", "iterations = \"ten\""), &[]);
        assert!(m.contains("line 11") && m.contains("invalid type"), "{m}");
        let m = msg(&GOOD.replace("lr = 1e-4", "lr = -1.0"), &[]);
        assert_eq!(m, "p.toml: line 10: train.lr: the learning rate must be positive, got -1");
        let m = msg(&GOOD.replace("iterations = 10", "iterations = 0"), &[]);
        assert_eq!(m, "p.toml: line 11: train.iterations: must be at least 1");
        let m = msg(&GOOD.replace("version = 1", "version = 2"), &[]);
        assert!(m.contains("line 2: version: version 2 is not supported"), "{m}");
        let m = msg(GOOD, &["train.batch_size=70000"]);
        assert!(m.contains("train.batch_size: 70000 is larger than the 60000 training images"), "{m}");
        let m = msg(GOOD, &["train.optimizer=rmsprop"]);
        assert!(m.contains("--set") || m.contains("after --set") && m.contains("unknown variant `rmsprop`"), "{m}");
        let m = msg(GOOD, &["nonsense"]);
        assert!(m.contains("expected section.key=value"), "{m}");
        let m = msg(&GOOD.replace("[model]\nkind = \"linear\"\n", ""), &[]);
        assert!(m.contains("model: a [model] section is needed"), "{m}");
    }

    #[test]
    fn sweep_values_are_checked_one_by_one() {
        let with_sweep = format!("{GOOD}[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, -1.0]\n");
        let m = msg(&with_sweep, &[]);
        assert!(m.contains("sweep.values: train.lr = -1.0") && m.contains("learning rate must be positive"), "{m}");
        let typo = format!("{GOOD}[sweep]\nkey = \"train.lrr\"\nvalues = [1e-3]\n");
        assert!(msg(&typo, &[]).contains("unknown field `lrr`"));
    }
}
