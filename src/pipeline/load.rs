//! Reading a pipeline file: TOML syntax, then the schema (unknown keys and
//! wrong types are errors with the line), then `--set` overrides, then value
//! ranges. Every error names the file, the key and what was wrong.

use super::budget;
use super::names;
use super::schema::Pipeline;
use super::validate::{self, Source};
use std::path::{Path, PathBuf};

/// A pipeline file that cannot be run, and why.
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{}: {message}", file.display())]
pub struct ConfigError {
    /// The pipeline file.
    pub file: PathBuf,
    /// What is wrong, naming the key.
    pub message: String,
}

impl From<ConfigError> for crate::error::Error {
    fn from(e: ConfigError) -> crate::error::Error {
        crate::error::Error::Other(Box::new(e))
    }
}

/// A loaded pipeline with its source, for error messages and `metrics.json`.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// Where it was read from.
    pub file: PathBuf,
    /// Its text as read.
    pub text: String,
    /// What it says, validated.
    pub pipeline: Pipeline,
}

/// Parse `text` (from `file`), apply `overrides` (`section.key=value`) and
/// validate the result and each of its variants (sweep values, trials).
pub fn parse(file: &Path, text: &str, overrides: &[String]) -> Result<Loaded, ConfigError> {
    let err = |message: String| ConfigError { file: file.to_path_buf(), message };
    // Syntax and schema errors from the file itself carry its line numbers.
    let mut pipeline: Pipeline = toml::from_str(text).map_err(|e| err(one_line(&e.to_string())))?;
    if !overrides.is_empty() {
        let mut table: toml::Table = toml::from_str(text).map_err(|e| err(one_line(&e.to_string())))?;
        for o in overrides {
            // As typed, but a line break shows as `\n`: one message, one line.
            let shown = crate::terminal::inline(o);
            let (key, value) =
                o.split_once('=').ok_or_else(|| err(format!("--set {shown}: expected section.key=value")))?;
            let set = |m: String| err(format!("--set {shown}: {m}"));
            set_path(&mut table, key.trim(), parse_value(value.trim()).map_err(set)?).map_err(set)?;
        }
        // Read from the table itself, not from a re-serialised text whose
        // line numbers the user never saw.
        pipeline = from_table(&table)
            .map_err(|m| err(format!("with --set {}: {m}", crate::terminal::inline(&overrides.join(" --set ")))))?;
    }
    let src = Source { text, overrides, variant: None };
    check_writable(&pipeline, &src).map_err(err)?;
    validate::one(&pipeline, &src).map_err(err)?;
    check_variants(&pipeline, &src).map_err(err)?;
    names::check(&pipeline).map_err(|e| {
        let (section, key) = e.key.rsplit_once('.').unwrap_or(("", &e.key));
        err(src.at(section, key, e.message))
    })?;
    budget::check(&pipeline).map_err(err)?;
    Ok(Loaded { file: file.to_path_buf(), text: text.to_string(), pipeline })
}

/// Each sweep value and each trial (trials start from the sweep's choice, so
/// every pair) makes a pipeline; check each once, from the resolved one.
fn check_variants(p: &Pipeline, src: &Source) -> Result<(), String> {
    const MOST: usize = 10_000;
    let values = p.sweep.as_ref().map_or(1, |s| s.values.len());
    if values.saturating_mul(p.trials.len().max(1)) > MOST {
        return Err(src.at(
            "",
            "trials",
            format!("{values} sweep values x {} trials make more than {MOST} combinations", p.trials.len()),
        ));
    }
    let base = to_table(&Pipeline { sweep: None, trials: vec![], ..p.clone() })?;
    let check = |table: &toml::Table, variant: String| -> Result<(), String> {
        let q = from_table(table).map_err(|m| format!("{variant}: {m}"))?;
        validate::one(&q, &Source { variant: Some(variant), ..*src })
    };
    let mut swept = vec![(String::new(), base.clone())];
    if let Some(s) = &p.sweep {
        swept.clear();
        for v in &s.values {
            let mut t = base.clone();
            let label = format!("sweep.values: {} = {v}", s.key);
            set_path(&mut t, &s.key, v.clone()).map_err(|m| format!("{label}: {m}"))?;
            check(&t, label.clone())?;
            swept.push((label, t));
        }
    }
    for (label, table) in &swept {
        for trial in &p.trials {
            let mut t = table.clone();
            let name = format!(
                "{}trial '{}'",
                if label.is_empty() { String::new() } else { format!("{label}, ") },
                trial.name
            );
            for (key, v) in &trial.set {
                set_path(&mut t, key, v.clone()).map_err(|m| format!("{name}: {m}"))?;
            }
            check(&t, name)?;
        }
    }
    Ok(())
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

/// The pipeline must be editable as a TOML table (each sweep value's and
/// trial's variant is one) and writable again (`pipeline.toml` in a run
/// folder), and a table's integers are i64: a larger one (`iterations =
/// 18446744073709551615`) is named here by its key and line, not later by a
/// conversion that knows neither.
fn check_writable(p: &Pipeline, src: &Source) -> Result<(), String> {
    fn find(v: &serde_json::Value, path: &mut String) -> bool {
        match v {
            serde_json::Value::Number(n) => n.as_u64().is_some_and(|n| i64::try_from(n).is_err()),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                let len = path.len();
                path.push_str(&format!("[{i}]"));
                let found = find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            serde_json::Value::Object(fields) => fields.iter().any(|(k, item)| {
                let len = path.len();
                if !path.is_empty() {
                    path.push('.');
                }
                path.push_str(k);
                let found = find(item, path);
                if !found {
                    path.truncate(len);
                }
                found
            }),
            _ => false,
        }
    }
    let value = serde_json::to_value(p).expect("a pipeline serialises");
    let mut path = String::new();
    if !find(&value, &mut path) {
        return Ok(());
    }
    let (section, key) = path.rsplit_once('.').unwrap_or(("", &path));
    Err(src.at(section, key, format!("too large: a pipeline's whole numbers are at most {}", i64::MAX)))
}

/// toml's messages span several lines (a source excerpt); keep them compact.
fn one_line(message: &str) -> String {
    message.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('|')).collect::<Vec<_>>().join("; ")
}

/// A `--set` value: exactly one TOML value (a number, boolean, array,
/// quoted string or inline table), else a bare string of printable text.
/// Anything after the value (`1e-3\nseed = 7`, `1e-3 # note`) is an error,
/// never dropped.
pub fn parse_value(text: &str) -> Result<toml::Value, String> {
    /// The value alone, and where it ends in the document.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct One {
        v: toml::Spanned<toml::Value>,
    }
    let doc = format!("v = {text}");
    match toml::from_str::<One>(&doc) {
        Ok(one) if one.v.span().end == doc.len() && !text.contains(['\n', '\r']) => return Ok(one.v.into_inner()),
        Ok(_) => {
            return Err("there is more after the value (a comment, a line break or a second key); give one value".into())
        }
        Err(_) if toml::from_str::<toml::Table>(&doc).is_ok() => {
            return Err("there is more after the value (a second key or a table); give one value".into())
        }
        Err(_) => {}
    }
    let digits = text.strip_prefix(['-', '+']).unwrap_or(text);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit() || b == b'_') {
        return Err(format!("too large: a pipeline's whole numbers are at most {}", i64::MAX));
    }
    if text.chars().any(|c| c.is_control() || crate::terminal::hidden(c)) {
        return Err("the value holds a line break or another control character; give one value".into());
    }
    Ok(toml::Value::String(text.to_string()))
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
    toml::Value::Table(table.clone()).try_into().map_err(|e: toml::de::Error| one_line(&e.to_string()))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A small valid file, shared with the other pipeline tests.
    pub(crate) const GOOD: &str = r#"
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
        assert!(m.contains("with --set train.optimizer=rmsprop: unknown variant `rmsprop`"), "{m}");
        // The message cites no line: the value came from the command line.
        assert!(!m.contains("line"), "{m}");
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

    #[test]
    fn a_sweep_with_trials_checks_every_pair_once() {
        let both = format!(
            "{GOOD}[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 1e-2]\n[[trials]]\nname = \"a\"\nset = {{ \"train.momentum\" = 0.5 }}\n"
        );
        parse(Path::new("p.toml"), &both, &[]).unwrap();
        // A pair that is wrong only together is found, named by both.
        let m = msg(&both.replace("0.5 }", "0.5, \"train.iterations\" = 0 }"), &[]);
        assert!(m.contains("sweep.values: train.lr = 0.001, trial 'a': train.iterations: must be at least 1"), "{m}");
    }

    #[test]
    fn thousands_of_trials_check_in_linear_time() {
        let mut text = GOOD.to_string();
        for i in 0..999 {
            text += &format!("[[trials]]\nname = \"t{i}\"\nset = {{ \"train.lr\" = {} }}\n", 1e-4 * (i + 1) as f64);
        }
        let started = std::time::Instant::now();
        parse(Path::new("p.toml"), &text, &[]).unwrap();
        eprintln!("999 trials checked in {:?}", started.elapsed());
        // Generous: linear is ~0.1 s; the quadratic version took ~4 s here.
        assert!(started.elapsed().as_secs_f64() < 2.0, "{:?}", started.elapsed());
        let twice = format!("{text}[[trials]]\nname = \"t3\"\nset = {{}}\n");
        assert!(msg(&twice, &[]).contains("two trials are named 't3'"));
    }

    #[test]
    fn values_that_parse_but_mean_nothing_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("model.weight_init={kind=\"zeros\", std=2}", "takes no `std`"),
            ("model.bias_init={kind=\"fan_in\", x=1}", "unknown field `x`"),
            ("model.weight_init={kind=\"normal\", mean=0, std=nan}", "finite std"),
            ("train.lr=nan", "learning rate must be positive"),
            ("train.momentum=nan", "not in [0, 1)"),
            ("reference.test_accuracy=inf", "not a finite number"),
            ("name=\"..\"", "must be non-empty letters"),
            ("name=\".\"", "must be non-empty letters"),
            ("name=\"\"", "must be non-empty letters"),
        ];
        for (set, expect) in cases {
            let m = msg(GOOD, &[set]);
            assert!(m.contains(expect), "--set {set}: {m}");
        }
        let m = msg(GOOD, &["train.epochs=1099511627776", "train.batches_per_epoch=16777216"]);
        assert!(m.contains("does not fit in a step counter"), "{m}");
        let m = msg(GOOD, &["train.epochs=2", "train.batches_per_epoch=60001"]);
        assert!(m.contains("60001 mini-batches of 60000 training examples would leave some empty"), "{m}");
        let m = msg(&format!("{GOOD}[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 2e-3, 1e-3]\n"), &[]);
        assert!(m.contains("0.001 is listed twice"), "{m}");
        let m = msg(&format!("{GOOD}[sweep]\nkey = \"name\"\nvalues = [\"a\"]\n"), &[]);
        assert!(m.contains("cannot be swept"), "{m}");
    }
}
