//! `nabla eval RUN_DIR [--data PATH]`: accuracy, per-class precision and
//! recall, and the confusion matrix of a trained model, on the run's own
//! test split (rebuilt from its pipeline: same data, same seed, so the
//! accuracy is the run's to the last digit) or on other labelled data:
//! - a folder holding MNIST's `t10k-images-idx3-ubyte` and
//!   `t10k-labels-idx1-ubyte` (gzipped or not): all its 10000 images;
//! - an IDX images file with `--labels` naming its IDX labels file;
//! - a folder of face crops named `<actor><n>.<ext>` (as `nabla fetch`
//!   writes them), labelled by actor; actors the model does not know are
//!   left out and counted;
//! - a folder of class folders, each named as a class of the model.

use super::inputs::{self, Source};
use super::RunModel;
use crate::data::{idx, Split};
use crate::pipeline::confusion::Confusion;
use crate::pipeline::stages::{images, mistakes, train};
use crate::tensor::Tensor;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

/// Examples per pass through the model (and decoded at once).
const BATCH: usize = 1024;

/// Labelled examples to evaluate on.
pub enum EvalData {
    /// The run's own test split.
    TestSplit,
    /// An IDX images file and its labels.
    Idx {
        /// The images file.
        images: PathBuf,
        /// The labels file.
        labels: PathBuf,
    },
    /// Image files and their class indices.
    Files {
        /// The folder they were found in (named in the report).
        root: PathBuf,
        /// Each file and its class index.
        files: Vec<(PathBuf, usize)>,
        /// Files left out: of classes the model does not know.
        ignored: usize,
    },
}

/// What an evaluation found.
pub struct Evaluation {
    /// What was evaluated on, as the report names it.
    pub data: String,
    /// Counts of (true, predicted) classes.
    pub confusion: Confusion,
    /// Inputs that could not be used, and why.
    pub failed: Vec<(String, String)>,
    /// Examples left out (of classes the model does not know).
    pub ignored: usize,
    /// The first misclassified examples: values, true and predicted class.
    pub mistakes: Vec<(Vec<f32>, usize, usize)>,
}

impl Evaluation {
    /// The evaluation as `metrics.json` holds it, for the run in `run`.
    pub fn json(&self, run: &Path) -> Value {
        json!({
            "run": run.display().to_string(),
            "data": self.data,
            "examples": self.confusion.total(),
            "accuracy": self.confusion.accuracy(),
            "ignored": self.ignored,
            "failed": self.failed.iter().map(|(i, e)| json!({ "input": i, "error": e })).collect::<Vec<_>>(),
            "confusion": self.confusion.json(),
        })
    }

    /// The mistakes as a figure (None when there are none).
    pub fn mistakes_png(&self, model: &RunModel) -> crate::Result<Option<Vec<u8>>> {
        if self.mistakes.is_empty() {
            return Ok(None);
        }
        let [channels, side, _] = model.image;
        let width = channels * side * side;
        let rows: Vec<f32> = self.mistakes.iter().flat_map(|(x, _, _)| x.iter().copied()).collect();
        let split = Split { images: Tensor::from_vec(rows, &[self.mistakes.len(), width])?, labels: vec![] };
        let c = model.classes();
        let grid = mistakes::mistakes_grid(&split, channels, side, &|i| {
            format!("{} -> {}", c[self.mistakes[i].1], c[self.mistakes[i].2])
        });
        grid.png().map(Some)
    }
}

/// What `--data` (and `--labels`) name.
pub fn data_from_args(model: &RunModel, data: Option<&Path>, labels: Option<&Path>) -> crate::Result<EvalData> {
    let Some(path) = data else {
        return match labels {
            Some(_) => Err("--labels goes with --data IMAGES.idx".into()),
            None => Ok(EvalData::TestSplit),
        };
    };
    let meta = std::fs::metadata(path).map_err(|e| format!("--data {}: {e}", path.display()))?;
    if !meta.is_dir() {
        let labels = labels.ok_or_else(|| {
            format!("--data {}: a file of images needs --labels FILE (its IDX labels)", path.display())
        })?;
        return Ok(EvalData::Idx { images: path.to_path_buf(), labels: labels.to_path_buf() });
    }
    if labels.is_some() {
        return Err(format!("--labels: --data {} is a folder, which holds its own labels", path.display()).into());
    }
    let t10k = |name: &str| [path.join(format!("{name}.gz")), path.join(name)].into_iter().find(|p| p.exists());
    if let (Some(images), Some(labels)) = (t10k("t10k-images-idx3-ubyte"), t10k("t10k-labels-idx1-ubyte")) {
        return Ok(EvalData::Idx { images, labels });
    }
    let classes = model.classes();
    // Face crops named by actor, as the training data is.
    let crops = crate::data::faces::list(path)?;
    if !crops.is_empty() {
        let (mut files, mut ignored) = (Vec::new(), 0);
        for (actor, paths) in crops {
            match classes.iter().position(|c| c.eq_ignore_ascii_case(&actor)) {
                Some(c) => files.extend(paths.into_iter().map(|p| (p, c))),
                None => ignored += paths.len(),
            }
        }
        if files.is_empty() {
            return Err(format!(
                "--data {}: its images are of actors the model does not know (it knows {})",
                path.display(),
                classes.join(", ")
            )
            .into());
        }
        return Ok(EvalData::Files { root: path.to_path_buf(), files, ignored });
    }
    // Class folders.
    let mut files = Vec::new();
    let mut entries: Vec<_> = std::fs::read_dir(path)
        .map_err(|e| format!("--data {}: {e}", path.display()))?
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let c = classes.iter().position(|c| *c == name).ok_or_else(|| {
            format!(
                "--data {}: folder '{name}' is not a class of the model ({}); class folders must be named as the \
                 classes",
                path.display(),
                classes.join(", ")
            )
        })?;
        let (found, bad) = inputs::expand(&[e.path()]);
        if let Some((p, why)) = bad.first() {
            return Err(format!("--data {}: {why}", p.display()).into());
        }
        files.extend(found.into_iter().filter_map(|s| match s {
            Source::Image(p) => Some((p, c)),
            Source::Idx(_) => None,
        }));
    }
    if files.is_empty() {
        return Err(format!(
            "--data {}: holds neither MNIST's t10k files, nor face crops named <actor><n>.png, nor class folders",
            path.display()
        )
        .into());
    }
    Ok(EvalData::Files { root: path.to_path_buf(), files, ignored: 0 })
}

/// Evaluate `model` on `data`.
pub fn evaluate(model: &RunModel, data: &EvalData) -> crate::Result<Evaluation> {
    let classes = model.classes();
    let mut truth = Vec::new();
    let mut predicted = Vec::new();
    let mut mistakes = Vec::new();
    let mut failed = Vec::new();
    // Examples `[rows, width]` and their labels through the model.
    let mut run = |images: &Tensor, ys: Vec<usize>| -> Result<(), String> {
        if ys.is_empty() {
            return Ok(());
        }
        let width = images.numel() / ys.len();
        let pred = model.logits(images).and_then(|l| l.argmax_axis(1)).map_err(|e| format!("the model: {e}"))?;
        for ((x, &y), &p) in images.data().chunks(width).zip(&ys).zip(&pred) {
            if y != p && mistakes.len() < 32 {
                mistakes.push((x.to_vec(), y, p));
            }
        }
        truth.extend(ys);
        predicted.extend(pred);
        Ok(())
    };
    // Rows of equal width as one tensor.
    let stack = |xs: Vec<Vec<f32>>| -> Result<Tensor, String> {
        let width = xs.first().map_or(0, Vec::len);
        Tensor::from_vec(xs.concat(), &[xs.len(), width]).map_err(|e| e.to_string())
    };
    let (description, ignored) = match data {
        EvalData::TestSplit => {
            let p = &model.pipeline;
            let d = train::with_seed(p, train::seeds(p)[0]).data;
            let root = d.resolved_root();
            let ds = images(&d, &root).map_err(|e| format!("the run's data: {e} (or give --data)"))?;
            if ds.class_names != classes {
                return Err(format!(
                    "the run's data {}: its classes ({}) are not the model's ({})",
                    root.display(),
                    ds.class_names.join(", "),
                    classes.join(", ")
                )
                .into());
            }
            // One piece, as training's evaluation took it.
            run(&ds.test.images, ds.test.labels.clone())?;
            (format!("the run's test split ({}, data seed {})", root.display(), d.seed), 0)
        }
        EvalData::Idx { images, labels } => {
            let a = idx::read(images)?;
            let l = idx::read(labels)?;
            let [channels, side, _] = model.image;
            if a.dims.len() != 3 || channels != 1 || a.dims[1] != side || a.dims[2] != side {
                return Err(format!(
                    "{}: holds an array of dimensions {:?}; the model takes {channels} channel(s) of {side} x {side}",
                    images.display(),
                    a.dims
                )
                .into());
            }
            if l.dims.len() != 1 || l.dims[0] != a.dims[0] {
                return Err(format!(
                    "{}: holds {:?} labels for the {} images of {}",
                    labels.display(),
                    l.dims,
                    a.dims[0],
                    images.display()
                )
                .into());
            }
            if let Some(i) = l.data.iter().position(|&y| y as usize >= classes.len()) {
                return Err(format!(
                    "{}: label {} at index {i} is not one of the model's {} classes",
                    labels.display(),
                    l.data[i],
                    classes.len()
                )
                .into());
            }
            let xs: Vec<Vec<f32>> = a.data.chunks(side * side).map(|px| model.from_bytes(px)).collect();
            run(&stack(xs)?, l.data.iter().map(|&y| y as usize).collect())?;
            (format!("{} with {}", images.display(), labels.display()), 0)
        }
        EvalData::Files { root, files, ignored } => {
            for chunk in files.chunks(BATCH) {
                let (mut xs, mut ys) = (Vec::new(), Vec::new());
                for (path, y) in chunk {
                    let x = crate::files::read_capped(path, crate::data::faces::MAX_IMAGE_FILE_BYTES)
                        .map_err(|e| format!("the image {e}"))
                        .and_then(|bytes| model.preprocess(path, &bytes).map_err(|e| e.to_string()));
                    match x {
                        Ok(x) => {
                            xs.push(x);
                            ys.push(*y);
                        }
                        Err(why) => {
                            crate::say!("error: {}: {why}", path.display());
                            failed.push((path.display().to_string(), why));
                        }
                    }
                }
                run(&stack(xs)?, ys)?;
            }
            (format!("{} ({} images)", root.display(), files.len()), *ignored)
        }
    };
    let confusion = Confusion::new(classes, &truth, &predicted)?;
    if confusion.total() == 0 {
        return Err(format!("{description}: no example could be used").into());
    }
    Ok(Evaluation { data: description, confusion, failed, ignored, mistakes })
}
