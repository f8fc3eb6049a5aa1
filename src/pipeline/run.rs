//! Running a loaded pipeline: its stages in order, then `metrics.json`,
//! `report.md` and the figures, committed together.

use super::checkpoint::Checkpoints;
use super::load::{ConfigError, Loaded};
use super::output::{OutputError, Outputs};
use super::report::{provenance, Report};
use super::stages::{self, Ctx};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output folder (default `resources/<name>`).
    pub out: Option<PathBuf>,
    /// Show progress bars (only drawn on a terminal).
    pub progress: bool,
    /// Continue from the checkpoints an interrupted run left.
    pub resume: bool,
}

/// Why a run stopped. Nothing is written to the output folder in any case.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("{}: {stage}: {message}", file.display())]
    Stage { file: PathBuf, stage: &'static str, message: String },
    #[error(transparent)]
    Output(#[from] OutputError),
}

/// Where a pipeline named `name` writes without `--out`.
pub fn default_out(name: &str) -> PathBuf {
    PathBuf::from("resources").join(name)
}

/// Run every stage of `loaded`; returns the files written.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<Vec<PathBuf>, RunError> {
    let p = &loaded.pipeline;
    let started = Instant::now();
    let dir = opts.out.clone().unwrap_or_else(|| default_out(&p.name));
    let mut out = Outputs::new(&dir)?;
    let mut report = Report::default();
    let checkpoints = Checkpoints::beside(&dir, opts.resume);
    let mut ctx = Ctx::new(loaded, &mut out, &mut report, opts.progress, checkpoints.clone())?;
    stages::run_all(&mut ctx)?;
    drop(ctx);
    let config = serde_json::to_value(p).expect("a pipeline serialises");
    let metrics = report.metrics_json(provenance(p.seed, started.elapsed().as_secs_f64(), config));
    out.write("metrics.json", metrics.as_bytes())?;
    out.write("report.md", report.markdown(&p.name, &p.description, &p.reference).as_bytes())?;
    let written = out.commit()?;
    checkpoints.remove();
    Ok(written)
}
