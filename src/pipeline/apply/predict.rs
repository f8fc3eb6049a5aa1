//! `nabla predict RUN_DIR INPUT...`: the top classes of each input, as a
//! table or as JSON Lines.
//!
//! JSON output: one object per line and input, in input order:
//! `{"input": "dir/a.png", "top": [{"class": "carell", "index": 1, "probability": 0.93}, ...]}`,
//! classes by falling probability; an input that failed is
//! `{"input": "dir/b.png", "error": "cannot decode the image: ..."}`.

use super::inputs::{self, Source};
use super::RunModel;
use crate::tensor::Tensor;
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

/// How `nabla predict` reports.
#[derive(Clone, Debug)]
pub struct PredictOptions {
    /// Classes shown per input.
    pub top: usize,
    /// One JSON object per line instead of text.
    pub json: bool,
    /// Examples per pass through the model.
    pub batch: usize,
    /// Show a progress bar (only drawn on a terminal).
    pub progress: bool,
}

/// How a prediction went: inputs classified and inputs that failed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Inputs classified.
    pub predicted: usize,
    /// Inputs that could not be read or decoded (each reported).
    pub failed: usize,
}

/// Classify every input; results go to `out`, failures to stderr (and to
/// `out` too, in JSON) and are counted.
pub fn predict(run: &Path, args: &[PathBuf], opts: &PredictOptions, out: &mut dyn Write) -> crate::Result<Summary> {
    let model = RunModel::open(run)?;
    let (sources, bad) = inputs::expand(args);
    let mut summary = Summary::default();
    let io = |e: std::io::Error| format!("cannot write the results: {e}");
    for (path, why) in &bad {
        report_failure(out, opts.json, &path.display().to_string(), why).map_err(io)?;
        summary.failed += 1;
    }
    if !opts.json {
        let heads: Vec<String> = (1..=opts.top.min(model.classes().len())).map(|k| format!("#{k}")).collect();
        writeln!(out, "| input | {} |\n| --- |{}", heads.join(" | "), " --- |".repeat(heads.len())).map_err(io)?;
    }
    let bar = if opts.progress && sources.len() > 1 && std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(sources.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let mut pending: Vec<Pending> = Vec::new();
    for source in &sources {
        for (name, x) in inputs::examples(&model, source) {
            match x {
                Ok(x) => pending.push((name, x)),
                Err(why) => {
                    bar.suspend(|| report_failure(out, opts.json, &name, &why)).map_err(io)?;
                    summary.failed += 1;
                }
            }
            if pending.len() >= opts.batch {
                summary.predicted += flush(&model, &mut pending, opts, out)?;
            }
        }
        if matches!(source, Source::Image(_)) {
            bar.inc(1);
        }
    }
    summary.predicted += flush(&model, &mut pending, opts, out)?;
    bar.finish_and_clear();
    Ok(summary)
}

fn report_failure(out: &mut dyn Write, json: bool, name: &str, why: &str) -> std::io::Result<()> {
    crate::say!("error: {name}: {why}");
    if json {
        writeln!(out, "{}", json!({ "input": name, "error": why }))?;
    }
    Ok(())
}

/// Classify the pending examples and write their lines.
fn flush(
    model: &RunModel,
    pending: &mut Vec<Pending>,
    opts: &PredictOptions,
    out: &mut dyn Write,
) -> Result<usize, String> {
    if pending.is_empty() {
        return Ok(0);
    }
    let width = pending[0].1.len();
    let rows: Vec<f32> = pending.iter().flat_map(|(_, x)| x.iter().copied()).collect();
    let images = Tensor::from_vec(rows, &[pending.len(), width]).map_err(|e| e.to_string())?;
    let probs = model.logits(&images).and_then(|l| l.softmax()).map_err(|e| format!("the model: {e}"))?;
    let k = probs.shape()[1];
    for ((name, _), p) in pending.iter().zip(probs.data().chunks(k)) {
        let mut order: Vec<usize> = (0..k).collect();
        // Largest first; ties by class index, so the order is stable.
        order.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
        order.truncate(opts.top);
        let line = if opts.json {
            let top: Vec<_> = order
                .iter()
                .map(|&c| json!({ "class": model.classes()[c], "index": c, "probability": p[c] }))
                .collect();
            json!({ "input": name, "top": top }).to_string()
        } else {
            let cells: Vec<String> =
                order.iter().map(|&c| format!("{} ({:.1} %)", cell(&model.classes()[c]), p[c] * 100.0)).collect();
            format!("| {} | {} |", cell(name), cells.join(" | "))
        };
        writeln!(out, "{line}").map_err(|e| format!("cannot write the results: {e}"))?;
    }
    let n = pending.len();
    pending.clear();
    Ok(n)
}

/// An example waiting for its batch: its name and values.
type Pending = (String, Vec<f32>);

/// Text inside a table cell: no bar, no line break, no terminal escape.
fn cell(s: &str) -> String {
    s.chars().map(|c| if c == '|' || c.is_control() { '?' } else { c }).collect()
}
