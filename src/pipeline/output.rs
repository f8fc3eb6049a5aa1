//! Where a run writes: every file goes first to a staging folder beside the
//! output folder and is renamed into place only when the whole run has
//! succeeded, so a failed or interrupted run leaves the previous complete
//! results (or nothing), never a mix.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    pub message: String,
}

/// Files of one run, staged until [`Outputs::commit`].
pub struct Outputs {
    dir: PathBuf,
    staging: PathBuf,
    files: Vec<String>,
}

impl Outputs {
    /// Prepare to write into `dir` (created on commit). Fails early if the
    /// parent folder cannot be written.
    pub fn new(dir: &Path) -> Result<Outputs, OutputError> {
        let parent = match dir.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "out".into());
        remove_abandoned(&parent, &format!(".{name}.partial-"));
        let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(|e| OutputError {
            path: staging.clone(),
            message: format!("cannot create the output folder: {e}"),
        })?;
        Ok(Outputs { dir: dir.to_path_buf(), staging, files: Vec::new() })
    }

    /// The final folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stage `bytes` as `name` (a plain file name).
    pub fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), OutputError> {
        let path = self.staging.join(name);
        std::fs::write(&path, bytes).map_err(|e| OutputError { path, message: format!("cannot write: {e}") })?;
        if !self.files.iter().any(|f| f == name) {
            self.files.push(name.to_string());
        }
        Ok(())
    }

    /// Names staged so far, in order.
    pub fn files(&self) -> &[String] {
        &self.files
    }

    /// Move every staged file into the output folder (each rename is atomic).
    pub fn commit(self) -> Result<Vec<PathBuf>, OutputError> {
        std::fs::create_dir_all(&self.dir).map_err(|e| OutputError {
            path: self.dir.clone(),
            message: format!("cannot create the output folder: {e}"),
        })?;
        let mut written = Vec::new();
        for name in &self.files {
            let to = self.dir.join(name);
            std::fs::rename(self.staging.join(name), &to).map_err(|e| OutputError {
                path: to.clone(),
                message: format!("cannot move the result into place: {e}"),
            })?;
            written.push(to);
        }
        Ok(written)
    }
}

/// Remove staging folders `<prefix><pid>` of runs that were killed (their
/// process is gone). Only where `/proc` tells which processes live.
fn remove_abandoned(parent: &Path, prefix: &str) {
    if !Path::new("/proc/self").exists() {
        return;
    }
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(pid) = name.strip_prefix(prefix).and_then(|p| p.parse::<u32>().ok()) else { continue };
        if !Path::new("/proc").join(pid.to_string()).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

impl Drop for Outputs {
    /// Whatever was not committed is thrown away.
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.staging);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_appears_until_commit_and_failures_leave_nothing() {
        let root = std::env::temp_dir().join(format!("nabla-out-{}", std::process::id()));
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
}
