//! What the command-line tests share: running the `nabla` binary from the
//! crate's root, a fresh scratch folder per test, and output as text.
#![allow(dead_code)] // each test file uses its own part

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `nabla ARGS...`, run from the crate's root, waited for.
pub fn nabla(args: &[&str]) -> Output {
    command(args).output().expect("the nabla binary runs")
}

/// The `nabla ARGS...` command, not started (to pipe, spawn or kill it).
pub fn command(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nabla"));
    c.args(args).current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// `nabla FILE --quiet --out OUT EXTRA...`: a pipeline run, not started.
pub fn run(file: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = command(&[]);
    c.arg(file).args(["--quiet", "--out", out.to_str().unwrap()]).args(extra);
    c
}

/// An empty scratch folder for the test `name` of the suite `suite`, unique
/// to this process (tests of one binary run in parallel, suites too).
pub fn temp(suite: &str, name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("nabla-{suite}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Standard output and standard error as text.
pub fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Standard error as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}
