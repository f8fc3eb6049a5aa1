//! Where a run writes: every file goes first to a staging folder beside the
//! output folder (`.<name>.partial-<pid>`), and when the whole run has
//! succeeded the staging folder *becomes* the output folder by one rename.
//! An older output folder is first renamed aside (`.<name>.old-<pid>`) and
//! renamed back if the swap fails, so the folder holds the previous complete
//! results or the new ones, never a mix. A run killed between the two renames
//! leaves the old folder aside; the next run puts it back before it starts.
//!
//! The output folder is replaced whole, so it must be ours to replace
//! (`owner.rs`: a marker names the tool and kind of output that wrote it),
//! and it must not be, hold or lie inside anything the run reads (the
//! pipeline file, the data, the weights, the run folder being evaluated).
//! Both are checked before any work starts, and again, under a lock that
//! keeps other runs out of the folder (`lock.rs`), when the results are
//! about to move in.

mod owner;

pub use crate::lock::Wait;
pub use owner::{Kind, MARKER};

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

/// An output folder, resolved before the run: where it is, what kind of
/// output goes in, the names a run of that kind writes (to recognise folders
/// from before the marker) and the paths the run reads.
#[derive(Clone, Debug)]
pub struct Target {
    dir: PathBuf,
    parent: PathBuf,
    name: String,
    kind: Kind,
    writes: Vec<String>,
    reads: Vec<(String, PathBuf)>,
}

impl Target {
    /// The folder `dir` for output of `kind`: it must end in a folder name
    /// of its own (not empty, `.`, `..` or `/`); a trailing `/.` or a `./`
    /// is dropped, so the folder checked is the folder written.
    pub fn new(dir: &Path, kind: Kind) -> Result<Target, OutputError> {
        let (parent, name) = split(dir)?;
        let dir =
            if parent == Path::new(".") && !dir.starts_with(".") { PathBuf::from(&name) } else { parent.join(&name) };
        Ok(Target { dir, parent, name, kind, writes: Vec::new(), reads: Vec::new() })
    }

    /// Names a run of this kind writes (besides `metrics.json`).
    pub fn writes(mut self, names: impl IntoIterator<Item = String>) -> Target {
        self.writes.extend(names);
        self
    }

    /// A path the run reads, `what` it is to the run ("data.root").
    pub fn reads(mut self, what: impl Into<String>, path: &Path) -> Target {
        self.reads.push((what.into(), path.to_path_buf()));
        self
    }

    /// The folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Refuse the folder before the run, changing nothing (see the module doc).
    pub fn check(&self) -> Result<(), OutputError> {
        self.check_inputs()?;
        owner::check(&self.dir, self.kind, &self.legacy())
    }

    fn legacy(&self) -> Vec<String> {
        let mut names = self.writes.clone();
        names.push("metrics.json".into());
        names
    }

    /// The folder may not be, hold or lie inside a path the run reads.
    fn check_inputs(&self) -> Result<(), OutputError> {
        let out = resolved(&self.dir);
        for (what, input) in &self.reads {
            let path = resolved(input);
            let why = if path == out {
                format!("is {what} ({}), which this run reads", input.display())
            } else if path.starts_with(&out) {
                format!("holds {what} ({}), which this run reads", input.display())
            } else if out.starts_with(&path) {
                format!("lies inside {what} ({}), which this run reads", input.display())
            } else {
                continue;
            };
            return Err(error(
                &self.dir,
                format!("{why}; the run replaces its output folder whole, so choose another one"),
            ));
        }
        Ok(())
    }
}

/// `path` made absolute, through the real folders it names as far as they
/// exist (symlinks resolved, so `..` climbs out of a link's target as the
/// system would), the rest taken as written.
fn resolved(path: &Path) -> PathBuf {
    let mut out = if path.is_absolute() {
        PathBuf::from("/")
    } else {
        std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
    };
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => {
                out.push(n);
                // Real so far: each step resolves a link it lands on.
                if let Ok(real) = out.canonicalize() {
                    out = real;
                }
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// Files of one run, staged until [`Outputs::commit`].
pub struct Outputs {
    dir: PathBuf,
    parent: PathBuf,
    name: String,
    kind: Kind,
    /// What an unmarked earlier run's folder may hold.
    legacy: Vec<String>,
    staging: PathBuf,
    files: Vec<String>,
    /// Check names but write nothing (the ranks of an MPI job but rank 0).
    discard: bool,
    /// Folders made to hold the output folder, removed again if the run fails.
    created: Vec<PathBuf>,
    /// Folders to remove once the results are in place.
    remove_after: Vec<PathBuf>,
    /// Held until the results are in place or thrown away.
    lock: Option<crate::lock::Lock>,
}

impl Outputs {
    /// Prepare to write into `target` (replaced on commit): take its lock,
    /// check it again, and make the staging folder beside it.
    pub fn new(target: &Target, wait: Wait) -> Result<Outputs, OutputError> {
        target.check_inputs()?;
        let (parent, name) = (&target.parent, &target.name);
        // Nothing to create if the folder would be refused anyway.
        owner::check(&target.dir, target.kind, &target.legacy())?;
        let created = missing_folders(parent);
        std::fs::create_dir_all(parent)
            .map_err(|e| error(parent, format!("cannot create the folder of the output folder: {e}")))?;
        let lock = crate::lock::Lock::take(&parent.join(format!(".{name}.lock")), &target.dir, wait)
            .map_err(|e| OutputError { path: e.path, message: e.message })?;
        recover_abandoned(parent, name, &target.dir);
        // Another run may have finished while this one waited.
        owner::check(&target.dir, target.kind, &target.legacy())?;
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        // Whatever is there (a leftover, or a planted symlink) is not ours.
        remove_entry(&staging);
        std::fs::create_dir(&staging)
            .map_err(|e| error(&staging, format!("cannot create the staging folder for the results: {e}")))?;
        Ok(Outputs {
            dir: target.dir.clone(),
            parent: parent.clone(),
            name: name.clone(),
            kind: target.kind,
            legacy: target.legacy(),
            staging,
            files: Vec::new(),
            discard: false,
            created,
            remove_after: Vec::new(),
            lock: Some(lock),
        })
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
            kind: Kind::Run,
            legacy: Vec::new(),
            staging: nowhere,
            files: Vec::new(),
            discard: true,
            created: Vec::new(),
            remove_after: Vec::new(),
            lock: None,
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
        create_new(&path, bytes)?;
        self.files.push(name.to_string());
        Ok(())
    }

    /// Names staged so far, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Put the staged folder in place of the output folder, all at once.
    pub fn commit(mut self) -> Result<Vec<PathBuf>, OutputError> {
        if self.discard {
            return Ok(vec![]);
        }
        create_new(&self.staging.join(MARKER), &owner::marker(self.kind, &self.files))?;
        // The run took a while: look again before replacing anything (under
        // the lock, only a process that ignores it can have changed it).
        owner::check(&self.dir, self.kind, &self.legacy)?;
        // The folder replaced keeps its permissions (a private results folder stays private).
        if let Ok(m) = std::fs::symlink_metadata(&self.dir) {
            std::fs::set_permissions(&self.staging, m.permissions())
                .map_err(|e| error(&self.staging, format!("cannot give the results the folder's permissions: {e}")))?;
        }
        let aside = self.parent.join(format!(".{}.old-{}", self.name, std::process::id()));
        let ours = |old: &Path| owner::check(old, self.kind, &self.legacy);
        swap_in(&self.staging, &self.dir, &aside, |from, to| std::fs::rename(from, to), ours)?;
        self.created.clear();
        for dir in &self.remove_after {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok(self.files.iter().map(|f| self.dir.join(f)).collect())
    }

    /// Remove the folder `dir` (a run's checkpoints) once the results are in
    /// place, before the lock is let go: a run waiting for the folder must
    /// not see its own checkpoints removed.
    pub fn remove_after_commit(&mut self, dir: PathBuf) {
        self.remove_after.push(dir);
    }
}

/// The folders `create_dir_all(dir)` would make, outermost first.
fn missing_folders(dir: &Path) -> Vec<PathBuf> {
    let mut missing: Vec<PathBuf> = dir
        .ancestors()
        .take_while(|d| !d.as_os_str().is_empty() && std::fs::symlink_metadata(d).is_err())
        .map(Path::to_path_buf)
        .collect();
    missing.reverse();
    missing
}

/// Write a new file (never through a symlink or over a file someone put there).
fn create_new(path: &Path, bytes: &[u8]) -> Result<(), OutputError> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(|e| error(path, format!("cannot write: {e}")))?;
    file.write_all(bytes).map_err(|e| error(path, format!("cannot write: {e}")))
}

impl Drop for Outputs {
    /// Whatever was not committed is thrown away.
    fn drop(&mut self) {
        if self.discard {
            return;
        }
        let _ = std::fs::remove_dir_all(&self.staging);
        // Let go of the lock (its file goes with it), then the folders made
        // to hold the output folder, if still empty.
        drop(self.lock.take());
        for dir in self.created.iter().rev() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// The parent folder and the last component of `dir`, which must be a
/// folder name (not empty, `.`, `..` or `/`: those would scatter the results
/// into an existing folder, or cannot be replaced).
fn split(dir: &Path) -> Result<(PathBuf, String), OutputError> {
    // `components` drops `.` inside and at the end, so `a/b/.` is `a/b`.
    let parts: Vec<Component> = dir.components().filter(|c| *c != Component::CurDir).collect();
    let name = match parts.last() {
        Some(Component::Normal(n)) => n.to_string_lossy().into_owned(),
        _ => {
            return Err(error(
                dir,
                "the output folder must end in a folder name (not empty, '.', '..' or '/'): its files go into a \
                 folder of their own",
            ))
        }
    };
    if name.starts_with('.') {
        return Err(error(
            dir,
            format!(
                "the output folder's name {} starts with '.', as the staging, lock and checkpoint files beside an \
                 output folder do; choose a name without it",
                crate::terminal::quote(&name)
            ),
        ));
    }
    if name.chars().any(char::is_control) || name.len() > super::names::MAX_FILE_NAME - 24 {
        return Err(error(
            dir,
            format!(
                "the output folder's name {} must be printable and at most {} bytes",
                crate::terminal::quote(&name),
                super::names::MAX_FILE_NAME - 24
            ),
        ));
    }
    let parent: PathBuf = parts[..parts.len() - 1].iter().collect();
    let parent = if parent.as_os_str().is_empty() { PathBuf::from(".") } else { parent };
    Ok((parent, name))
}

/// Make `staging` the folder `dir`: directly if `dir` is absent, else by
/// renaming `dir` to `aside` first and back again if the second rename fails.
fn swap_in(
    staging: &Path,
    dir: &Path,
    aside: &Path,
    rename: impl Fn(&Path, &Path) -> std::io::Result<()>,
    ours: impl Fn(&Path) -> Result<(), OutputError>,
) -> Result<(), OutputError> {
    let cannot = |e: std::io::Error| error(dir, format!("cannot move the results into place: {e}"));
    if std::fs::symlink_metadata(dir).is_err() {
        return rename(staging, dir).map_err(cannot);
    }
    remove_entry(aside);
    rename(dir, aside).map_err(cannot)?;
    // A file saved into the folder since the last look goes back with it.
    if let Err(e) = ours(aside) {
        return Err(match rename(aside, dir) {
            Ok(()) => error(dir, format!("changed while the results were moving in: {}", e.message)),
            Err(back) => error(
                dir,
                format!(
                    "changed while the results were moving in, and cannot be put back ({back}): it is in {}",
                    aside.display()
                ),
            ),
        });
    }
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
    // Nothing but the earlier results is removed, even now.
    if let Err(e) = ours(aside) {
        crate::say!("warning: kept the previous results in {} ({}): remove it yourself", aside.display(), e.message);
    } else if let Err(e) = std::fs::remove_dir_all(aside) {
        crate::say!("warning: cannot remove the previous results {}: {e}", aside.display());
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

    /// The outputs of a pipeline run into `dir` that writes `a.txt` and figures.
    fn run_into(dir: &Path) -> Result<Outputs, OutputError> {
        let target = Target::new(dir, Kind::Run)?.writes(["a.txt", "old_figure.png"].map(String::from));
        Outputs::new(&target, Wait::No)
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
            let mut o = run_into(&dir).unwrap();
            o.write("a.txt", b"x").unwrap();
            assert!(!dir.exists());
            // dropped without commit: a failed run
        }
        assert!(!dir.exists());
        assert_eq!(std::fs::read_dir(&root).unwrap().count(), 0, "staging folder left behind");
        let mut o = run_into(&dir).unwrap();
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
        let mut o = run_into(&dir).unwrap();
        o.write("metrics.json", b"old").unwrap();
        o.write("old_figure.png", b"old").unwrap();
        o.commit().unwrap();
        let mut o = run_into(&dir).unwrap();
        o.write("metrics.json", b"new").unwrap();
        o.commit().unwrap();
        assert_eq!(listing(&dir), [MARKER, "metrics.json"], "a file of the earlier run survived");
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
        let e = swap_in(&staging, &dir, &aside, flaky, |_| Ok(())).unwrap_err();
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
        std::fs::write(aside.join(MARKER), owner::marker(Kind::Run, &["metrics.json".into()])).unwrap();
        std::fs::create_dir_all(root.join(".run.partial-4294967295")).unwrap();
        let o = run_into(&dir).unwrap();
        assert_eq!(std::fs::read(dir.join("metrics.json")).unwrap(), b"old", "the earlier results were not put back");
        drop(o);
        assert_eq!(listing(&root), ["run"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn folders_that_are_not_ours_are_refused() {
        let root = root("refuse");
        let msg = |dir: &Path| run_into(dir).err().expect("refused").to_string();
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
        assert!(msg(&root.join("home")).contains("holds 'docs', which is not a regular file"));
        std::fs::create_dir_all(root.join("notes")).unwrap();
        std::fs::write(root.join("notes/a.txt"), b"x").unwrap();
        assert!(msg(&root.join("notes")).contains("holds no metrics.json"));
        std::fs::write(root.join("notes/todo.txt"), b"x").unwrap();
        std::fs::write(root.join("notes/metrics.json"), b"{}").unwrap();
        let m = msg(&root.join("notes"));
        assert!(m.contains("holds 'todo.txt', which a pipeline run does not write"), "{m}");
        assert_eq!(listing(&root), ["elsewhere", "file", "home", "link", "notes"], "something was written");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn writes_stay_inside_and_never_repeat_a_name() {
        let root = root("write");
        let mut o = run_into(&root.join("run")).unwrap();
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

#[cfg(test)]
mod ownership {
    use super::*;

    fn root(name: &str) -> PathBuf {
        let r = std::env::temp_dir().join(format!("nabla-own-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&r);
        std::fs::create_dir_all(&r).unwrap();
        r
    }

    fn commit(target: &Target, files: &[&str]) -> Result<(), OutputError> {
        let mut o = Outputs::new(target, Wait::No)?;
        for f in files {
            o.write(f, f.as_bytes())?;
        }
        o.commit().map(drop)
    }

    #[test]
    fn a_marked_folder_is_replaced_only_whole_and_only_by_its_kind() {
        let root = root("marked");
        let dir = root.join("run");
        let run = Target::new(&dir, Kind::Run).unwrap();
        commit(&run, &["metrics.json", "curve.png"]).unwrap();
        // The marker names what the run wrote.
        let marker = std::fs::read_to_string(dir.join(MARKER)).unwrap();
        assert!(marker.contains("\"tool\": \"nabla\"") && marker.contains("\"kind\": \"run\""), "{marker}");
        assert!(marker.contains("curve.png"), "{marker}");
        commit(&run, &["metrics.json"]).unwrap();
        // An eval may not replace a run's folder, nor a run an eval's.
        let eval = Target::new(&dir, Kind::Eval).unwrap();
        let e = eval.check().unwrap_err().to_string();
        assert!(e.contains("holds the output of a pipeline run, not of nabla eval"), "{e}");
        // A file the user put beside the results.
        std::fs::write(dir.join("NOTES.md"), b"mine").unwrap();
        let e = commit(&run, &["metrics.json"]).unwrap_err().to_string();
        assert!(e.contains("holds 'NOTES.md', which the earlier run did not write"), "{e}");
        assert_eq!(std::fs::read(dir.join("NOTES.md")).unwrap(), b"mine");
        // A marker some other tool wrote.
        std::fs::remove_file(dir.join("NOTES.md")).unwrap();
        std::fs::write(dir.join(MARKER), b"{\"tool\":\"x\",\"kind\":\"run\",\"id\":\"1\",\"files\":[]}").unwrap();
        assert!(run.check().unwrap_err().to_string().contains("which nabla did not write"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_folder_that_holds_or_lies_in_an_input_is_refused() {
        let root = root("inputs");
        std::fs::create_dir_all(root.join("data/mnist")).unwrap();
        std::fs::write(root.join("exp.toml"), b"x").unwrap();
        let reads = |dir: &Path| {
            Target::new(dir, Kind::Run)
                .unwrap()
                .reads("the pipeline file", &root.join("exp.toml"))
                .reads("data.root", &root.join("data/mnist"))
        };
        let e = reads(&root).check().unwrap_err().to_string();
        assert!(e.contains("holds the pipeline file"), "{e}");
        let e = reads(&root.join("data/mnist")).check().unwrap_err().to_string();
        assert!(e.contains("is data.root"), "{e}");
        let e = reads(&root.join("data/mnist/out")).check().unwrap_err().to_string();
        assert!(e.contains("lies inside data.root"), "{e}");
        // Through a symlink, and with `..` on the way.
        std::os::unix::fs::symlink(root.join("data"), root.join("alias")).unwrap();
        let e = reads(&root.join("alias/mnist")).check().unwrap_err().to_string();
        assert!(e.contains("is data.root"), "{e}");
        let e = reads(&root.join("new/../data")).check().unwrap_err().to_string();
        assert!(e.contains("holds data.root"), "{e}");
        reads(&root.join("out")).check().unwrap();
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn a_trailing_dot_names_the_folder_itself() {
        let root = root("dot");
        let t = Target::new(&root.join("run").join("."), Kind::Run).unwrap();
        assert_eq!(t.dir(), root.join("run"));
        commit(&t, &["metrics.json"]).unwrap();
        assert!(root.join("run/metrics.json").is_file());
        assert_eq!(Target::new(Path::new("./run/."), Kind::Run).unwrap().dir(), Path::new("./run"));
        assert_eq!(Target::new(Path::new("run"), Kind::Run).unwrap().dir(), Path::new("run"));
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn two_runs_into_one_folder_do_not_mix() {
        let root = root("lock");
        let t = Target::new(&root.join("run"), Kind::Run).unwrap();
        let first = Outputs::new(&t, Wait::No).unwrap();
        let e = Outputs::new(&t, Wait::No).err().expect("a second run is refused").to_string();
        assert!(e.contains("another nabla (pid") && e.contains("is writing this output;"), "{e}");
        first.commit().unwrap();
        commit(&t, &["metrics.json"]).unwrap();
        assert_eq!(
            std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().file_name()).collect::<Vec<_>>(),
            ["run"],
            "a lock or staging file was left beside the folder"
        );
        std::fs::remove_dir_all(&root).unwrap();
    }
}
