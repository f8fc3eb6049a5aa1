//! Reading run folders: `metrics.json`, and the figures `report.md` names.
//!
//! The resources folder is treated as hostile input: every file is read with
//! a ceiling, symlinks are not followed (a link could lead out of the folder
//! or to a device), figures must be PNGs, and a folder that cannot be read is
//! skipped with a warning naming it instead of ending the page.

use crate::files::{read_capped, read_text_capped};
use serde_json::{Map, Value};
use std::path::Path;

/// The largest `metrics.json` read (real ones are under 100 KB).
pub const METRICS_LIMIT: u64 = 8 << 20;
/// The largest `report.md` read for figure captions.
pub const REPORT_MD_LIMIT: u64 = 4 << 20;
/// The largest figure embedded.
pub const FIGURE_LIMIT: u64 = 16 << 20;
/// All figures of all runs together, so the page stays openable.
pub const FIGURES_TOTAL_LIMIT: u64 = 256 << 20;
/// Figures taken from one run.
pub const FIGURES_PER_RUN: usize = 64;
/// Folder entries looked at; a giant folder is cut here, with a warning.
pub const ENTRIES_LIMIT: usize = 2000;
/// Widest or tallest figure accepted, in pixels.
pub const FIGURE_SIDE_LIMIT: u32 = 20_000;

/// One run folder as read.
#[derive(Debug, Clone)]
pub struct RunDir {
    /// The folder's name.
    pub name: String,
    /// `metrics.json`, an object.
    pub metrics: Map<String, Value>,
    /// Figures in `report.md`'s order.
    pub figures: Vec<Figure>,
}

/// A PNG figure and its caption.
#[derive(Debug, Clone)]
pub struct Figure {
    /// File name inside the run folder.
    pub file: String,
    /// The caption `report.md` gives it (its alt text).
    pub caption: String,
    /// The PNG's bytes.
    pub png: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// What a scan found: the runs, sorted by name, and a warning per thing skipped.
#[derive(Debug, Default)]
pub struct Scan {
    pub runs: Vec<RunDir>,
    pub warnings: Vec<String>,
}

/// Read every run folder in `dir` (sub-folders holding a `metrics.json`).
/// Fails only when `dir` itself cannot be listed.
pub fn scan(dir: &Path) -> std::io::Result<Scan> {
    let mut scan = Scan::default();
    let mut budget = FIGURES_TOTAL_LIMIT;
    let mut names = Vec::new();
    for (i, entry) in std::fs::read_dir(dir)?.enumerate() {
        if i == ENTRIES_LIMIT {
            scan.warnings.push(format!("{}: more than {ENTRIES_LIMIT} entries; the rest are not read", dir.display()));
            break;
        }
        let entry = match entry {
            Ok(e) => e,
            Err(e) => {
                scan.warnings.push(format!("{}: an entry cannot be read: {e}", dir.display()));
                continue;
            }
        };
        let path = entry.path();
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            scan.warnings.push(format!("{}: name is not UTF-8; skipped", path.display()));
            continue;
        };
        if name.starts_with('.') {
            continue; // staging and cache folders
        }
        match std::fs::symlink_metadata(&path) {
            Ok(m) if m.file_type().is_symlink() => {
                scan.warnings.push(format!("{}: a symlink; skipped (links are not followed)", path.display()));
            }
            Ok(m) if m.is_dir() => names.push(name),
            Ok(_) => {} // README.md, index.html ...
            Err(e) => scan.warnings.push(format!("{}: {e}; skipped", path.display())),
        }
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        match read_run(&path, &name, &mut budget, &mut scan.warnings) {
            Ok(Some(run)) => scan.runs.push(run),
            Ok(None) => {}
            Err(e) => scan.warnings.push(format!("{}: {e}; skipped", path.display())),
        }
    }
    Ok(scan)
}

/// One run folder; `None` when it holds no `metrics.json` (not a run).
fn read_run(path: &Path, name: &str, budget: &mut u64, warnings: &mut Vec<String>) -> Result<Option<RunDir>, String> {
    let metrics_path = path.join("metrics.json");
    match std::fs::symlink_metadata(&metrics_path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("metrics.json: {e}")),
        Ok(m) if m.file_type().is_symlink() => return Err("metrics.json is a symlink (links are not followed)".into()),
        Ok(_) => {}
    }
    let text = read_text_capped(&metrics_path, METRICS_LIMIT).map_err(|e| format!("metrics.json {e}"))?;
    let metrics = match serde_json::from_str::<Value>(&text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => return Err("metrics.json is not a JSON object".into()),
        Err(e) => return Err(format!("metrics.json is not valid JSON: {e}")),
    };
    if metrics.get("config").is_some_and(|c| !c.is_object()) {
        return Err("metrics.json: `config` is not an object".into());
    }
    let figures = read_figures(path, budget, warnings);
    Ok(Some(RunDir { name: name.to_string(), metrics, figures }))
}

/// The figures `report.md` shows, each checked to be a PNG; a figure that
/// is missing or not a PNG is left out with a warning.
fn read_figures(dir: &Path, budget: &mut u64, warnings: &mut Vec<String>) -> Vec<Figure> {
    let md_path = dir.join("report.md");
    if std::fs::symlink_metadata(&md_path).map(|m| !m.is_file()).unwrap_or(true) {
        return Vec::new();
    }
    let md = match read_text_capped(&md_path, REPORT_MD_LIMIT) {
        Ok(t) => t,
        Err(e) => {
            warnings.push(format!("{}: {e}; its figures are left out", md_path.display()));
            return Vec::new();
        }
    };
    let mut figures: Vec<Figure> = Vec::new();
    for (caption, file) in image_links(&md) {
        if figures.iter().any(|f| f.file == file) {
            continue;
        }
        if figures.len() == FIGURES_PER_RUN {
            warnings.push(format!("{}: more than {FIGURES_PER_RUN} figures; the rest are left out", dir.display()));
            break;
        }
        let path = dir.join(&file);
        match read_png(&path, *budget) {
            Ok((png, width, height)) => {
                *budget -= png.len() as u64;
                figures.push(Figure { file, caption, png, width, height });
            }
            Err(e) => warnings.push(format!("{}: {e}; left out", path.display())),
        }
    }
    figures
}

/// `(caption, file)` of each `![caption](file)` line whose file is a plain
/// name in the same folder (no path separators, not hidden).
pub fn image_links(md: &str) -> Vec<(String, String)> {
    md.lines()
        .filter_map(|line| {
            let inner = line.trim().strip_prefix("![")?.strip_suffix(')')?;
            let (caption, file) = inner.rsplit_once("](")?;
            let plain = !file.is_empty() && !file.starts_with('.') && !file.contains(['/', '\\']);
            plain.then(|| (caption.to_string(), file.to_string()))
        })
        .collect()
}

/// A regular file (not a link) holding a PNG no larger than the limits.
fn read_png(path: &Path, budget: u64) -> Result<(Vec<u8>, u32, u32), String> {
    let meta = std::fs::symlink_metadata(path).map_err(|e| e.to_string())?;
    if meta.file_type().is_symlink() {
        return Err("a symlink (links are not followed)".into());
    }
    let limit = FIGURE_LIMIT.min(budget);
    let bytes = read_capped(path, limit).map_err(|e| {
        if limit < FIGURE_LIMIT {
            format!("{e} (the page's {} MiB of figures are used up)", FIGURES_TOTAL_LIMIT >> 20)
        } else {
            e.to_string()
        }
    })?;
    let (w, h) = png_size(&bytes)?;
    Ok((bytes, w, h))
}

/// Width and height from a PNG's header, which must parse.
pub fn png_size(bytes: &[u8]) -> Result<(u32, u32), String> {
    if !bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Err("not a PNG".into());
    }
    let reader = image::io::Reader::with_format(std::io::Cursor::new(bytes), image::ImageFormat::Png);
    let (w, h) = reader.into_dimensions().map_err(|e| format!("not a readable PNG: {e}"))?;
    if w == 0 || h == 0 || w > FIGURE_SIDE_LIMIT || h > FIGURE_SIDE_LIMIT {
        return Err(format!("a PNG of {w} x {h} pixels, outside 1..={FIGURE_SIDE_LIMIT}"));
    }
    Ok((w, h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_links_take_plain_names_only() {
        let md = "# t\n\n![A caption (with parens)](fig.png)\n\n*A caption*\n![x](../secret.png)\n\
                  ![y](/etc/passwd)\n![z](.hidden.png)\n![w](sub\\a.png)\n  ![b] c](b.png)  \n";
        assert_eq!(
            image_links(md),
            vec![("A caption (with parens)".to_string(), "fig.png".to_string()), ("b] c".into(), "b.png".into())]
        );
    }

    #[test]
    fn png_size_refuses_what_is_not_a_png() {
        assert!(png_size(b"GIF89a....").unwrap_err().contains("not a PNG"));
        assert!(png_size(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR").unwrap_err().contains("not a readable PNG"));
        let mut png = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageOutputFormat::Png)
            .unwrap();
        assert_eq!(png_size(&png), Ok((3, 2)));
    }
}
