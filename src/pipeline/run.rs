//! Running a loaded pipeline: its stages in order, then `metrics.json`,
//! `report.md` and the figures, committed together.

use super::checkpoint::Checkpoints;
use super::load::{ConfigError, Loaded};
use super::output::{Kind, OutputError, Outputs, Target, Wait};
use super::report::{provenance, Report};
use super::stages::{self, Ctx};
use crate::distributed;
use crate::error::Error;
use std::path::PathBuf;
use std::time::Instant;

/// How `nabla FILE` runs a pipeline.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Output folder (default `resources/<name>`).
    pub out: Option<PathBuf>,
    /// Show progress bars (only drawn on a terminal).
    pub progress: bool,
    /// Continue from the checkpoints an interrupted run left.
    pub resume: bool,
    /// Wait for another run writing the same output folder, instead of failing.
    pub wait: bool,
}

/// Why a run stopped. Nothing is written to the output folder in any case.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The pipeline file could not be read or is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A stage failed; `source` is why, as the code that failed said it
    /// (a [`DataError`](crate::data::DataError) under an [`Error::Other`],
    /// a tensor's [`Error::Shape`], ...).
    #[error("{}: {stage}: {source}", file.display())]
    Stage {
        /// The pipeline file.
        file: PathBuf,
        /// The stage's name (`train`, `contour`, ...).
        stage: &'static str,
        /// What went wrong.
        source: Box<Error>,
    },
    /// The output folder could not be staged or written.
    #[error(transparent)]
    Output(#[from] OutputError),
}

impl From<RunError> for Error {
    fn from(e: RunError) -> Error {
        Error::Other(Box::new(e))
    }
}

/// Where a pipeline named `name` writes without `--out`.
pub fn default_out(name: &str) -> PathBuf {
    PathBuf::from("resources").join(name)
}

/// The output folder of `loaded` (`out`, or `resources/<name>`), with what
/// its run writes and reads, for the checks before the run.
pub fn target(loaded: &Loaded, out: Option<&std::path::Path>) -> Result<Target, OutputError> {
    let p = &loaded.pipeline;
    let dir = out.map_or_else(|| default_out(&p.name), std::path::Path::to_path_buf);
    let mut t = Target::new(&dir, Kind::Run)?
        .writes(super::names::possible_outputs(p))
        .reads("the pipeline file", &loaded.file);
    // What each sweep value and trial reads, too: any of them may set a path.
    let variants = super::names::variants(p).unwrap_or_default();
    for (context, q) in std::iter::once((String::new(), p)).chain(variants.iter().map(|(c, q)| (c.clone(), q))) {
        let of = |key: &str| match context.trim_end_matches(": ") {
            "" => key.to_string(),
            variant => format!("{key} ({variant})"),
        };
        if q.samples.is_some() || q.model.is_some() {
            t = t.reads(of("data.root"), &q.data.resolved_root());
        }
        if let Some(path) = q.model.as_ref().and_then(|m| m.load.as_ref()) {
            t = t.reads(of("model.load"), path);
        }
        if let Some(b) = &q.backbone {
            if let Some(w) = &b.weights {
                t = t.reads(of("backbone.weights"), w);
            }
            if let Some(c) = &b.cache {
                t = t.reads(of("backbone.cache"), c);
            }
        }
    }
    Ok(t)
}

/// Run every stage of `loaded`; returns the files written. Under `mpirun`
/// every rank runs this; rank 0 alone writes the output folder and prints
/// progress, and an error on any rank ends the whole job (`distributed::abort`)
/// rather than leave the others waiting for it.
pub fn run(loaded: &Loaded, opts: &RunOptions) -> Result<Vec<PathBuf>, RunError> {
    let r = run_here(loaded, opts);
    if let Err(e) = &r {
        if distributed::size() > 1 {
            distributed::abort(&e.to_string());
        }
    }
    r
}

fn run_here(loaded: &Loaded, opts: &RunOptions) -> Result<Vec<PathBuf>, RunError> {
    let p = &loaded.pipeline;
    let started = Instant::now();
    let target = target(loaded, opts.out.as_deref())?;
    let dir = target.dir().to_path_buf();
    let root = distributed::is_root();
    let wait = if opts.wait { Wait::Yes } else { Wait::No };
    let mut out = if root { Outputs::new(&target, wait)? } else { Outputs::discarding(&dir) };
    let mut report = Report::default();
    let checkpoints = Checkpoints::beside(&dir, opts.resume);
    // Rank 0 opens the checkpoint folder first (a fresh run empties it),
    // the others after, and nobody trains before all have.
    if !root {
        distributed::barrier();
    }
    let ctx = Ctx::new(loaded, &mut out, &mut report, opts.progress && root, checkpoints.clone());
    if root {
        distributed::barrier();
    }
    let mut ctx = ctx?;
    distributed::barrier();
    stages::run_all(&mut ctx)?;
    drop(ctx);
    if !root {
        return Ok(vec![]);
    }
    let config = serde_json::to_value(p).expect("a pipeline serialises");
    let metrics = report.metrics_json(provenance(p.seed, started.elapsed().as_secs_f64(), config));
    out.write("metrics.json", metrics.as_bytes())?;
    out.write("report.md", report.markdown(&p.name, &p.description, &p.reference).as_bytes())?;
    // The checkpoints go with the lock still held (a run waiting for the folder starts its own).
    out.remove_after_commit(checkpoints.dir.clone());
    let written = out.commit()?;
    Ok(written)
}
