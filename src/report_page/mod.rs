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
    #[error("{}: {why}", path.display())]
    NotOurs { path: PathBuf, why: String },
}

/// Refuse to replace `path` unless it is absent or a page this command
/// wrote (`is_ours` reads its first bytes): `--out notes.html` must not
/// overwrite a user's own page, nor REPORT.md beside it a user's notes.
fn ours(path: &Path, is_ours: fn(&str) -> bool) -> Result<(), PageError> {
    let not_ours = |why: &str| PageError::NotOurs { path: path.to_path_buf(), why: why.into() };
    let meta = match std::fs::symlink_metadata(path) {
        Err(_) => return Ok(()),
        Ok(m) => m,
    };
    if !meta.is_file() {
        return Err(not_ours(
            "exists and is not a regular file, so it is not a page nabla report wrote; choose another --out",
        ));
    }
    let mut head = Vec::new();
    let read = crate::files::open_regular(path, u64::MAX).map_err(|e| e.to_string()).and_then(|(f, _)| {
        std::io::Read::read_to_end(&mut std::io::Read::take(f, 4096), &mut head).map_err(|e| e.to_string())
    });
    match read {
        Ok(_) if is_ours(&String::from_utf8_lossy(&head)) => Ok(()),
        _ => Err(not_ours("exists and was not written by nabla report; choose another --out, or remove it")),
    }
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
    if let Err(source) = std::fs::metadata(&out_dir) {
        return Err(PageError::Write { path: html_path, source });
    }
    // One `nabla report` at a time per page, and never over a file it did not write.
    let lock_name = format!(".{}.lock", html_path.file_name().map_or("index.html".into(), |n| n.to_string_lossy()));
    let _lock = crate::lock::Lock::take(&out_dir.join(lock_name), &html_path, crate::lock::Wait::No)
        .map_err(|e| PageError::NotOurs { path: e.path, why: e.message })?;
    ours(&html_path, html::is_ours)?;
    ours(&md_path, markdown::is_ours)?;
    let (html, md) = render(&scan, &link_prefix(&out_dir, resources));
    write_atomic(&html_path, html.as_bytes())?;
    write_atomic(&md_path, md.as_bytes())?;
    Ok(Written { html: html_path, markdown: md_path, runs: scan.runs.len(), warnings: scan.warnings })
}

/// The page, as HTML and as Markdown (whose links to the run folders start
/// with `prefix`), from what a scan read.
pub(crate) fn render(scan: &read::Scan, prefix: &str) -> (String, String) {
    let page = model::build(scan);
    (html::render(&page), markdown::render(&page, prefix))
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
                crate::say!("warning: {warning}");
            }
            let done = format!("{} runs -> {} and {}", w.runs, w.html.display(), w.markdown.display());
            println!("{}", crate::terminal::clean(&done));
            ExitCode::SUCCESS
        }
        Err(e) => {
            crate::say!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn usage(why: &str) -> ExitCode {
    crate::say!("nabla report: {why}\n{USAGE}");
    ExitCode::from(2)
}

#[cfg(test)]
mod tests;
