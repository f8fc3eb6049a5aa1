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
        // nabla writes UTF-8 names only; no other name is taken for one of ours.
        let name = e.file_name().into_string().map_err(|raw| {
            let shown = quote(&raw.to_string_lossy());
            error(dir, format!("holds {shown}, whose name is not UTF-8, {NOT_EARLIER}; {WHOLE}"))
        })?;
        entries.push((name, regular));
    }
    if entries.is_empty() {
        return Ok(());
    }
    // The first in the way, the same on every file system.
    entries.sort();
    let whole = WHOLE;
    let foreign = |name: &str, why: &str| error(dir, format!("holds {}, {why}, {NOT_EARLIER}; {whole}", quote(name)));
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
        return Err(error(dir, format!("is not empty and holds no metrics.json, {NOT_EARLIER}; {whole}")));
    }
    // `metrics.json` and `report.md` are common names: the metrics must be ours.
    if !legacy_metrics(&dir.join("metrics.json"), kind) {
        return Err(foreign("metrics.json", &format!("which {} did not write", Kind::described(kind.word()))));
    }
    Ok(())
}

const WHOLE: &str = "the run replaces its output folder whole, so choose another one or remove it";
const NOT_EARLIER: &str = "so it is not the results of an earlier run";

/// Whether `path` holds the `metrics.json` a nabla from before the marker
/// wrote for `kind`: a JSON object with the keys that kind always writes.
fn legacy_metrics(path: &Path, kind: Kind) -> bool {
    let keys: &[&str] = match kind {
        Kind::Run => &["nabla_version", "config", "seed", "wall_seconds"],
        Kind::Eval => &["run", "data", "examples", "accuracy", "confusion"],
    };
    let Ok(text) = crate::files::read_text_capped(path, 64 << 20) else { return false };
    match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(m)) => keys.iter().all(|k| m.contains_key(*k)),
        _ => false,
    }
}

fn quote(name: &str) -> String {
    crate::terminal::quote(name)
}
