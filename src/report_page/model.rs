//! The page as data: the report's parts in order, extra runs after them,
//! each run's numbers, settings, provenance, notes and figures. Both the
//! HTML and the Markdown are rendered from this one model.

use super::notes::{self, Note};
use super::parts::{self, Part, PARTS};
use super::read::{Figure, RunDir, Scan};
use super::text;
use serde_json::{Map, Value};

/// The whole page.
#[derive(Debug)]
pub struct Page {
    /// Parts 1-10 of the report, in its order.
    pub parts: Vec<PartEntry>,
    /// Runs that are not one of the report's parts, by name.
    pub extras: Vec<RunPage>,
}

/// A report part and what we have for it.
#[derive(Debug)]
pub struct PartEntry {
    pub part: Part,
    pub state: PartState,
}

#[derive(Debug)]
pub enum PartState {
    /// Its run folder was read.
    Ran(Box<RunPage>),
    /// It has a pipeline but no run folder (or the folder was skipped).
    NotRun { command: String },
    /// The part is code, not an experiment.
    NoPipeline,
}

/// One run, ready to render.
#[derive(Debug)]
pub struct RunPage {
    /// Run folder name.
    pub name: String,
    pub description: String,
    /// Numbers beside the report's.
    pub rows: Vec<Row>,
    /// (section, "key = value, ...") of the settings that ran.
    pub settings: Vec<(String, String)>,
    pub wall: String,
    pub cpu: String,
    pub kernel: String,
    pub threads: String,
    pub version: String,
    pub command: String,
    pub notes: Vec<Note>,
    /// Every number is marked: the backbone had random weights.
    pub random_init: bool,
    pub figures: Vec<Figure>,
}

/// One metric of a run.
#[derive(Debug, Clone)]
pub struct Row {
    pub metric: String,
    /// Ours, exactly as `metrics.json` holds it.
    pub ours: Option<serde_json::Number>,
    /// The report's, from `[reference]`.
    pub reference: Option<f64>,
}

impl Row {
    pub fn ours_text(&self) -> String {
        self.ours.as_ref().and_then(|n| n.as_f64()).map_or("—".into(), |v| text::number(&self.metric, v))
    }
    pub fn reference_text(&self) -> String {
        self.reference.map_or("—".into(), |v| text::number(&self.metric, v))
    }
    pub fn difference_text(&self) -> String {
        match (self.ours.as_ref().and_then(|n| n.as_f64()), self.reference) {
            (Some(o), Some(r)) => text::difference(&self.metric, o, r),
            _ => String::new(),
        }
    }
}

/// Metrics that describe the run rather than its result.
const NOT_RESULTS: [&str; 7] =
    ["seed", "wall_seconds", "train_seconds", "threads", "data_skipped_files", "steps", "iterations"];
/// Most rows in one run's table.
const MAX_ROWS: usize = 40;

/// Arrange what a scan read into the page.
pub fn build(scan: &Scan) -> Page {
    let find = |name: &str| scan.runs.iter().find(|r| r.name == name);
    let parts = PARTS
        .iter()
        .map(|part| {
            let state = match part.pipeline {
                None => PartState::NoPipeline,
                Some(name) => match find(name) {
                    Some(run) => PartState::Ran(Box::new(run_page(run))),
                    None => PartState::NotRun { command: parts::command(name) },
                },
            };
            PartEntry { part: *part, state }
        })
        .collect();
    let extras = scan.runs.iter().filter(|r| !parts::is_report_part(&r.name)).map(run_page).collect();
    Page { parts, extras }
}

fn run_page(run: &RunDir) -> RunPage {
    let m = &run.metrics;
    let config = m.get("config").and_then(Value::as_object);
    let from_config = |k: &str| config.and_then(|c| c.get(k));
    let recorded = |k: &str| m.get(k).filter(|v| !v.is_null()).map_or("not recorded".into(), text::setting);
    RunPage {
        name: run.name.clone(),
        description: from_config("description")
            .and_then(Value::as_str)
            .map_or(String::new(), |d| text::truncate(d, 2000)),
        rows: rows(m),
        settings: settings(m),
        wall: m.get("wall_seconds").and_then(Value::as_f64).map_or("not recorded".into(), text::duration),
        cpu: recorded("cpu"),
        kernel: recorded("sgemm_kernel"),
        threads: recorded("threads"),
        version: recorded("nabla_version"),
        command: parts::command(&run.name),
        notes: notes::notes(m),
        random_init: notes::is_random_init(m),
        figures: run.figures.clone(),
    }
}

/// The reference's metrics first (in its order), then every other numeric
/// result the run recorded at the top level.
fn rows(m: &Map<String, Value>) -> Vec<Row> {
    let reference =
        m.get("config").and_then(|c| c.get("reference")).and_then(Value::as_object).cloned().unwrap_or_default();
    let number = |k: &str| match m.get(k) {
        Some(Value::Number(n)) => Some(n.clone()),
        _ => None,
    };
    let mut rows: Vec<Row> =
        reference.iter().map(|(k, r)| Row { metric: k.clone(), ours: number(k), reference: r.as_f64() }).collect();
    for (k, v) in m {
        if let Value::Number(n) = v {
            if !reference.contains_key(k) && !NOT_RESULTS.contains(&k.as_str()) {
                rows.push(Row { metric: k.clone(), ours: Some(n.clone()), reference: None });
            }
        }
    }
    rows.truncate(MAX_ROWS);
    rows
}

/// Seed, data, model, optimiser (and what a sweep or trials chose).
fn settings(m: &Map<String, Value>) -> Vec<(String, String)> {
    let Some(c) = m.get("config").and_then(Value::as_object) else {
        return vec![("config".into(), "not recorded".into())];
    };
    let mut out = Vec::new();
    if let Some(seed) = m.get("seed").or_else(|| c.get("seed")) {
        out.push(("seed".into(), text::setting(seed)));
    }
    let pick = |section: &str, keys: &[&str]| -> Option<String> {
        let s = c.get(section)?.as_object()?;
        let parts: Vec<String> = keys
            .iter()
            .filter_map(|k| s.get(*k).filter(|v| !v.is_null()).map(|v| format!("{k} = {}", text::setting(v))))
            .collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    let sections: [(&str, &str, &[&str]); 4] = [
        ("data", "data", &["dataset", "train_limit", "actors", "size", "color", "scale", "normalize"]),
        ("model", "model", &["kind", "hidden", "activation", "layers", "weight_init", "load"]),
        ("backbone", "backbone", &["kind", "weights", "if_missing"]),
        (
            "optimiser",
            "train",
            &[
                "optimizer",
                "lr",
                "momentum",
                "loss",
                "iterations",
                "epochs",
                "batch_size",
                "batches_per_epoch",
                "steps_per_batch",
            ],
        ),
    ];
    for (label, section, keys) in sections {
        if let Some(s) = pick(section, keys) {
            out.push((label.into(), s));
        }
    }
    if let Some(sweep) = m.get("sweep").and_then(Value::as_object) {
        let key = sweep.get("key").map_or("?".into(), text::setting);
        let chosen = sweep.get("chosen").map_or("?".into(), text::setting);
        let values = c
            .get("sweep")
            .and_then(|s| s.get("values"))
            .map_or(String::new(), |v| format!(" over {}", text::setting(v)));
        out.push(("sweep".into(), format!("{key}{values}: chose {chosen}")));
    }
    if let Some(chosen) = m.get("chosen_trial") {
        out.push(("trials".into(), format!("chose \"{}\"", text::setting(chosen))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn run(name: &str, metrics: Value) -> RunDir {
        RunDir { name: name.into(), metrics: metrics.as_object().unwrap().clone(), figures: vec![] }
    }

    #[test]
    fn parts_keep_the_report_order_and_extras_follow() {
        let scan = Scan {
            runs: vec![
                run("lenet5", json!({"test_accuracy": 0.99})),
                run(
                    "part4",
                    json!({"test_accuracy": 0.913, "seed": 0, "config": {"reference": {"test_accuracy": 0.919}}}),
                ),
            ],
            warnings: vec![],
        };
        let page = build(&scan);
        assert_eq!(page.parts.len(), 10);
        assert!(matches!(page.parts[1].state, PartState::NoPipeline));
        assert!(
            matches!(&page.parts[2].state, PartState::NotRun { command } if command.ends_with("pipelines/part3.toml"))
        );
        let PartState::Ran(p4) = &page.parts[3].state else { panic!("part4 not read") };
        assert_eq!(p4.rows.len(), 1, "seed is not a result");
        assert_eq!(p4.rows[0].ours_text(), "91.3 %");
        assert_eq!(p4.rows[0].difference_text(), "-0.6 pt");
        assert_eq!(p4.cpu, "not recorded");
        assert_eq!(page.extras.len(), 1);
        assert_eq!(page.extras[0].name, "lenet5");
    }

    #[test]
    fn a_reference_metric_the_run_lacks_shows_a_dash() {
        let r = rows(json!({"config": {"reference": {"test_accuracy": 0.8}}}).as_object().unwrap());
        assert_eq!(
            (r[0].ours_text(), r[0].reference_text(), r[0].difference_text()),
            ("—".into(), "80.0 %".into(), String::new())
        );
    }

    #[test]
    fn settings_name_seed_data_model_optimiser_and_choices() {
        let m = json!({"seed": 3, "chosen_trial": "t", "sweep": {"key": "train.lr", "chosen": "0.00001"},
            "config": {"data": {"dataset": "mnist", "root": "x"}, "model": {"kind": "linear", "load": null},
                       "train": {"optimizer": "sgd", "lr": 0.00009999999747378752}, "sweep": {"values": [0.001, 1e-5]}}});
        let s = settings(m.as_object().unwrap());
        let get = |k: &str| s.iter().find(|(l, _)| l == k).map(|(_, v)| v.clone()).unwrap();
        assert_eq!(get("seed"), "3");
        assert_eq!(get("data"), "dataset = mnist");
        assert_eq!(get("model"), "kind = linear");
        assert_eq!(get("optimiser"), "optimizer = sgd, lr = 0.0001");
        assert_eq!(get("sweep"), "train.lr over [0.001,0.00001]: chose 0.00001");
        assert_eq!(get("trials"), "chose \"t\"");
    }
}
