//! What `nabla predict` is given, as examples: an image file, a folder of
//! images (searched recursively, in name order), or an IDX file of images
//! (MNIST's format, gzipped or not), one example per image named
//! `FILE#index`.

use super::RunModel;
use crate::data::idx;
use std::io::Read;
use std::path::{Path, PathBuf};

/// File name endings taken from folders (any file named on the command line
/// is tried, whatever its name).
const IMAGE_ENDINGS: [&str; 3] = ["png", "jpg", "jpeg"];
/// Files taken from folders, at most, and how deep they are searched.
pub const MAX_FILES: usize = 1_000_000;
const MAX_DEPTH: usize = 16;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    Image(PathBuf),
    Idx(PathBuf),
}

/// The sources the arguments name, and the arguments that name nothing usable.
pub fn expand(args: &[PathBuf]) -> (Vec<Source>, Vec<(PathBuf, String)>) {
    let (mut sources, mut bad) = (Vec::new(), Vec::new());
    for arg in args {
        match std::fs::metadata(arg) {
            Err(e) => bad.push((arg.clone(), e.to_string())),
            Ok(m) if m.is_dir() => {
                let before = sources.len();
                if let Err(e) = walk(arg, 0, &mut sources) {
                    bad.push((arg.clone(), e));
                } else if sources.len() == before {
                    bad.push((arg.clone(), format!("holds no image ({} files)", IMAGE_ENDINGS.join(", "))));
                }
            }
            Ok(_) => sources.push(if is_idx(arg) { Source::Idx(arg.clone()) } else { Source::Image(arg.clone()) }),
        }
    }
    (sources, bad)
}

/// Image files under `dir`, in name order; symlinked folders are not followed.
fn walk(dir: &Path, depth: usize, out: &mut Vec<Source>) -> Result<(), String> {
    if depth > MAX_DEPTH {
        return Err(format!("{}: folders nested more than {MAX_DEPTH} deep", dir.display()));
    }
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .collect();
    entries.sort_by_key(|e| e.file_name());
    for e in entries {
        let path = e.path();
        let Ok(kind) = e.file_type() else { continue };
        if kind.is_dir() {
            walk(&path, depth + 1, out)?;
        } else if IMAGE_ENDINGS.iter().any(|x| path.extension().is_some_and(|e| e.eq_ignore_ascii_case(x))) {
            if out.len() >= MAX_FILES {
                return Err(format!("more than {MAX_FILES} images; name fewer at a time"));
            }
            out.push(Source::Image(path));
        }
    }
    Ok(())
}

/// An IDX file by its first bytes: `00 00 08 nd`, or gzip's magic.
fn is_idx(path: &Path) -> bool {
    let mut head = [0u8; 4];
    let read = crate::files::open_regular(path, u64::MAX).ok().and_then(|(mut f, _)| f.read_exact(&mut head).ok());
    read.is_some() && (head[..2] == [0x1f, 0x8b] || head[..3] == [0, 0, 8])
}

/// One example, or why a file gave none.
pub type Example = (String, Result<Vec<f32>, String>);

/// The examples of `source` for `model`, each preprocessed as in training.
pub fn examples(model: &RunModel, source: &Source) -> Vec<Example> {
    match source {
        Source::Image(path) => {
            let name = path.display().to_string();
            let x = crate::files::read_capped(path, crate::data::faces::MAX_IMAGE_FILE_BYTES)
                .map_err(|e| format!("the image {e}"))
                .and_then(|bytes| model.preprocess(path, &bytes).map_err(|e| e.to_string()));
            vec![(name, x)]
        }
        Source::Idx(path) => match idx_images(model, path) {
            Ok(rows) => rows,
            Err(e) => vec![(path.display().to_string(), Err(e))],
        },
    }
}

fn idx_images(model: &RunModel, path: &Path) -> Result<Vec<Example>, String> {
    let [channels, side, _] = model.image;
    let a =
        idx::read(path).map_err(|e| e.to_string().trim_start_matches(&format!("{}: ", path.display())).to_string())?;
    if a.dims.len() != 3 {
        return Err(format!("holds an array of dimensions {:?}, not images [count, rows, columns]", a.dims));
    }
    if channels != 1 || a.dims[1] != side || a.dims[2] != side {
        return Err(format!(
            "holds {} x {} gray images; the model takes {channels} channel(s) of {side} x {side}",
            a.dims[1], a.dims[2]
        ));
    }
    let plane = side * side;
    Ok(a.data
        .chunks(plane)
        .enumerate()
        .map(|(i, px)| (format!("{}#{i}", path.display()), Ok(model.from_bytes(px))))
        .collect())
}
