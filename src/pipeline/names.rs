//! The names a run writes, checked when the file loads: the pipeline's name
//! is one folder name (it becomes `resources/<name>`), every configured or
//! derived output file is a plain file name, and no two outputs of one run
//! share a name, compared case-insensitively because some file systems fold
//! case. Without this, `train.save = "metrics.json"` would be silently
//! replaced by the metrics, and a sweep value that cannot be a file name
//! would fail only after training.
//!
//! The names listed here must follow what the stages write (`stages/*.rs`,
//! `run.rs`); [`sweep_figure`] and [`learned_figure`] are the derivations.

use super::load::{from_table, set_path, to_table};
use super::schema::Pipeline;
use std::collections::HashMap;

/// A name a run cannot use: the key that holds it and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct NameError {
    /// The key holding the name (`name`, `model.layers[2].name`, ...).
    pub key: String,
    /// What is wrong with it.
    pub message: String,
}

/// The longest pipeline name: it also names `.<name>.partial-<pid>` and
/// `.<name>.checkpoints` beside the output folder, within the 255 bytes a
/// file name may have.
pub const MAX_NAME: usize = 100;

/// The longest output file name (the usual file-system limit, in bytes).
pub const MAX_FILE_NAME: usize = 255;

/// The longest trial name (a label in the report and in checkpoint names).
const MAX_TRIAL_NAME: usize = 200;

/// Check every name `p` makes a run write; see the module doc.
pub fn check(p: &Pipeline) -> Result<(), NameError> {
    folder_name(&p.name).map_err(|message| NameError { key: "name".into(), message })?;
    check_labels(p)?;
    let fixed = fixed_outputs(p)?;
    // The train stage writes the names of the variant the sweep or the trials
    // choose, so each variant must fit beside the fixed outputs.
    check_distinct(fixed.iter().cloned().chain(train_outputs(p)), "")?;
    for (context, variant) in variants(p)? {
        check_distinct(fixed.iter().cloned().chain(train_outputs(&variant)), &context)?;
    }
    Ok(())
}

/// Every file a run of `p` may write, whichever variant its sweep or trials
/// choose: what an output folder from before the ownership marker may hold
/// to be taken for an earlier run of this file.
pub fn possible_outputs(p: &Pipeline) -> Vec<String> {
    let mut names: Vec<String> = fixed_outputs(p).unwrap_or_default().into_iter().map(|(_, n)| n).collect();
    names.extend(train_outputs(p).into_iter().map(|(_, n)| n));
    for (_, variant) in variants(p).unwrap_or_default() {
        names.extend(train_outputs(&variant).into_iter().map(|(_, n)| n));
    }
    if p.train.is_some() {
        use super::apply::manifest::{MANIFEST, PIPELINE};
        use super::stages::mistakes::{CONFUSION_FIGURE, MISTAKES_FIGURE};
        names.extend([CONFUSION_FIGURE, MISTAKES_FIGURE, MANIFEST, PIPELINE].map(String::from));
    }
    names
}

/// Why `name` cannot be the name of an output folder, if it cannot.
pub fn folder_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('.')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{} must be non-empty letters, digits, '-', '_' or '.', not start with '.', and be at most {MAX_NAME} \
             characters: it names the output folder resources/<name>",
            crate::terminal::quote(name)
        ))
    }
}

/// Why `name` cannot be the name of a file in the output folder, if it cannot.
pub fn file_name(name: &str) -> Result<(), String> {
    let why = if name.is_empty() {
        "it is empty".to_string()
    } else if name == "." || name == ".." {
        "'.' and '..' are folders".to_string()
    } else if name.contains('/') || name.contains('\\') {
        "it holds a '/' or '\\', so it would leave the output folder".to_string()
    } else if name.starts_with('.') {
        "it starts with '.' (hidden files, and the run's own staging folders, do)".to_string()
    } else if name.chars().any(char::is_control) {
        "it holds a control character".to_string()
    } else if name.len() > MAX_FILE_NAME {
        format!("it is {} bytes long, more than the {MAX_FILE_NAME} a file name may have", name.len())
    } else {
        return Ok(());
    };
    Err(format!("{} must be a plain file name: {why}", crate::terminal::quote(name)))
}

/// The figure the sweep stage draws for `key = value` (`stages/train.rs`).
pub fn sweep_figure(key: &str, value: &toml::Value) -> String {
    format!("sweep_{}_{}.png", key.replace('.', "_"), value.to_string().trim_matches('"'))
}

/// The figure of what training changed, derived from `train.weights_figure`.
pub fn learned_figure(weights_figure: &str) -> String {
    format!("{}_learned.png", weights_figure.trim_end_matches(".png"))
}

/// (key that names it, file name) of every output that does not depend on
/// the sweep's or the trials' choice.
fn fixed_outputs(p: &Pipeline) -> Result<Vec<(String, String)>, NameError> {
    let mut out: Vec<(String, String)> = Vec::new();
    let mut fixed = |key: &str, name: &str| out.push((key.to_string(), name.to_string()));
    fixed("metrics.json (every run)", "metrics.json");
    fixed("report.md (every run)", "report.md");
    if p.samples.is_some() {
        fixed("[samples]", "figure1_samples.png");
    }
    if let Some(c) = &p.contour {
        fixed("[contour]", "figure5_contour.png");
        fixed("[contour]", "figure6_trajectories.png");
        if c.edge_weights.is_some() {
            fixed("contour.edge_weights", "contour_edge.png");
        }
    }
    if p.units.is_some() {
        fixed("[units]", "figure8_hidden_units.png");
    }
    if p.scaling.is_some() {
        fixed("[scaling]", "scaling.png");
    }
    if let Some(s) = &p.sweep {
        for v in &s.values {
            let name = sweep_figure(&s.key, v);
            file_name(&name).map_err(|m| NameError {
                key: "sweep.values".into(),
                message: format!("{} = {v}: its figure {m}", s.key),
            })?;
            out.push(("sweep.values".into(), name));
        }
    }
    Ok(out)
}

/// The files the train stage writes with the settings of `p`.
fn train_outputs(p: &Pipeline) -> Vec<(String, String)> {
    let Some(t) = &p.train else { return vec![] };
    let mut out = vec![
        ("train.curve_figure".into(), t.curve_figure.clone()),
        ("train.weights_figure".into(), t.weights_figure.clone()),
        ("train.weights_figure (its derived figure)".into(), learned_figure(&t.weights_figure)),
    ];
    // An empty name saves nothing.
    if !t.save.is_empty() {
        out.insert(0, ("train.save".into(), t.save.clone()));
    }
    out
}

/// The pipelines the train stage may run with: one per sweep value and per
/// trial, each with a context for messages.
pub(crate) fn variants(p: &Pipeline) -> Result<Vec<(String, Pipeline)>, NameError> {
    let mut out = Vec::new();
    // One table without the variants themselves, copied per variant (a copy
    // of the whole file each would make thousands of trials quadratic).
    let base = to_table(&Pipeline { sweep: None, trials: vec![], ..p.clone() })
        .map_err(|m| NameError { key: "name".into(), message: m })?;
    let table = || Ok::<_, NameError>(base.clone());
    if let Some(s) = &p.sweep {
        for v in &s.values {
            let err = |m: String| NameError { key: "sweep.values".into(), message: format!("{} = {v}: {m}", s.key) };
            let mut t = table()?;
            set_path(&mut t, &s.key, v.clone()).map_err(err)?;
            out.push((format!("with {} = {v}: ", s.key), from_table(&t).map_err(err)?));
        }
    }
    for trial in &p.trials {
        let err = |m: String| NameError { key: "trials".into(), message: format!("trial '{}': {m}", trial.name) };
        let mut t = table()?;
        for (key, v) in &trial.set {
            set_path(&mut t, key, v.clone()).map_err(err)?;
        }
        out.push((format!("in trial '{}': ", trial.name), from_table(&t).map_err(err)?));
    }
    Ok(out)
}

/// Every name is a plain file name and no two are equal, ignoring case.
fn check_distinct(outputs: impl Iterator<Item = (String, String)>, context: &str) -> Result<(), NameError> {
    let mut seen: HashMap<String, (String, String)> = HashMap::new();
    for (key, name) in outputs {
        let field = key.split(' ').next().unwrap_or(&key).to_string();
        file_name(&name).map_err(|m| NameError { key: field.clone(), message: format!("{context}{m}") })?;
        if let Some((first_key, first)) = seen.get(&name.to_lowercase()) {
            // The sweep's own figures may not repeat either (two equal values).
            let what = if first_key == &key { format!("another {key} output") } else { first_key.clone() };
            return Err(NameError {
                key: field,
                message: format!(
                    "{context}'{name}' is also the name of {what} ('{first}'): two outputs of one run would replace \
                     each other (names are compared ignoring case)"
                ),
            });
        }
        seen.insert(name.to_lowercase(), (key, name));
    }
    Ok(())
}

/// Trial names label rows and checkpoints; cross-validation seeds label runs.
fn check_labels(p: &Pipeline) -> Result<(), NameError> {
    let mut names: HashMap<String, &str> = HashMap::new();
    for t in &p.trials {
        let err = |message: String| NameError { key: "trials".into(), message };
        if t.name.trim().is_empty() || t.name.len() > MAX_TRIAL_NAME || t.name.chars().any(char::is_control) {
            return Err(err(format!(
                "trial name {} must be 1 to {MAX_TRIAL_NAME} bytes without control characters",
                crate::terminal::quote(&t.name)
            )));
        }
        if let Some(first) = names.insert(t.name.to_lowercase(), &t.name) {
            return Err(err(format!("two trials are named '{}' and '{first}' (ignoring case)", t.name)));
        }
    }
    if let Some(c) = &p.crossval {
        let mut seen = std::collections::HashSet::new();
        if let Some(dup) = c.seeds.iter().find(|s| !seen.insert(**s)) {
            return Err(NameError {
                key: "crossval.seeds".into(),
                message: format!("seed {dup} appears twice: each seed is one run"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::pipeline::load::tests::GOOD as BASE;

    fn pipeline(extra: &str, train: &str) -> Pipeline {
        let text = BASE.replace("iterations = 10", &format!("iterations = 10\n{train}"));
        toml::from_str(&format!("{text}{extra}")).unwrap()
    }

    fn key_of(extra: &str, train: &str) -> String {
        let e = check(&pipeline(extra, train)).unwrap_err();
        assert!(!e.message.is_empty());
        format!("{}: {}", e.key, e.message)
    }

    #[test]
    fn defaults_and_the_real_names_pass() {
        check(&pipeline("", "")).unwrap();
        check(&pipeline("[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 1e-4]\n", "")).unwrap();
        let trials = "[crossval]\nseeds = [0, 1]\n[[trials]]\nname = \"a\"\nset = { \"train.lr\" = 1e-3 }\n\
                      [[trials]]\nname = \"b\"\nset = { \"model.kind\" = \"mlp\", \"model.hidden\" = [4] }\n";
        check(&pipeline(trials, "")).unwrap();
    }

    #[test]
    fn the_pipeline_name_is_one_folder_name() {
        for bad in ["", ".", "..", ".hidden", "a/b", "a\\b", "a b", "x\n", &"n".repeat(MAX_NAME + 1)] {
            let mut p = pipeline("", "");
            p.name = bad.to_string();
            let e = check(&p).unwrap_err();
            assert_eq!(e.key, "name", "{bad:?}");
            assert!(e.message.contains("must be non-empty letters"), "{bad:?}: {e}");
        }
        let mut p = pipeline("", "");
        p.name = "part4.v2_x-y".into();
        check(&p).unwrap();
    }

    #[test]
    fn output_file_names_are_plain() {
        let long = "w".repeat(MAX_FILE_NAME + 1);
        for (bad, why) in [
            ("", "empty"),
            ("..", "folders"),
            (".", "folders"),
            ("../w.safetensors", "'/'"),
            ("a\\b", "'/'"),
            (".w", "starts with '.'"),
            ("w\u{7}.png", "control"),
            (long.as_str(), "bytes long"),
        ] {
            for key in ["save", "curve_figure", "weights_figure"] {
                if key == "save" && bad.is_empty() {
                    continue; // saves no weights
                }
                let mut p = pipeline("", "");
                let t = p.train.as_mut().unwrap();
                *match key {
                    "save" => &mut t.save,
                    "curve_figure" => &mut t.curve_figure,
                    _ => &mut t.weights_figure,
                } = bad.to_string();
                let e = check(&p).unwrap_err();
                assert_eq!(e.key, format!("train.{key}"), "{bad:?}: {e}");
                assert!(e.message.contains("plain file name") && e.message.contains(why), "{e}");
            }
        }
    }

    #[test]
    fn outputs_that_collide_are_refused() {
        let m = key_of("", "save = \"metrics.json\"");
        assert!(m.starts_with("train.save: 'metrics.json' is also the name of metrics.json"), "{m}");
        assert!(key_of("", "curve_figure = \"REPORT.md\"").starts_with("train.curve_figure: 'REPORT.md' is also"));
        assert!(key_of("", "curve_figure = \"weights.safetensors\"").starts_with("train.curve_figure:"));
        assert!(key_of("", "save = \"weights.png\"").contains("'weights.png' is also the name of train.save"));
        // A figure equal to another's derived `<name>_learned.png`.
        let m = key_of("", "curve_figure = \"w_learned.png\"\nweights_figure = \"w.png\"");
        assert!(m.starts_with("train.weights_figure:") && m.contains("w_learned.png"), "{m}");
        let m = key_of("[samples]\n", "curve_figure = \"figure1_samples.png\"");
        assert!(m.contains("[samples]"), "{m}");
        let m = key_of("[units]\n", "save = \"figure8_hidden_units.png\"");
        assert!(m.contains("[units]"), "{m}");
    }

    #[test]
    fn sweep_values_and_trials_are_checked_at_load() {
        // A value that cannot be part of a file name.
        let m = key_of("[sweep]\nkey = \"train.optimizer\"\nvalues = [\"sgd\", \"a/b\"]\n", "");
        assert!(m.starts_with("sweep.values: train.optimizer = \"a/b\": its figure") && m.contains("'/'"), "{m}");
        // Two values that draw the same figure.
        let m = key_of("[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 0.001]\n", "");
        assert!(m.starts_with("sweep.values:") && m.contains("sweep_train_lr_0.001.png"), "{m}");
        // A swept or trialled output name that collides.
        let m = key_of("[sweep]\nkey = \"train.save\"\nvalues = [\"a.bin\", \"report.md\"]\n", "");
        assert!(m.starts_with("train.save: with train.save = \"report.md\": 'report.md' is also"), "{m}");
        let m = key_of("[[trials]]\nname = \"x\"\nset = { \"train.curve_figure\" = \"metrics.json\" }\n", "");
        assert!(m.starts_with("train.curve_figure: in trial 'x': 'metrics.json'"), "{m}");
        let m = key_of("[[trials]]\nname = \"x\"\nset = { \"train.save\" = \"../up\" }\n", "");
        assert!(m.contains("in trial 'x'") && m.contains("plain file name"), "{m}");
        let two = "[[trials]]\nname = \"A\"\nset = {}\n[[trials]]\nname = \"a\"\nset = {}\n";
        assert!(key_of(two, "").starts_with("trials: two trials are named 'a' and 'A'"));
        assert!(key_of("[[trials]]\nname = \" \"\nset = {}\n", "").starts_with("trials: trial name"));
        let m = key_of("[crossval]\nseeds = [3, 1, 3]\n", "");
        assert_eq!(m, "crossval.seeds: seed 3 appears twice: each seed is one run");
    }

    #[test]
    fn derived_names_follow_the_stages() {
        assert_eq!(learned_figure("figure3_weights.png"), "figure3_weights_learned.png");
        assert_eq!(learned_figure("w"), "w_learned.png");
        assert_eq!(sweep_figure("train.lr", &toml::Value::Float(1e-4)), "sweep_train_lr_0.0001.png");
        assert_eq!(
            sweep_figure("train.optimizer", &toml::Value::String("adam".into())),
            "sweep_train_optimizer_adam.png"
        );
    }
}
