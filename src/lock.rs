//! One process at a time per output: an advisory `flock` on a lock file
//! beside what it writes (`.<name>.lock`), held from before the output is
//! checked until its results are in place (or thrown away). A second run
//! into the same output fails at once, naming the holder's pid, or waits for
//! it when asked (`--wait`).
//!
//! The lock file is removed when the lock is let go, so nothing is left
//! beside the folder. Removing a lock file is racy unless the taker checks,
//! once it holds the lock, that the path still names the file it locked; a
//! file removed (or replaced) in between is let go and opened again.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};

/// A lock that could not be taken: the file or output, and why.
#[derive(Debug, thiserror::Error)]
#[error("{}: {message}", path.display())]
pub struct LockError {
    /// The lock file, or the output it guards.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

fn error(path: &Path, message: impl Into<String>) -> LockError {
    LockError { path: path.to_path_buf(), message: message.into() }
}

/// A held lock; let go when dropped.
#[derive(Debug)]
pub struct Lock {
    path: PathBuf,
    file: std::fs::File,
}

/// Whether to wait for another process that holds the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// Fail at once, naming the holder.
    No,
    /// Block until the holder lets go.
    Yes,
}

impl Lock {
    /// Take the lock `path` for the output `dir` (named in messages).
    pub fn take(path: &Path, dir: &Path, wait: Wait) -> Result<Lock, LockError> {
        let mut told = false;
        loop {
            // Never through a planted symlink; non-blocking, so a FIFO put
            // here cannot hang the open.
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o644)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
                .open(path)
                .map_err(|e| error(path, format!("cannot open the lock file of {}: {e}", dir.display())))?;
            let meta = file.metadata().map_err(|e| error(path, format!("cannot look at the lock file: {e}")))?;
            if !meta.is_file() {
                return Err(error(path, "the lock file is not a regular file; remove it"));
            }
            // Ours holds a pid or nothing, under one name: anything else is a
            // user's file that happens to sit here, never to be rewritten.
            if meta.nlink() > 1 || meta.len() > 32 || (meta.len() > 0 && pid_in(&file).is_none()) {
                return Err(error(
                    path,
                    "is not a lock file nabla wrote (it holds more than a pid, or has other names); remove it",
                ));
            }
            match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let who = holder(&file);
                    if wait == Wait::No {
                        return Err(error(
                            dir,
                            format!(
                                "another nabla ({who}) is writing this output; wait for it to finish, or pass \
                                 --wait"
                            ),
                        ));
                    }
                    if !told {
                        crate::say!("waiting for another nabla ({who}) writing {}", dir.display());
                        told = true;
                    }
                    flock(&file, libc::LOCK_EX).map_err(|e| error(path, format!("cannot lock: {e}")))?;
                }
                Err(e) => return Err(error(path, format!("cannot lock: {e}"))),
            }
            // The holder before us may have removed the file we locked.
            let same = std::fs::symlink_metadata(path).is_ok_and(|m| m.dev() == meta.dev() && m.ino() == meta.ino());
            if !same {
                continue;
            }
            let mut lock = Lock { path: path.to_path_buf(), file };
            let pid = format!("{}\n", std::process::id());
            let _ = lock.file.set_len(0).and_then(|()| lock.file.write_all(pid.as_bytes()));
            return Ok(lock);
        }
    }
}

/// `flock(2)` with `how`, retried when a signal interrupts it.
fn flock(file: &std::fs::File, how: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: flock on a descriptor that `file` keeps open.
        if unsafe { libc::flock(file.as_raw_fd(), how) } == 0 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// The pid the holder wrote in the lock file, read from its start.
fn pid_in(file: &std::fs::File) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    let mut bytes = [0u8; 32];
    let n = file.read_at(&mut bytes, 0).ok()?;
    std::str::from_utf8(&bytes[..n]).ok()?.trim().parse().ok()
}

/// "pid 1234", as the holder wrote it in the lock file.
fn holder(file: &std::fs::File) -> String {
    match pid_in(file) {
        Some(pid) => format!("pid {pid}"),
        None => "pid unknown".into(),
    }
}

impl Drop for Lock {
    /// Remove the file while still holding it, then let go (closing the file).
    fn drop(&mut self) {
        // Only the file this lock holds: the name may have been taken over.
        let ours = self.file.metadata().ok().zip(std::fs::symlink_metadata(&self.path).ok());
        if ours.is_some_and(|(a, b)| a.dev() == b.dev() && a.ino() == b.ino()) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_and_the_file_goes_with_the_lock() {
        let dir = std::env::temp_dir().join(format!("nabla-lock-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".out.lock");
        let first = Lock::take(&path, &dir.join("out"), Wait::No).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts too.
        let e = Lock::take(&path, &dir.join("out"), Wait::No).unwrap_err().to_string();
        assert!(e.contains(&format!("another nabla (pid {}) is writing", std::process::id())), "{e}");
        drop(first);
        assert!(!path.exists(), "the lock file was left behind");
        let again = Lock::take(&path, &dir.join("out"), Wait::No).unwrap();
        drop(again);
        std::os::unix::fs::symlink(dir.join("target"), &path).unwrap();
        assert!(Lock::take(&path, &dir.join("out"), Wait::No).is_err(), "followed a planted symlink");
        assert!(!dir.join("target").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
