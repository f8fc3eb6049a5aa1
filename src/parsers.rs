//! The front door of every parser that reads bytes from outside: pipeline
//! files, IDX data, weight files, face images, the FaceScrub list, a run
//! folder's `model.json`, and whole run folders as `nabla predict`/`eval`
//! and `nabla report` read them. The fuzz targets (`fuzz/`) and the corpus
//! replay test (`tests/fuzz_corpus.rs`) call exactly these, so what is fuzzed
//! is what users run. Each returns the parser's own error message; none may
//! panic, hang or allocate without bound.
//!
//! The two folder readers take a path, so their front doors unpack the bytes
//! (see [`Folder`]) into a fresh temporary folder (removed afterwards, also
//! when the reader panics) and call the reader on it.

use std::path::{Path, PathBuf};

/// A pipeline file: TOML syntax, schema, then validation.
pub fn pipeline(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::pipeline::load::parse(Path::new("fuzz.toml"), text, &[]).map(drop).map_err(|e| e.to_string())
}

/// An IDX array, raw or gzipped (as a mapped file is read).
pub fn idx(bytes: &[u8]) -> Result<(), String> {
    crate::data::idx::parse_file(Path::new("fuzz.idx"), bytes).map(drop).map_err(|e| e.to_string())
}

/// A weights file: a `.pth` zip checkpoint or safetensors.
pub fn weights(bytes: &[u8]) -> Result<(), String> {
    crate::weights::parse(bytes).map(drop).map_err(|e| e.to_string())
}

/// A face image, decoded and resized to a 32 x 32 colour crop.
pub fn image(bytes: &[u8]) -> Result<(), String> {
    crate::data::faces::decode_image(Path::new("fuzz.png"), bytes, 32, crate::data::faces::Color::Rgb, 1.0 / 255.0)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The FaceScrub list (`facescrub_actors.txt`), all actors kept.
pub fn facescrub_list(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::fetch::parse_list(Path::new("fuzz.txt"), text, &[]).map(drop).map_err(|e| e.to_string())
}

/// A run folder's `model.json`: JSON, then the manifest's own checks, as
/// `nabla predict` and `nabla eval` read it.
pub fn model_json(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::pipeline::apply::manifest::Manifest::parse(text).map(drop)
}

/// A run folder ([`Folder`]'s bytes) opened as `nabla predict` and `nabla
/// eval` open it: `model.json`, `pipeline.toml` and the weights, each checked
/// against the others, the network rebuilt.
pub fn run_folder(bytes: &[u8]) -> Result<(), String> {
    let folder = Folder::decode(bytes)?;
    let tmp = TempDir::new()?;
    let dir = folder.write(&tmp.0)?;
    crate::pipeline::apply::RunModel::open(&dir).map(drop).map_err(|e| e.to_string())
}

/// A run folder ([`Folder`]'s bytes) as `nabla report` reads it: the only
/// folder of a resources folder, scanned (`metrics.json`, `report.md` and
/// the PNG figures it names), then the page built and rendered as HTML and
/// Markdown. An error when the run is skipped or anything draws a warning.
pub fn report_run(bytes: &[u8]) -> Result<(), String> {
    let folder = Folder::decode(bytes)?;
    let tmp = TempDir::new()?;
    folder.write(&tmp.0)?;
    let scan = crate::report_page::read::scan(&tmp.0).map_err(|e| e.to_string())?;
    let (html, md) = crate::report_page::render(&scan, "");
    if !scan.warnings.is_empty() {
        return Err(scan.warnings.join("; "));
    }
    if scan.runs.len() != 1 || html.is_empty() || md.is_empty() {
        return Err(format!("{} runs read, not 1", scan.runs.len()));
    }
    Ok(())
}

/// A small folder as bytes, for the folder readers' fuzz targets: entries of
/// a name length (1 byte), a name (UTF-8), a data length (4 bytes, little
/// endian) and the data. A data length past the end takes the bytes that
/// remain, and a header cut short ends the list, so any bytes decode except
/// a bad name. A name is a plain file name: no `/` or NUL, not `.` or `..`,
/// each once. Ending in `/` it makes a folder (its data ignored), ending in
/// `@` a symbolic link to the data (a plain name: a sibling). The empty name
/// names the folder itself (its data; `run` when absent). At most 64 entries.
/// `fuzz/seeds/make_run_seeds.py` writes the seeds in this form.
#[derive(Debug, Default)]
pub struct Folder {
    /// The folder's own name.
    pub name: Option<String>,
    /// What it holds, in order.
    pub entries: Vec<(String, Entry)>,
}

/// One entry of a [`Folder`].
#[derive(Debug, PartialEq, Eq)]
pub enum Entry {
    /// A regular file and its bytes.
    File(Vec<u8>),
    /// An empty folder.
    Dir,
    /// A symbolic link to a sibling.
    Link(String),
}

/// Most entries in a [`Folder`].
const FOLDER_ENTRIES: usize = 64;

impl Folder {
    /// Parse the form described at [`Folder`].
    pub fn decode(mut bytes: &[u8]) -> Result<Folder, String> {
        let mut folder = Folder::default();
        while let Some((&len, rest)) = bytes.split_first() {
            let len = len as usize;
            if rest.len() < len + 4 {
                break;
            }
            let (name, rest) = rest.split_at(len);
            let (size, rest) = rest.split_at(4);
            let size = (u32::from_le_bytes(size.try_into().expect("4 bytes")) as usize).min(rest.len());
            let (data, rest) = rest.split_at(size);
            bytes = rest;
            let name = std::str::from_utf8(name).map_err(|e| format!("an entry's name is not UTF-8: {e}"))?;
            if name.is_empty() {
                if folder.name.is_some() {
                    return Err("the folder's name is given twice".into());
                }
                let own = std::str::from_utf8(data).map_err(|e| format!("the folder's name is not UTF-8: {e}"))?;
                folder.name = Some(plain(own)?.to_string());
                continue;
            }
            if folder.entries.len() == FOLDER_ENTRIES {
                return Err(format!("more than {FOLDER_ENTRIES} entries"));
            }
            let (name, entry) = if let Some(dir) = name.strip_suffix('/') {
                (dir, Entry::Dir)
            } else if let Some(link) = name.strip_suffix('@') {
                let to = std::str::from_utf8(data).map_err(|e| format!("link {link}: target not UTF-8: {e}"))?;
                (link, Entry::Link(plain(to)?.to_string()))
            } else {
                (name, Entry::File(data.to_vec()))
            };
            let name = plain(name)?;
            if folder.entries.iter().any(|(n, _)| n == name) {
                return Err(format!("'{name}' is named twice"));
            }
            folder.entries.push((name.to_string(), entry));
        }
        Ok(folder)
    }

    /// Write the folder inside `parent`; returns its path.
    pub fn write(&self, parent: &Path) -> Result<PathBuf, String> {
        let dir = parent.join(self.name.as_deref().unwrap_or("run"));
        let err = |path: &Path, e: std::io::Error| format!("{}: {e}", path.display());
        std::fs::create_dir(&dir).map_err(|e| err(&dir, e))?;
        for (name, entry) in &self.entries {
            let path = dir.join(name);
            match entry {
                Entry::File(bytes) => std::fs::write(&path, bytes),
                Entry::Dir => std::fs::create_dir(&path),
                Entry::Link(to) => std::os::unix::fs::symlink(to, &path),
            }
            .map_err(|e| err(&path, e))?;
        }
        Ok(dir)
    }
}

/// `name` if it is a plain file name: not empty, no `/` or NUL, not `.` or `..`.
fn plain(name: &str) -> Result<&str, String> {
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(format!("'{}' is not a plain file name", name.escape_debug()));
    }
    Ok(name)
}

/// A folder of its own, removed with all it holds when dropped (symbolic
/// links inside are removed, not followed). It is made in `TMPDIR` when that
/// is set, else in `/dev/shm` when there is one: on a disk, making and removing
/// a folder of a few files costs ~7 ms, 30 times what the readers take.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Result<TempDir, String> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let root = match std::env::var_os("TMPDIR") {
            Some(dir) if !dir.is_empty() => PathBuf::from(dir),
            _ if Path::new("/dev/shm").is_dir() => PathBuf::from("/dev/shm"),
            _ => std::env::temp_dir(),
        };
        let path = root.join(format!("nabla-fuzz-{}-{n}", std::process::id()));
        // A folder of that name is left from a process that had this id.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(TempDir(path))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A parser's front door: bytes in, its error message out.
pub type Parser = fn(&[u8]) -> Result<(), String>;

/// Every target by name, for the fuzz crate and the replay test.
pub const TARGETS: [(&str, Parser); 8] = [
    ("pipeline", pipeline),
    ("idx", idx),
    ("weights", weights),
    ("image", image),
    ("facescrub_list", facescrub_list),
    ("model_json", model_json),
    ("run_folder", run_folder),
    ("report_run", report_run),
];
