//! Output folders that are not nabla's to replace, names from files that
//! would become paths, two runs into one folder, `--set` values that carry
//! more than one value, text that would steer the terminal, and parse
//! errors without a place (issue 32, classes 1-3, 5, 8 and 9).
//!
//! Each case runs the real binary and asserts its whole message, that it
//! failed without a panic, and that every file under the case's folder, the
//! user's own files above all, is still there byte for byte, with nothing
//! added beside them.

use super::*;

/// Every path under `dir` with what it holds: a file's bytes, a link's
/// target, or nothing for a folder.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Option<Vec<u8>>)> {
    listing(dir)
        .into_iter()
        .map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let what = if m.file_type().is_symlink() {
                Some(std::fs::read_link(&p).unwrap().into_os_string().into_encoded_bytes())
            } else if m.is_file() {
                Some(std::fs::read(&p).unwrap())
            } else {
                None
            };
            (p, what)
        })
        .collect()
}

/// Run `nabla args` in `cwd`; it must fail with exit code 1 and print
/// exactly `expect` on stderr (`{D}` stands for the case's folder), and leave
/// every file under the case's folder as it was.
fn refused(case: &Case, cwd: &Path, args: &[&str], expect: &str) {
    let before = snapshot(&case.dir);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(args).current_dir(cwd).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    let name = case.name;
    // Usage errors exit with 2, failed runs with 1.
    let code = if expect.starts_with("nabla: ") { 2 } else { 1 };
    assert_eq!(o.status.code(), Some(code), "{name}: exit status {:?}: {err}", o.status);
    let d = case.dir.to_str().unwrap();
    // The progress line a run prints before it starts is not the message.
    let shown: Vec<&str> = err.lines().filter(|l| !l.starts_with("running ")).collect();
    assert_eq!(shown.join("\n").replace(d, "{D}").trim_end(), expect, "{name}: the message");
    assert!(snapshot(&case.dir) == before, "{name}: files under the case's folder changed");
    let _ = std::fs::remove_dir_all(&case.dir);
}

/// Run `nabla args` in `cwd`, which must succeed; returns stderr.
fn succeeds(cwd: &Path, args: &[&str]) -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(args).current_dir(cwd).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "nabla {args:?} failed: {err}");
    err
}

/// A case with MNIST data and the MNIST pipeline (saving its weights) as `in/bad.toml`.
fn mnist_case(name: &'static str) -> Case {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(&MNIST.replace("eval_every = 1", "eval_every = 1\nsave = \"weights.safetensors\""));
    case
}

/// A user's folder: a script, notes, a `metrics.json` of their own.
fn users_folder(case: &Case, rel: &str) -> PathBuf {
    let dir = case.dir.join(rel);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("train.py"), b"print('mine')\n").unwrap();
    std::fs::write(dir.join("NOTES.md"), b"# my notes\n").unwrap();
    std::fs::write(dir.join("metrics.json"), b"{\"mine\": true}\n").unwrap();
    dir
}

const WHOLE: &str = "so it is not the results of an earlier run; the run replaces its output folder whole, so choose \
                     another one or remove it";

#[test]
fn a_folder_that_is_not_ours_is_never_replaced() {
    // The example of the issue: the pipeline file sits in the folder named by --out.
    let case = mnist_case("out-holds-the-pipeline");
    let dir = users_folder(&case, "in");
    let (file, out) = (case.input("bad.toml"), dir.to_str().unwrap().to_string());
    refused(
        &case,
        &dir,
        &[&file, "--quiet", "--out", &out],
        "error: {D}/in/bad.toml: output folder {D}/in: holds the pipeline file ({D}/in/bad.toml), which this run \
         reads; the run replaces its output folder whole, so choose another one",
    );

    // Without the pipeline file in it: the user's files are in the way, named in order.
    let case = mnist_case("out-holds-user-files");
    users_folder(&case, "mine");
    let (file, out) = (case.input("bad.toml"), case.dir.join("mine").to_str().unwrap().to_string());
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", &out],
        &format!(
            "error: {{D}}/in/bad.toml: output folder {{D}}/mine: holds 'NOTES.md', which a pipeline run does not \
             write, {WHOLE}"
        ),
    );

    // One foreign file beside what a run writes.
    let case = mnist_case("out-one-foreign-file");
    let dir = case.dir.join("mine");
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in [("metrics.json", &b"{}"[..]), ("report.md", b"# r"), ("todo.txt", b"buy milk")] {
        std::fs::write(dir.join(name), bytes).unwrap();
    }
    let (file, out) = (case.input("bad.toml"), dir.to_str().unwrap().to_string());
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", &out],
        &format!(
            "error: {{D}}/in/bad.toml: output folder {{D}}/mine: holds 'todo.txt', which a pipeline run does not \
             write, {WHOLE}"
        ),
    );

    // `nabla check` refuses it the same way, before anything runs.
    let case = mnist_case("check-out-holds-user-files");
    users_folder(&case, "mine");
    let (file, out) = (case.input("bad.toml"), case.dir.join("mine").to_str().unwrap().to_string());
    let before = snapshot(&case.dir);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(["check", &file, "--out", &out]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("output folder") && err.contains("holds 'NOTES.md'"), "{err}");
    assert!(snapshot(&case.dir) == before);
    let _ = std::fs::remove_dir_all(&case.dir);

    // The default folder, resources/<name>, holding a user's files.
    let case = mnist_case("default-out-holds-user-files");
    let cwd = case.dir.join("cwd");
    users_folder(&case, "cwd/resources/bad");
    let file = case.input("bad.toml");
    refused(
        &case,
        &cwd,
        &[&file, "--quiet"],
        &format!(
            "error: {{D}}/in/bad.toml: output folder resources/bad: holds 'NOTES.md', which a pipeline run does not \
             write, {WHOLE}"
        ),
    );
}

#[test]
fn folders_with_other_contents_are_refused() {
    type Setup = fn(&Path);
    let cases: [(&'static str, Setup, &str); 8] = [
        (
            "subfolder",
            |d| {
                std::fs::write(d.join("metrics.json"), b"{}").unwrap();
                std::fs::create_dir(d.join("data")).unwrap();
                std::fs::write(d.join("data/x"), b"x").unwrap();
            },
            "holds 'data', which is not a regular file",
        ),
        (
            "symlink-entry",
            |d| {
                std::fs::write(d.join("metrics.json"), b"{}").unwrap();
                std::os::unix::fs::symlink("/etc/hostname", d.join("report.md")).unwrap();
            },
            "holds 'report.md', which is not a regular file",
        ),
        (
            "no-metrics",
            |d| std::fs::write(d.join("report.md"), b"# mine").unwrap(),
            "is not empty and holds no metrics.json",
        ),
        (
            "marker-of-eval",
            |d| {
                std::fs::write(d.join(".nabla-output"), br#"{"tool":"nabla","kind":"eval","id":"1","files":[]}"#)
                    .unwrap()
            },
            "holds the output of nabla eval, not of a pipeline run",
        ),
        (
            "marker-of-another-tool",
            |d| std::fs::write(d.join(".nabla-output"), br#"{"tool":"x","kind":"run","id":"1","files":[]}"#).unwrap(),
            "holds '.nabla-output', which nabla did not write",
        ),
        (
            "marker-not-json",
            |d| std::fs::write(d.join(".nabla-output"), b"rm -rf /").unwrap(),
            "holds '.nabla-output', which nabla did not write",
        ),
        (
            "marker-is-a-folder",
            |d| std::fs::create_dir(d.join(".nabla-output")).unwrap(),
            "holds '.nabla-output', which is not a regular file",
        ),
        (
            "marker-without-the-file",
            |d| {
                let m = br#"{"tool":"nabla","kind":"run","id":"1","files":["metrics.json"]}"#;
                std::fs::write(d.join(".nabla-output"), m).unwrap();
                std::fs::write(d.join("metrics.json"), b"{}").unwrap();
                std::fs::write(d.join("thesis.tex"), b"\\begin").unwrap();
            },
            "holds 'thesis.tex', which the earlier run did not write",
        ),
    ];
    for (name, setup, why) in cases {
        let case = mnist_case(name);
        let dir = case.dir.join("out");
        std::fs::create_dir_all(&dir).unwrap();
        setup(&dir);
        let file = case.input("bad.toml");
        let tail = if why.starts_with("holds the output") {
            "; the run replaces its output folder whole, so choose another one or remove it".to_string()
        } else if why.starts_with("is not empty") {
            format!(", {}", WHOLE.trim_start_matches("so it is not the results of an earlier run; "))
        } else {
            format!(", {WHOLE}")
        };
        let expect = if why.starts_with("is not empty") {
            format!("error: {{D}}/in/bad.toml: output folder {{D}}/out: {why}, so it is not the results of an earlier run; the run replaces its output folder whole, so choose another one or remove it")
        } else {
            format!("error: {{D}}/in/bad.toml: output folder {{D}}/out: {why}{tail}")
        };
        refused(&case, &case.dir, &[&file, "--quiet", "--out", case.dir.join("out").to_str().unwrap()], &expect);
    }
}

#[test]
fn a_folder_that_holds_or_lies_in_an_input_is_refused() {
    let reads = "which this run reads; the run replaces its output folder whole, so choose another one";
    // The data folder itself, and a folder inside it.
    let case = mnist_case("out-is-the-data");
    let (file, out) = (case.input("bad.toml"), case.input("mnist"));
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", &out],
        &format!("error: {{D}}/in/bad.toml: output folder {{D}}/in/mnist: is data.root ({{D}}/in//mnist), {reads}"),
    );
    let case = mnist_case("out-in-the-data");
    let (file, out) = (case.input("bad.toml"), case.input("mnist/run"));
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", &out],
        &format!("error: {{D}}/in/bad.toml: output folder {{D}}/in/mnist/run: lies inside data.root ({{D}}/in//mnist), {reads}"),
    );
    // Through a symlink to the data folder.
    let case = mnist_case("out-is-the-data-by-a-link");
    std::os::unix::fs::symlink(case.dir.join("in/mnist"), case.dir.join("alias")).unwrap();
    let (file, out) = (case.input("bad.toml"), case.dir.join("alias/run").to_str().unwrap().to_string());
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", &out],
        &format!(
            "error: {{D}}/in/bad.toml: output folder {{D}}/alias/run: lies inside data.root ({{D}}/in//mnist), {reads}"
        ),
    );
    // The weights to start from, inside the output folder.
    let case = mnist_case("out-holds-model-load");
    std::fs::create_dir_all(case.dir.join("out")).unwrap();
    std::fs::write(case.dir.join("out/start.safetensors"), b"weights").unwrap();
    case.pipeline(&MNIST.replace("kind = \"linear\"", "kind = \"linear\"\nload = \"{IN}/../out/start.safetensors\""));
    let file = case.input("bad.toml");
    refused(
        &case,
        &case.dir,
        &[&file, "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
        &format!("error: {{D}}/in/bad.toml: output folder {{D}}/out: holds model.load ({{D}}/in//../out/start.safetensors), {reads}"),
    );
}

/// A run folder of the MNIST template (with its weights), at `case/run`.
fn trained(case: &Case) -> PathBuf {
    let run = case.dir.join("run");
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()]);
    run
}

#[test]
fn eval_never_replaces_its_run_or_a_foreign_folder() {
    let reads = "which this run reads; the run replaces its output folder whole, so choose another one";
    for (name, out, why) in [
        ("eval-out-is-the-run", "/run", "is the run folder ({D}/run)"),
        ("eval-out-in-the-run", "/run/eval", "lies inside the run folder ({D}/run)"),
        ("eval-out-holds-the-run", "", "holds the run folder ({D}/run)"),
    ] {
        let case = mnist_case(name);
        let run = trained(&case);
        let out_dir = format!("{}{out}", case.dir.display());
        refused(
            &case,
            &case.dir,
            &["eval", run.to_str().unwrap(), "--out", &out_dir],
            &format!("error: {{D}}{out}: {why}, {reads}"),
        );
    }
    // A folder with a foreign metrics.json.
    let case = mnist_case("eval-out-foreign-metrics");
    let run = trained(&case);
    users_folder(&case, "mine");
    refused(
        &case,
        &case.dir,
        &["eval", run.to_str().unwrap(), "--out", case.dir.join("mine").to_str().unwrap()],
        &format!("error: {{D}}/mine: holds 'NOTES.md', which nabla eval does not write, {WHOLE}"),
    );
    // Another run's output.
    let case = mnist_case("eval-out-is-another-run");
    let run = trained(&case);
    let other = case.dir.join("other");
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", other.to_str().unwrap()]);
    refused(
        &case,
        &case.dir,
        &["eval", run.to_str().unwrap(), "--out", other.to_str().unwrap()],
        "error: {D}/other: holds the output of a pipeline run, not of nabla eval; the run replaces its output folder \
         whole, so choose another one or remove it",
    );
    // And a run never replaces an eval's folder.
    let case = mnist_case("run-out-is-an-eval");
    let run = trained(&case);
    let ev = case.dir.join("ev");
    succeeds(&case.dir, &["eval", run.to_str().unwrap(), "--out", ev.to_str().unwrap()]);
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", ev.to_str().unwrap()],
        "error: {D}/in/bad.toml: output folder {D}/ev: holds the output of nabla eval, not of a pipeline run; the \
         run replaces its output folder whole, so choose another one or remove it",
    );
}

#[test]
fn ours_is_replaced_and_folders_from_before_the_marker_are_recognised() {
    let case = mnist_case("replace-ours");
    let run = trained(&case);
    // Twice into the same folder: the marker makes it ours.
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()]);
    // A folder as today's version wrote it (no marker): exactly the files this run writes.
    std::fs::remove_file(run.join(".nabla-output")).unwrap();
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()]);
    assert!(run.join(".nabla-output").is_file());
    // `--out DIR/.` is DIR, checked and written as such.
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", &format!("{}/.", run.display())]);
    // eval twice into its own folder.
    let ev = case.dir.join("ev");
    succeeds(&case.dir, &["eval", run.to_str().unwrap(), "--out", ev.to_str().unwrap()]);
    succeeds(&case.dir, &["eval", run.to_str().unwrap(), "--out", ev.to_str().unwrap()]);
    let mut left: Vec<String> =
        std::fs::read_dir(&case.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    left.sort();
    assert_eq!(left, ["ev", "in", "run"], "lock, staging or old folders left beside the outputs");
    let _ = std::fs::remove_dir_all(&case.dir);
}

/// A run folder whose `model.json` says `name`.
fn run_named(name: &'static str, value: &str) -> (Case, PathBuf) {
    let case = mnist_case(name);
    let run = trained(&case);
    let path = run.join("model.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    m["name"] = serde_json::Value::String(value.to_string());
    std::fs::write(&path, serde_json::to_vec(&m).unwrap()).unwrap();
    (case, run)
}

#[test]
fn a_name_from_a_run_folder_never_becomes_a_path() {
    let rule = "must be non-empty letters, digits, '-', '_' or '.', not start with '.', and be at most 100 \
                characters: it names the output folder resources/<name>";
    let long = "n".repeat(30_000_000);
    for (label, name, shown) in [
        ("eval-name-climbs", "../../x", "'../../x'".to_string()),
        ("eval-name-absolute", "/tmp/nabla-x", "'/tmp/nabla-x'".to_string()),
        ("eval-name-dot", ".", "'.'".to_string()),
        ("eval-name-empty", "", "''".to_string()),
        ("eval-name-escape", "a\u{1b}]0;owned\u{7}", "'a\\u{1b}]0;owned\\u{7}'".to_string()),
        ("eval-name-huge", long.as_str(), format!("'{}...' (30000000 bytes)", "n".repeat(80))),
    ] {
        let (case, run) = run_named(label, name);
        let cwd = case.dir.join("cwd");
        std::fs::create_dir_all(&cwd).unwrap();
        refused(
            &case,
            &cwd,
            &["eval", run.to_str().unwrap()],
            &format!("error: {{D}}/run/model.json: name: {shown} {rule}"),
        );
    }
}

#[test]
fn out_names_that_are_not_one_folder() {
    let must = "the output folder must end in a folder name (not empty, '.', '..' or '/'): its files go into a \
                folder of their own";
    let case = mnist_case("out-dotdot");
    let file = case.input("bad.toml");
    refused(&case, &case.dir, &[&file, "--out", "a/.."], &format!("nabla: --out a/..: {must}\n\n{}", help()));
    let case = mnist_case("out-control");
    let file = case.input("bad.toml");
    refused(
        &case,
        &case.dir,
        &[&file, "--out", "x\u{1b}[2J"],
        &format!(
            "nabla: --out x\\u{{1b}}[2J: the output folder's name 'x\\u{{1b}}[2J' must be printable and at most 231 bytes\n\n{}",
            help()
        ),
    );
    let case = mnist_case("out-too-long");
    let file = case.input("bad.toml");
    let long = "o".repeat(240);
    refused(
        &case,
        &case.dir,
        &[&file, "--out", &long],
        &format!(
            "nabla: --out {long}: the output folder's name '{}...' (240 bytes) must be printable and at most 231 bytes\n\n{}",
            "o".repeat(80),
            help()
        ),
    );
    let case = mnist_case("eval-out-dot");
    let run = trained(&case);
    refused(&case, &case.dir, &["eval", run.to_str().unwrap(), "--out", "."], &format!("error: --out .: {must}"));
}

/// `nabla --help`'s text, which usage errors print after the message.
fn help() -> String {
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).arg("--help").output().unwrap();
    String::from_utf8(o.stdout).unwrap().trim_end().to_string()
}

/// Hold the lock of `dir` as another nabla would (`flock` on `.<name>.lock`),
/// with `pid` written in it.
fn hold_lock(dir: &Path, pid: u32) -> std::fs::File {
    use std::os::unix::io::AsRawFd;
    let path = dir.parent().unwrap().join(format!(".{}.lock", dir.file_name().unwrap().to_str().unwrap()));
    std::fs::write(&path, format!("{pid}\n")).unwrap();
    let f = std::fs::OpenOptions::new().read(true).write(true).open(&path).unwrap();
    // SAFETY: flock on a descriptor this function owns.
    assert_eq!(unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) }, 0);
    f
}

#[test]
fn a_second_run_into_a_folder_in_use_stops_at_once() {
    let busy = "is writing this output; wait for it to finish, or pass --wait";
    let case = mnist_case("lock-run");
    let out = case.dir.join("out");
    let _held = hold_lock(&out, 4242);
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", out.to_str().unwrap()],
        &format!("error: {{D}}/out: another nabla (pid 4242) {busy}"),
    );
    let case = mnist_case("lock-resume");
    let out = case.dir.join("out");
    let _held = hold_lock(&out, 4243);
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--resume", "--out", out.to_str().unwrap()],
        &format!("error: {{D}}/out: another nabla (pid 4243) {busy}"),
    );
    let case = mnist_case("lock-eval");
    let run = trained(&case);
    let ev = case.dir.join("ev");
    let _held = hold_lock(&ev, 4244);
    refused(
        &case,
        &case.dir,
        &["eval", run.to_str().unwrap(), "--out", ev.to_str().unwrap()],
        &format!("error: {{D}}/ev: another nabla (pid 4244) {busy}"),
    );
    let case = mnist_case("lock-report");
    std::fs::create_dir_all(case.dir.join("res")).unwrap();
    let page = case.dir.join("res/index.html");
    let _held = hold_lock(&page, 4245);
    refused(
        &case,
        &case.dir,
        &["report", case.dir.join("res").to_str().unwrap()],
        &format!("error: {{D}}/res/index.html: another nabla (pid 4245) {busy}"),
    );
    // A lock file that is a planted symlink or a FIFO is not opened through.
    let case = mnist_case("lock-symlink");
    std::os::unix::fs::symlink(case.dir.join("victim"), case.dir.join(".out.lock")).unwrap();
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
        "error: {D}/.out.lock: cannot open the lock file of {D}/out: Too many levels of symbolic links (os error 40)",
    );
    let case = mnist_case("lock-fifo");
    assert!(Command::new("mkfifo").arg(case.dir.join(".out.lock")).status().unwrap().success());
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
        "error: {D}/.out.lock: the lock file is not a regular file; remove it",
    );
}

#[test]
fn runs_into_one_folder_at_once_never_lose_results() {
    let case = mnist_case("lock-many");
    let out = case.dir.join("out");
    let (file, out_s) = (case.input("bad.toml"), out.to_str().unwrap().to_string());
    // Without --wait each run either writes the folder or stops at once;
    // with it, every run writes it in turn.
    for wait in [false, true] {
        let children: Vec<_> = (0..6)
            .map(|_| {
                let mut c = Command::new(env!("CARGO_BIN_EXE_nabla"));
                c.args([&file, "--quiet", "--out", &out_s]);
                if wait {
                    c.arg("--wait");
                }
                c.stderr(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap()
            })
            .collect();
        let mut ok = 0;
        for c in children {
            let o = c.wait_with_output().unwrap();
            let err = String::from_utf8_lossy(&o.stderr);
            if o.status.success() {
                ok += 1;
            } else {
                assert!(!wait, "a waiting run failed: {err}");
                assert!(err.contains("is writing this output; wait for it"), "{err}");
            }
        }
        assert!(ok >= 1);
        if wait {
            assert_eq!(ok, 6);
        }
        assert!(out.join("metrics.json").is_file() && out.join(".nabla-output").is_file());
        let mut left: Vec<String> =
            std::fs::read_dir(&case.dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["in", "out"], "lock, staging or old folders left behind");
    }
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn the_report_never_overwrites_a_users_page() {
    for (name, file, why) in [
        (
            "report-users-page",
            "page.html",
            "exists and was not written by nabla report; choose another --out, or remove it",
        ),
        (
            "report-users-notes",
            "REPORT.md",
            "exists and was not written by nabla report; choose another --out, or remove it",
        ),
    ] {
        let case = mnist_case(name);
        let res = case.dir.join("res");
        std::fs::create_dir_all(&res).unwrap();
        std::fs::write(res.join(file), b"<!DOCTYPE html><p>mine</p>").unwrap();
        refused(
            &case,
            &case.dir,
            &["report", res.to_str().unwrap(), "--out", res.join("page.html").to_str().unwrap()],
            &format!("error: {{D}}/res/{file}: {why}"),
        );
    }
    let case = mnist_case("report-page-symlink");
    let res = case.dir.join("res");
    std::fs::create_dir_all(&res).unwrap();
    std::fs::write(case.dir.join("victim"), b"keep").unwrap();
    std::os::unix::fs::symlink(case.dir.join("victim"), res.join("index.html")).unwrap();
    refused(
        &case,
        &case.dir,
        &["report", res.to_str().unwrap()],
        "error: {D}/res/index.html: exists and is not a regular file, so it is not a page nabla report wrote; choose \
         another --out",
    );
    // Its own page, twice.
    let case = mnist_case("report-twice");
    let res = case.dir.join("res");
    std::fs::create_dir_all(&res).unwrap();
    succeeds(&case.dir, &["report", res.to_str().unwrap()]);
    succeeds(&case.dir, &["report", res.to_str().unwrap()]);
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn a_set_value_is_one_value() {
    let more = "there is more after the value (a second key or a table); give one value";
    let comment = "there is more after the value (a comment, a line break or a second key); give one value";
    let large = "too large: a pipeline's whole numbers are at most 9223372036854775807";
    let control = "the value holds a line break or another control character; give one value";
    for (name, set, why) in [
        ("set-second-line", "train.lr=1e-3\nseed = 7", more),
        ("set-second-table", "name=\"x\"\n[model]\nkind = \"mlp\"", more),
        ("set-carriage-return", "train.lr=1e-3\rseed = 7", control),
        ("set-bare-newline", "train.optimizer=adam\nx", control),
        ("set-bare-escape", "train.optimizer=adam\u{1b}[2J", control),
        ("set-trailing-comment", "train.lr=1e-3 # tuned", comment),
        ("set-glued-comment", "train.iterations=100#0", comment),
        ("set-past-i64", "train.iterations=18446744073709551615", large),
    ] {
        let case = mnist_case(name);
        // Shown on one line, as Rust escapes a string.
        let shown = set.replace('\n', "\\n").replace('\r', "\\r").replace('\u{1b}', "\\u{1b}");
        refused(
            &case,
            &case.dir,
            &[&case.input("bad.toml"), "--quiet", "--set", set, "--out", case.dir.join("out").to_str().unwrap()],
            &format!("error: {{D}}/in/bad.toml: --set {shown}: {why}"),
        );
    }
}

#[test]
fn text_from_files_never_steers_the_terminal() {
    // A pipeline file named with a screen-clear and a window title.
    let case = mnist_case("escape-file-name");
    let evil = case.dir.join("in/\u{1b}[2J\u{1b}]0;pwned\u{7}.toml");
    refused(
        &case,
        &case.dir,
        &[evil.to_str().unwrap(), "--quiet"],
        "error: {D}/in/\\u{1b}[2J\\u{1b}]0;pwned\\u{7}.toml: the pipeline file cannot be read: No such file or \
         directory (os error 2)",
    );
    // A data folder so named, from inside the file.
    let case = mnist_case("escape-data-root");
    case.pipeline(&MNIST.replace("root = \"{IN}/mnist\"", "root = \"{IN}/\\u001b[31mred\""));
    let file = case.input("bad.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&file, "--quiet", "--out", case.dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/in//\\u{1b}[31mred: MNIST folder not found") && !err.contains('\u{1b}'), "{err}");
    let _ = std::fs::remove_dir_all(&case.dir);
    // predict on an input so named.
    let case = mnist_case("escape-predict-input");
    let run = trained(&case);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args(["predict", run.to_str().unwrap(), case.dir.join("\u{1b}[2Jx.png").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("\\u{1b}[2Jx.png") && !err.contains('\u{1b}'), "{err}");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn numbers_too_large_for_their_field_name_line_and_key() {
    let case = mnist_case("iterations-past-u64");
    case.pipeline(&MNIST.replace("iterations = 2", "iterations = 18446744073709551615"));
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
        "error: {D}/in/bad.toml: line 16: train.iterations: too large: a pipeline's whole numbers are at most \
         9223372036854775807",
    );
    let case = mnist_case("seed-past-u64");
    case.pipeline(&MNIST.replace("seed = 0", "seed = 18446744073709551615"));
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
        "error: {D}/in/bad.toml: line 4: seed: too large: a pipeline's whole numbers are at most 9223372036854775807",
    );
    let case = mnist_case("eval-every-past-u64");
    case.pipeline(&MNIST.replace("eval_every = 1", "eval_every = 99999999999999999999999"));
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("line 19") && err.contains("eval_every"), "{err}");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn resume_never_follows_a_planted_checkpoint_folder() {
    for (name, plant, what) in
        [("resume-checkpoints-symlink", true, "a symbolic link"), ("resume-checkpoints-file", false, "not a folder")]
    {
        let case = mnist_case(name);
        let victim = case.dir.join("victim");
        std::fs::create_dir_all(&victim).unwrap();
        std::fs::write(victim.join("keep.txt"), b"mine").unwrap();
        let ck = case.dir.join(".out.checkpoints");
        if plant {
            std::os::unix::fs::symlink(&victim, &ck).unwrap();
        } else {
            std::fs::write(&ck, b"not a folder").unwrap();
        }
        let file = case.input("bad.toml");
        refused(
            &case,
            &case.dir,
            &[&file, "--quiet", "--resume", "--out", case.dir.join("out").to_str().unwrap()],
            &format!(
                "error: {{D}}/in/bad.toml: resume: {{D}}/.out.checkpoints: is not a folder of checkpoints ({what}); \
                 remove it, or run without --resume to start over"
            ),
        );
    }
}

#[test]
fn common_names_alone_do_not_make_a_folder_ours() {
    // A user's results of another tool: metrics.json and report.md are common names.
    let case = mnist_case("legacy-foreign-metrics");
    let mine = case.dir.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("metrics.json"), b"{\"auc\": 0.97, \"note\": \"3 days of GPU\"}").unwrap();
    std::fs::write(mine.join("report.md"), b"# my paper notes\n").unwrap();
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", mine.to_str().unwrap()],
        &format!("error: {{D}}/in/bad.toml: output folder {{D}}/mine: holds 'metrics.json', which a pipeline run did not write, {WHOLE}"),
    );
    let case = mnist_case("legacy-foreign-metrics-eval");
    let run = trained(&case);
    let mine = case.dir.join("mine");
    std::fs::create_dir_all(&mine).unwrap();
    std::fs::write(mine.join("metrics.json"), b"{\"mine\": 1}").unwrap();
    refused(
        &case,
        &case.dir,
        &["eval", run.to_str().unwrap(), "--out", mine.to_str().unwrap()],
        &format!("error: {{D}}/mine: holds 'metrics.json', which nabla eval did not write, {WHOLE}"),
    );
    // A name that is not UTF-8 is never taken for one of ours.
    let case = mnist_case("marked-non-utf8-entry");
    let run = trained(&case);
    use std::os::unix::ffi::OsStrExt;
    std::fs::write(run.join(std::ffi::OsStr::from_bytes(b"w\xff")), b"user data").unwrap();
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()],
        &format!(
            "error: {{D}}/in/bad.toml: output folder {{D}}/run: holds 'w\u{fffd}', whose name is not UTF-8, {WHOLE}"
        ),
    );
}

#[test]
fn every_variant_s_inputs_are_inputs() {
    let case = mnist_case("trial-loads-from-out");
    let run = trained(&case);
    let w = run.join("weights.safetensors");
    case.pipeline(&format!(
        "{}\n[[trials]]\nname = \"a\"\nset = {{ \"model.load\" = \"{}\" }}\n",
        MNIST.replace("eval_every = 1", "eval_every = 1\nsave = \"weights.safetensors\""),
        w.display()
    ));
    refused(
        &case,
        &case.dir,
        &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()],
        "error: {D}/in/bad.toml: output folder {D}/run: holds model.load (in trial 'a') ({D}/run/weights.safetensors), \
         which this run reads; the run replaces its output folder whole, so choose another one",
    );
    // eval on the run's own test split reads the run's data folder.
    let case = mnist_case("eval-into-the-run-data");
    let run = trained(&case);
    let into = case.dir.join("in/mnist/ev");
    refused(
        &case,
        &case.dir,
        &["eval", run.to_str().unwrap(), "--out", into.to_str().unwrap()],
        "error: {D}/in/mnist/ev: lies inside the run's data.root ({D}/in//mnist), which this run reads; the run \
         replaces its output folder whole, so choose another one",
    );
}

#[test]
fn the_lock_file_is_never_a_users_file() {
    for (name, hard_link) in [("lock-hard-link", true), ("lock-foreign-content", false)] {
        let case = mnist_case(name);
        std::fs::write(case.dir.join("notes.txt"), b"my precious notes, more than a pid\n").unwrap();
        if hard_link {
            std::fs::hard_link(case.dir.join("notes.txt"), case.dir.join(".out.lock")).unwrap();
        } else {
            std::fs::copy(case.dir.join("notes.txt"), case.dir.join(".out.lock")).unwrap();
        }
        refused(
            &case,
            &case.dir,
            &[&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()],
            "error: {D}/.out.lock: is not a lock file nabla wrote (it holds more than a pid, or has other names); \
             remove it",
        );
    }
}

#[test]
fn what_a_run_makes_and_keeps() {
    use std::os::unix::fs::PermissionsExt;
    // The folder replaced keeps its permissions.
    let case = mnist_case("keeps-permissions");
    let run = trained(&case);
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    succeeds(&case.dir, &[&case.input("bad.toml"), "--quiet", "--out", run.to_str().unwrap()]);
    assert_eq!(std::fs::metadata(&run).unwrap().permissions().mode() & 0o7777, 0o700);
    let _ = std::fs::remove_dir_all(&case.dir);
    // A failed run leaves no folders it made to hold its output.
    let case = mnist_case("failed-run-leaves-no-parents");
    case.pipeline(&MNIST.replace("root = \"{IN}/mnist\"", "root = \"{IN}/absent\""));
    let deep = case.dir.join("deep/er/out");
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--quiet", "--out", deep.to_str().unwrap()])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!case.dir.join("deep").exists(), "the folders made for the output were left");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn arguments_nabla_cannot_name() {
    use std::os::unix::ffi::OsStrExt;
    let case = mnist_case("argument-not-utf8");
    let before = snapshot(&case.dir);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .arg(case.input("bad.toml"))
        .arg("--out")
        .arg(std::ffi::OsStr::from_bytes(b"x\xff"))
        .current_dir(&case.dir)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end(), "nabla: argument 'x\u{fffd}' is not UTF-8 text; name files and folders in UTF-8");
    assert!(snapshot(&case.dir) == before);
    let _ = std::fs::remove_dir_all(&case.dir);
    // Names like the staging, lock and checkpoint files beside an output folder.
    let case = mnist_case("out-hidden-name");
    let file = case.input("bad.toml");
    refused(
        &case,
        &case.dir,
        &[&file, "--out", ".out.checkpoints"],
        &format!(
            "nabla: --out .out.checkpoints: the output folder's name '.out.checkpoints' starts with '.', as the \
             staging, lock and checkpoint files beside an output folder do; choose a name without it\n\n{}",
            help()
        ),
    );
}

#[test]
fn the_report_says_where_it_wrote_in_clean_text() {
    let case = mnist_case("report-escape-name");
    let res = case.dir.join("res");
    std::fs::create_dir_all(&res).unwrap();
    let page = res.join("a\u{1b}]0;pwned\u{7}.html");
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args(["report", res.to_str().unwrap(), "--out", page.to_str().unwrap()])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("a\\u{1b}]0;pwned\\u{7}.html") && !out.contains('\u{1b}') && !out.contains('\u{7}'), "{out}");
    let _ = std::fs::remove_dir_all(&case.dir);
}
