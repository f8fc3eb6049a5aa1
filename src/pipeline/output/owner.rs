//! Whose folder is it? nabla replaces an output folder whole, so it must
//! know the folder is its own. Every folder it writes holds a marker,
//! `.nabla-output`, naming the tool, the kind of output (a pipeline run, an
//! `eval`), a run id and every file the run wrote. A folder may be replaced
//! when it is absent, empty, or marked by nabla for the same kind of output
//! and holding nothing but the files its marker lists. Anything else, a
//! user's notes beside the figures, another kind's output, a subfolder, is
//! refused, naming what is in the way.
//!
//! Folders written before the marker existed are recognised only when every
//! file in them is one this run would write, and `metrics.json` is among
//! them.

use super::{error, OutputError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The marker's file name inside an output folder.
pub const MARKER: &str = ".nabla-output";
/// What the marker's `tool` says.
const TOOL: &str = "nabla";
/// The largest marker read (a sweep of 10000 values names 10000 figures).
const MARKER_LIMIT: u64 = 4 << 20;

/// The kinds of output folder nabla writes; one never replaces another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// The results of `nabla FILE`.
    Run,
    /// The figures and metrics of `nabla eval`.
    Eval,
}

impl Kind {
    /// The marker's word for it.
    fn word(self) -> &'static str {
        match self {
            Kind::Run => "run",
            Kind::Eval => "eval",
        }
    }

    /// How messages call it.
    fn described(word: &str) -> &'static str {
        match word {
            "run" => "a pipeline run",
            "eval" => "nabla eval",
            _ => "another kind of output",
        }
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Marker {
    tool: String,
    kind: String,
    id: String,
    files: Vec<String>,
}

/// The marker's bytes for a run of `kind` that wrote `files`.
pub fn marker(kind: Kind, files: &[String]) -> Vec<u8> {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let m = Marker {
        tool: TOOL.into(),
        kind: kind.word().into(),
        id: format!("{now:x}-{}", std::process::id()),
        files: files.to_vec(),
    };
    serde_json::to_vec_pretty(&m).expect("a marker serialises")
}

/// Refuse `dir` unless a run of `kind` may replace it (see the module doc);
/// `legacy` are the names this run would write, for unmarked folders.
pub fn check(dir: &Path, kind: Kind, legacy: &[String]) -> Result<(), OutputError> {
    let meta = match std::fs::symlink_metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(error(dir, format!("cannot look at the output folder: {e}"))),
        Ok(m) => m,
    };
    if meta.file_type().is_symlink() {
        return Err(error(dir, "the output folder is a symbolic link; name the folder it points to instead"));
    }
    if !meta.is_dir() {
        return Err(error(dir, "exists and is not a folder; choose another output folder"));
    }
    let listing = |e: std::io::Error| error(dir, format!("cannot list the output folder: {e}"));
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir).map_err(listing)? {
        let e = e.map_err(listing)?;
        let regular = e.file_type().map_err(listing)?.is_file();
        entries.push((e.file_name().to_string_lossy().into_owned(), regular));
    }
    if entries.is_empty() {
        return Ok(());
    }
    // The first in the way, the same on every file system.
    entries.sort();
    let whole = "the run replaces its output folder whole, so choose another one or remove it";
    let foreign = |name: &str, why: &str| {
        error(dir, format!("holds {}, {why}, so it is not the results of an earlier run; {whole}", quote(name)))
    };
    if let Some(&(_, regular)) = entries.iter().find(|(n, _)| n == MARKER) {
        if !regular {
            return Err(foreign(MARKER, "which is not a regular file"));
        }
        let path = dir.join(MARKER);
        let text = crate::files::read_text_capped(&path, MARKER_LIMIT)
            .map_err(|e| error(&path, format!("the output marker {e}")))?;
        let m: Marker = serde_json::from_str(&text).map_err(|_| foreign(MARKER, "which nabla did not write"))?;
        if m.tool != TOOL {
            return Err(foreign(MARKER, "which nabla did not write"));
        }
        if m.kind != kind.word() {
            return Err(error(
                dir,
                format!(
                    "holds the output of {}, not of {}; {whole}",
                    Kind::described(&m.kind),
                    Kind::described(kind.word())
                ),
            ));
        }
        for (name, regular) in entries.iter().filter(|(n, _)| n != MARKER) {
            if !regular {
                return Err(foreign(name, "which is not a regular file"));
            }
            if !m.files.contains(name) {
                return Err(foreign(name, "which the earlier run did not write"));
            }
        }
        return Ok(());
    }
    // Unmarked: from a nabla before the marker, or not ours.
    for (name, regular) in &entries {
        if !regular {
            return Err(foreign(name, "which is not a regular file"));
        }
        if !legacy.iter().any(|l| l == name) {
            return Err(foreign(name, &format!("which {} does not write", Kind::described(kind.word()))));
        }
    }
    if !entries.iter().any(|(n, _)| n == "metrics.json") {
        return Err(error(
            dir,
            format!("is not empty and holds no metrics.json, so it is not the results of an earlier run; {whole}"),
        ));
    }
    Ok(())
}

fn quote(name: &str) -> String {
    crate::terminal::quote(name)
}
