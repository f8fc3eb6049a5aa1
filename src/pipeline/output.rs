//! Where a run writes: every file goes first to a staging folder beside the
//! output folder (`.<name>.partial-<pid>`), and when the whole run has
//! succeeded the staging folder *becomes* the output folder by one rename.
//! An older output folder is first renamed aside (`.<name>.old-<pid>`) and
//! renamed back if the swap fails, so the folder holds the previous complete
//! results or the new ones, never a mix. A run killed between the two renames
//! leaves the old folder aside; the next run puts it back before it starts.
//!
//! The output folder is replaced whole, so it must be ours to replace: a
//! folder, not a symlink or a file, and empty or holding only the regular
//! files of an earlier run (with its `metrics.json`). `--out ~` cannot wipe a
//! home folder.

use std::io::Write;
use std::path::{Component, Path, PathBuf};

/// An output file or folder that could not be written or moved into place.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct OutputError {
    /// The file or folder.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl From<OutputError> for crate::error::Error {
    fn from(e: OutputError) -> crate::error::Error {
        crate::error::Error::Other(Box::new(e))
    }
}

fn error(path: &Path, message: impl Into<String>) -> OutputError {
    OutputError { path: path.to_path_buf(), message: message.into() }
}

/// Files of one run, staged until [`Outputs::commit`].
pub struct Outputs {
    dir: PathBuf,
    parent: PathBuf,
    name: String,
    staging: PathBuf,
    files: Vec<String>,
    /// Check names but write nothing (the ranks of an MPI job but rank 0).
    discard: bool,
}

impl Outputs {
    /// Prepare to write into `dir` (replaced on commit). Fails early if `dir`
    /// cannot be ours or its parent folder cannot be written.
    pub fn new(dir: &Path) -> Result<Outputs, OutputError> {
        let (parent, name) = split(dir)?;
        std::fs::create_dir_all(&parent)
            .map_err(|e| error(&parent, format!("cannot create the folder of the output folder: {e}")))?;
        recover_abandoned(&parent, &name, dir);
        check_replaceable(dir)?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        // Whatever is there (a leftover, or a planted symlink) is not ours.
        remove_entry(&staging);
        std::fs::create_dir(&staging)
            .map_err(|e| error(&staging, format!("cannot create the staging folder for the results: {e}")))?;
        Ok(Outputs { dir: dir.to_path_buf(), parent, name, staging, files: Vec::new(), discard: false })
    }

    /// Outputs of a run whose results another process writes (rank 0 of an
    /// MPI job): names are checked as [`Outputs::write`] does, nothing is
    /// written, and [`Outputs::commit`] writes nothing.
    pub fn discarding(dir: &Path) -> Outputs {
        let nowhere = PathBuf::new();
        Outputs {
            dir: dir.to_path_buf(),
            parent: nowhere.clone(),
            name: String::new(),
            staging: nowhere,
            files: Vec::new(),
            discard: true,
        }
    }

    /// The final folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stage `bytes` as `name`: a plain file name, new in this run (two
    /// outputs with one name would silently replace each other).
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.staging.join(name);
        super::names::file_name(name).map_err(|m| error(&path, m))?;
        if let Some(first) = self.files.iter().find(|f| f.to_lowercase() == name.to_lowercase()) {
            return Err(error(
                &self.dir.join(name),
                format!("written twice in one run (as '{first}' and '{name}'): two outputs share a name"),
            ));
        }
        if self.discard {
            self.files.push(name.to_string());
            return Ok(());
        }
        // `create_new`: never through a symlink or over a file someone put here.
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&path)
            .map_err(|e| error(&path, format!("cannot write: {e}")))?;
        file.write_all(bytes).map_err(|e| error(&path, format!("cannot write: {e}")))?;
        self.files.push(name.to_string());
        Ok(())
    }

    /// Names staged so far, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Put the staged folder in place of the output folder, all at once.
    pub fn commit(self) -> Result<Vec<PathBuf>, OutputError> {
        if self.discard {
            return Ok(vec![]);
        }
        // The run took a while: look again before replacing anything.
        check_replaceable(&self.dir)?;
        let aside = self.parent.join(format!(".{}.old-{}", self.name, std::process::id()));
        swap_in(&self.staging, &self.dir, &aside, |from, to| std::fs::rename(from, to))?;
        Ok(self.files.iter().map(|f| self.dir.join(f)).collect())
    }
}

impl Drop for Outputs {
    /// Whatever was not committed is thrown away.
    fn drop(&mut self) {
        if self.discard {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

/// Check, before a run, that `dir` can be its output folder (see the module doc).
pub fn check_dir(dir: &Path) -> Result<(), OutputError> {
    split(dir)?;
    check_replaceable(dir)
}

/// The parent folder and the last component of `dir`, which must be a
/// folder name (not empty, `.`, `..` or `/`: those would scatter the results
/// into an existing folder, or cannot be replaced).
fn split(dir: &Path) -> Result<(PathBuf, String), OutputError> {
    let name = match dir.components().next_back() {
        Some(Component::Normal(n)) => n.to_string_lossy().into_owned(),
        _ => {
            return Err(error(
                dir,
                "the output folder must end in a folder name (not empty, '.', '..' or '/'): its files go into a \
                 folder of their own",
            ))
        }
    };
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    Ok((parent, name))
}

/// `dir` may be replaced: absent, or a real folder that is empty or holds
/// only an earlier run's regular files.
fn check_replaceable(dir: &Path) -> Result<(), OutputError> {
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
    let entries = std::fs::read_dir(dir).map_err(|e| error(dir, format!("cannot list the output folder: {e}")))?;
    let mut has_metrics = false;
    let mut any = false;
    for e in entries {
        let e = e.map_err(|e| error(dir, format!("cannot list the output folder: {e}")))?;
        any = true;
        let kind = e.file_type().map_err(|err| error(&e.path(), format!("cannot look at it: {err}")))?;
        if !kind.is_file() {
            return Err(error(
                dir,
                format!(
                    "holds {}, which is not a regular file, so it is not the results of an earlier run; the run \
                     replaces its output folder whole, so choose another one or remove it",
                    e.file_name().to_string_lossy()
                ),
            ));
        }
        has_metrics |= e.file_name() == "metrics.json";
    }
    if any && !has_metrics {
        return Err(error(
            dir,
            "is not empty and holds no metrics.json, so it is not the results of an earlier run; the run replaces \
             its output folder whole, so choose another one or remove it",
        ));
    }
    Ok(())
}

/// Make `staging` the folder `dir`: directly if `dir` is absent, else by
/// renaming `dir` to `aside` first and back again if the second rename fails.
fn swap_in(
    staging: &Path,
    dir: &Path,
    aside: &Path,
    rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
) -> Result<(), OutputError> {
    let cannot = |e: std::io::Error| error(dir, format!("cannot move the results into place: {e}"));
    if std::fs::symlink_metadata(dir).is_err() {
        return rename(staging, dir).map_err(cannot);
    }
    remove_entry(aside);
    rename(dir, aside).map_err(cannot)?;
    if let Err(e) = rename(staging, dir) {
        return Err(match rename(aside, dir) {
            Ok(()) => cannot(e),
            Err(back) => error(
                dir,
                format!(
                    "cannot move the results into place ({e}), nor the previous results back ({back}): they are in {}",
                    aside.display()
                ),
            ),
        });
    }
    if let Err(e) = std::fs::remove_dir_all(aside) {
        eprintln!("warning: cannot remove the previous results {}: {e}", aside.display());
    }
    Ok(())
}

/// Clean up after runs that were killed (their process is gone): remove
/// their staging folders, and put back an output folder left aside in the
/// middle of a swap (or remove it, if the swap had finished). Only where
/// `/proc` tells which processes live.
fn recover_abandoned(parent: &Path, name: &str, dir: &Path) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    let (partial, old) = (format!(".{name}.partial-"), format!(".{name}.old-"));
    for e in entries.flatten() {
        let file = e.file_name().to_string_lossy().into_owned();
        let dead = |rest: &str| rest.parse::<u32>().is_ok_and(|pid| !Path::new("/proc").join(pid.to_string()).exists());
        if file.strip_prefix(&partial).is_some_and(dead) {
            remove_entry(&e.path());
        } else if file.strip_prefix(&old).is_some_and(dead) {
            if std::fs::symlink_metadata(dir).is_err() {
                let _ = std::fs::rename(e.path(), dir);
            } else {
                remove_entry(&e.path());
            }
        }
    }
}

/// Remove a file, symlink or folder (not what a symlink points to).
fn remove_entry(path: &Path) {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            let _ = std::fs::remove_dir_all(path);
        }
        Ok(_) => {
            let _ = std::fs::remove_file(path);
        }
        Err(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let r = std::env::temp_dir().join(format!("nabla-out-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&r);
        std::fs::create_dir_all(&r).unwrap();
        r
    }

    fn listing(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> =
            std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_until_commit_and_failures_leave_nothing() {
        let root = root("basic");
        let dir = root.join("run");
        {
            let mut o = Outputs::new(&dir).unwrap();
            o.write("a.txt", b"x").unwrap();
            assert!(!dir.exists());
            // dropped without commit: a failed run
        }
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "staging folder left behind");
        let mut o = Outputs::new(&dir).unwrap();
        o.write("a.txt", b"y").unwrap();
        let written = o.commit().unwrap();
        assert_eq!(std::fs::read(&written[0]).unwrap(), b"y");
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 1);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn an_earlier_run_is_replaced_whole() {
        let root = root("replace");
        let dir = root.join("run");
        let mut o = Outputs::new(&dir).unwrap();
        o.write("metrics.json", b"old").unwrap();
        o.write("old_figure.png", b"old").unwrap();
        o.commit().unwrap();
        let mut o = Outputs::new(&dir).unwrap();
        o.write("metrics.json", b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(listing(&dir), ["metrics.json"], "a file of the earlier run survived");
        assert_eq!(std::fs::read(dir.join("metrics.json")).unwrap(), b"new");
        assert_eq!(listing(&root), ["run"], "staging or old folders left behind");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_failed_swap_puts_the_earlier_run_back() {
        let root = root("rollback");
        let (staging, dir, aside) = (root.join(".run.partial-1"), root.join("run"), root.join(".run.old-1"));
        std::fs::create_dir_all(&staging).unwrap();
        std::fs::write(staging.join("metrics.json"), b"new").unwrap();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("metrics.json"), b"old").unwrap();
        std::fs::write(dir.join("report.md"), b"old").unwrap();
        // The second rename (staging into place) fails.
        let calls = std::cell::Cell::new(0);
        let flaky = |from: &Path, to: &Path| {
            calls.set(calls.get() + 1);
            if calls.get() == 2 {
                Err(std::io::Error::other("disk on fire"))
            } else {
                std::fs::rename(from, to)
            }
        };
        let e = swap_in(&staging, &dir, &aside, flaky).unwrap_err();
        assert!(e.to_string().contains("cannot move the results into place: disk on fire"), "{e}");
        assert_eq!(listing(&dir), ["metrics.json", "report.md"]);
        assert_eq!(std::fs::read(dir.join("metrics.json")).unwrap(), b"old");
        assert!(!aside.exists());
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_swap_killed_halfway_is_undone_by_the_next_run() {
        let root = root("killed");
        let dir = root.join("run");
        // pid 4294967295 never runs: a killed run's folders.
        let aside = root.join(".run.old-4294967295");
        std::fs::create_dir_all(&aside).unwrap();
        std::fs::write(aside.join("metrics.json"), b"old").unwrap();
        std::fs::create_dir_all(root.join(".run.partial-4294967295")).unwrap();
        let o = Outputs::new(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("metrics.json")).unwrap(), b"old", "the earlier results were not put back");
        drop(o);
        assert_eq!(listing(&root), ["run"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn folders_that_are_not_ours_are_refused() {
        let root = root("refuse");
        let msg = |dir: &Path| Outputs::new(dir).err().expect("refused").to_string();
        for bad in ["", ".", "..", "/", "a/.."] {
            assert!(msg(Path::new(bad)).contains("must end in a folder name"), "{bad:?}");
        }
        std::fs::write(root.join("file"), b"x").unwrap();
        assert!(msg(&root.join("file")).contains("exists and is not a folder"));
        std::fs::create_dir_all(root.join("elsewhere")).unwrap();
        std::os::unix::fs::symlink(root.join("elsewhere"), root.join("link")).unwrap();
        assert!(msg(&root.join("link")).contains("symbolic link"));
        std::fs::create_dir_all(root.join("home/docs")).unwrap();
        std::fs::write(root.join("home/metrics.json"), b"{}").unwrap();
        assert!(msg(&root.join("home")).contains("holds docs, which is not a regular file"));
        std::fs::create_dir_all(root.join("notes")).unwrap();
        std::fs::write(root.join("notes/todo.txt"), b"x").unwrap();
        assert!(msg(&root.join("notes")).contains("holds no metrics.json"));
        assert_eq!(listing(&root), ["elsewhere", "file", "home", "link", "notes"], "something was written");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn writes_stay_inside_and_never_repeat_a_name() {
        let root = root("write");
        let mut o = Outputs::new(&root.join("run")).unwrap();
        assert!(o.write("../escape", b"x").unwrap_err().to_string().contains("plain file name"));
        o.write("weights.png", b"x").unwrap();
        let e = o.write("Weights.PNG", b"y").unwrap_err().to_string();
        assert!(e.contains("written twice in one run"), "{e}");
        // A symlink planted in the staging folder is not written through.
        std::fs::write(root.join("target"), b"keep").unwrap();
        std::os::unix::fs::symlink(root.join("target"), o.staging.join("planted.png")).unwrap();
        assert!(o.write("planted.png", b"evil").is_err());
        assert_eq!(std::fs::read(root.join("target")).unwrap(), b"keep");
        drop(o);
        assert!(!root.join("escape").exists());
        std::fs::remove_dir_all(&root).unwrap();
    }
}
