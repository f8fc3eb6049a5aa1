//! `nabla report`: one page that puts every run beside the reference report.
//!
//! `read.rs` reads the run folders (hostile input: capped, no symlinks, PNGs
//! checked); `model.rs` arranges them into the page, in the report's part
//! order (`parts.rs`) with extra runs after, and `notes.rs` derives from each
//! run's metadata where the reproduction cannot be exact; `html.rs` and
//! `markdown.rs` render that one model; `text.rs` holds the escapes.
//! Both files are written whole or not at all.

mod html;
mod markdown;
pub mod model;
pub mod notes;
pub mod parts;
pub mod read;
pub mod text;

use std::io::Write;
use std::path::{Component, Path, PathBuf};
use std::process::ExitCode;

/// Why no page was written.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("{}: cannot list the resources folder: {source}", path.display())]
    Resources { path: PathBuf, source: std::io::Error },
    #[error("{}: cannot write: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{}: is a folder; --out names the HTML file to write", path.display())]
    OutIsFolder { path: PathBuf },
}

impl From<PageError> for crate::error::Error {
    fn from(e: PageError) -> crate::error::Error {
        crate::error::Error::Other(Box::new(e))
    }
}

/// What [`generate`] wrote and what it skipped.
#[derive(Debug)]
pub struct Written {
    pub html: PathBuf,
    pub markdown: PathBuf,
    /// Run folders read.
    pub runs: usize,
    /// One line per folder, file or figure skipped, naming it.
    pub warnings: Vec<String>,
}

/// Read the runs in `resources`, write the HTML page to `out` (default
/// `resources/index.html`) and `REPORT.md` beside it.
pub fn generate(resources: &Path, out: Option<&Path>) -> Result<Written, PageError> {
    let html_path = out.map_or_else(|| resources.join("index.html"), Path::to_path_buf);
    if html_path.is_dir() {
        return Err(PageError::OutIsFolder { path: html_path });
    }
    let out_dir = match html_path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let md_path = out_dir.join("REPORT.md");
    if html_path.file_name() == md_path.file_name() {
        return Err(PageError::Write {
            path: html_path,
            source: std::io::Error::other("REPORT.md is the Markdown's name"),
        });
    }
    let scan = read::scan(resources).map_err(|source| PageError::Resources { path: resources.into(), source })?;
    let page = model::build(&scan);
    let prefix = link_prefix(&out_dir, resources);
    let html = html::render(&page);
    let md = markdown::render(&page, &prefix);
    write_atomic(&html_path, html.as_bytes())?;
    write_atomic(&md_path, md.as_bytes())?;
    Ok(Written { html: html_path, markdown: md_path, runs: scan.runs.len(), warnings: scan.warnings })
}

/// The relative link from folder `from` to folder `to`, "" when they are
/// one folder, else ending in '/', each segment percent-encoded.
fn link_prefix(from: &Path, to: &Path) -> String {
    let (Ok(from), Ok(to)) = (from.canonicalize(), to.canonicalize()) else {
        return String::new();
    };
    let a: Vec<Component> = from.components().collect();
    let b: Vec<Component> = to.components().collect();
    let common = a.iter().zip(&b).take_while(|(x, y)| x == y).count();
    let mut out = "../".repeat(a.len() - common);
    for c in &b[common..] {
        out += &text::url_segment(&c.as_os_str().to_string_lossy());
        out.push('/');
    }
    out
}

/// Write `bytes` to a temporary file beside `path`, then rename it over
/// `path`: a reader sees the old file or the new one, never half of one.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), PageError> {
    let err = |source| PageError::Write { path: path.to_path_buf(), source };
    let name = path.file_name().ok_or_else(|| err(std::io::Error::other("no file name")))?;
    let tmp = path.with_file_name(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

const USAGE: &str = "usage: nabla report [RESOURCES_DIR] [--out FILE.html]";

/// `nabla report [RESOURCES_DIR] [--out FILE.html]`: the arguments after
/// `report`. Warnings go to stderr; the exit status is non-zero only when no
/// page was written.
pub fn command(args: &[String]) -> ExitCode {
    let mut dir = None;
    let mut out = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "-h" | "--help" => {
                println!("{USAGE}\n\nWrites one HTML page (default RESOURCES_DIR/index.html, RESOURCES_DIR = resources)\nand REPORT.md beside it from the run folders.");
                return ExitCode::SUCCESS;
            }
            "--out" => match it.next() {
                Some(f) => out = Some(PathBuf::from(f)),
                None => return usage("--out needs a file name"),
            },
            s if s.starts_with("--out=") => out = Some(PathBuf::from(&s["--out=".len()..])),
            s if s.starts_with('-') => return usage(&format!("unknown option '{s}'")),
            s if dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return usage(&format!("one resources folder only ('{s}' is a second)")),
        }
    }
    let dir = dir.unwrap_or_else(|| PathBuf::from("resources"));
    match generate(&dir, out.as_deref()) {
        Ok(w) => {
            for warning in &w.warnings {
                eprintln!("warning: {warning}");
            }
            println!("{} runs -> {} and {}", w.runs, w.html.display(), w.markdown.display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    eprintln!("nabla report: {why}\n{USAGE}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests;
