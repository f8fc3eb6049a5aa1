//! Hostile names and outputs: names that climb out of the output folder,
//! output files that collide, commits that fail halfway.

use super::*;

/// Run `nabla args` in `cwd` (no `--out` unless given) and check it fails
/// cleanly, naming `expect`, and writes nothing anywhere under `cwd`.
fn fails_in(name: &str, cwd: &Path, args: &[&str], expect: &[&str]) -> String {
    let before = listing(cwd);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(args).current_dir(cwd).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(!o.status.success(), "{name}: succeeded: {err}");
    assert_ne!(o.status.code(), None, "{name}: killed by a signal: {err}");
    assert!(!err.contains("panicked"), "{name}: panicked: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
    }
    assert_eq!(listing(cwd), before, "{name}: wrote into {}", cwd.display());
    err
}

/// `in/bad.toml` from `text`, and a working folder `cwd/` holding a
/// `Cargo.toml` and a `resources/` folder that a bad name could hit.
fn case_with_cwd(name: &'static str, text: &str) -> (Case, PathBuf) {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(text);
    let cwd = case.dir.join("cwd");
    std::fs::create_dir_all(cwd.join("resources")).unwrap();
    std::fs::write(cwd.join("Cargo.toml"), b"[package]\n").unwrap();
    (case, cwd)
}

fn edit(from: &str, to: &str) -> String {
    assert!(MNIST.contains(from), "the template lacks '{from}'");
    MNIST.replace(from, to)
}

#[test]
fn names_that_leave_their_folder() {
    // Without --out, the name is the folder: none of these may be used.
    for (label, bad) in
        [("dotdot", ".."), ("dot", "."), ("hidden", ".git"), ("slash", "a/b"), ("empty", ""), ("nul", "a\\u0000b")]
    {
        let (case, cwd) = case_with_cwd("name", &edit("name = \"bad\"", &format!("name = \"{bad}\"")));
        fails_in(label, &cwd, &[&case.input("bad.toml"), "--quiet"], &["bad.toml", "name: '"]);
        assert_eq!(std::fs::read(cwd.join("Cargo.toml")).unwrap(), b"[package]\n");
        let _ = std::fs::remove_dir_all(&case.dir);
    }
    // Through --set too.
    let (case, cwd) = case_with_cwd("name-set", MNIST);
    fails_in("name-set", &cwd, &[&case.input("bad.toml"), "--set", "name=..", "--quiet"], &["bad.toml", "name"]);
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn output_names_that_collide() {
    let cases: [(&'static str, &str, &[&str]); 7] = [
        ("save-is-metrics", "save = \"metrics.json\"", &["train.save", "'metrics.json' is also"]),
        ("curve-is-report", "curve_figure = \"report.md\"", &["train.curve_figure", "'report.md' is also"]),
        ("save-is-a-figure", "save = \"figure.png\"\ncurve_figure = \"figure.png\"", &["train.curve_figure"]),
        (
            "case-folds",
            "save = \"Figure.PNG\"\ncurve_figure = \"figure.png\"",
            &["train.curve_figure", "ignoring case"],
        ),
        (
            "figure-is-derived",
            "curve_figure = \"w_learned.png\"\nweights_figure = \"w.png\"",
            &["train.weights_figure", "w_learned.png"],
        ),
        ("save-hidden", "save = \".weights\"", &["train.save", "plain file name"]),
        ("save-dotdot", "save = \"..\"", &["train.save", "plain file name"]),
    ];
    for (name, setting, expect) in cases {
        let case = Case::new(name);
        mnist(&case);
        case.pipeline(&edit("eval_every = 1", &format!("eval_every = 1\n{setting}"))).fails(&[], "bad.toml", expect);
    }
}

#[test]
fn sweeps_and_trials_that_cannot_name_their_files_fail_at_load() {
    // Each of these trained first and failed (or overwrote) only at the end.
    let sweep = |key: &str, values: &str| format!("{MNIST}\n[sweep]\nkey = \"{key}\"\nvalues = {values}\n");
    let long = format!("[\"{}\"]", "x".repeat(300));
    let cases: [(&'static str, String, &[&str]); 5] = [
        ("sweep-value-slash", sweep("train.curve_figure", "[\"a\", \"../b\"]"), &["sweep.values", "plain file name"]),
        ("sweep-value-long", sweep("train.curve_figure", &long), &["sweep.values", "bytes long"]),
        ("sweep-values-same-figure", sweep("train.lr", "[1e-3, 0.001]"), &["sweep.values", "listed twice"]),
        ("sweep-save-collides", sweep("train.save", "[\"report.md\"]"), &["train.save", "report.md"]),
        (
            "trial-collides",
            format!("{MNIST}\n[[trials]]\nname = \"t\"\nset = {{ \"train.curve_figure\" = \"metrics.json\" }}\n"),
            &["train.curve_figure", "trial 't'"],
        ),
    ];
    for (name, text, expect) in cases {
        let case = Case::new(name);
        mnist(&case);
        case.pipeline(&text).fails(&[], "bad.toml", expect);
    }
    let case = Case::new("crossval-seed-twice");
    mnist(&case);
    case.pipeline(&format!("{MNIST}\n[crossval]\nseeds = [1, 1]\n")).fails(&[], "bad.toml", &["crossval.seeds"]);
}

#[test]
fn out_folders_that_are_not_a_folder_of_their_own() {
    let (case, cwd) = case_with_cwd("out-empty", MNIST);
    let file = case.input("bad.toml");
    for (label, out) in [("empty", ""), ("dot", "."), ("dotdot", ".."), ("root", "/")] {
        let err = fails_in(label, &cwd, &[&file, "--quiet", "--out", out], &["--out", "must end in a folder name"]);
        assert!(!err.contains(&format!("running {file}")), "{label}: ran: {err}");
        let eq = format!("--out={out}");
        fails_in(label, &cwd, &[&file, "--quiet", &eq], &["must end in a folder name"]);
    }
    // An existing file, a symlink, a folder that is not an earlier run's: kept as they are.
    std::fs::write(cwd.join("Cargo.lock"), b"lock").unwrap();
    fails_in("file", &cwd, &[&file, "--out", "Cargo.lock"], &["Cargo.lock", "not a folder"]);
    std::os::unix::fs::symlink(cwd.join("resources"), cwd.join("link")).unwrap();
    fails_in("symlink", &cwd, &[&file, "--out", "link"], &["link", "symbolic link"]);
    std::fs::write(cwd.join("resources/notes.txt"), b"mine").unwrap();
    fails_in(
        "not-ours",
        &cwd,
        &[&file, "--out", "resources"],
        &["resources", "holds 'notes.txt', which a pipeline run does not write"],
    );
    // The same without --out: `name = "resources"` under resources/ is fine,
    // but a folder there that is not a run's is refused before training.
    std::fs::create_dir_all(cwd.join("resources/bad/sub")).unwrap();
    std::fs::write(cwd.join("resources/bad/metrics.json"), b"{}").unwrap();
    fails_in("default-folder-not-ours", &cwd, &[&file, "--quiet"], &["resources/bad", "holds 'sub'"]);
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn two_files_with_one_name_in_one_invocation() {
    let (case, cwd) = case_with_cwd("same-name", MNIST);
    case.write("other.toml", MNIST.replace("{IN}", &case.input("")).replace("name = \"bad\"", "name = \"BAD\""));
    let err = fails_in(
        "same-name",
        &cwd,
        &[&case.input("bad.toml"), &case.input("other.toml"), "--quiet"],
        &["other.toml: name: 'BAD' is also the name of", "bad.toml"],
    );
    assert!(!err.contains("running "), "ran before refusing: {err}");
    // `nabla check` says the same.
    fails_in("check-same-name", &cwd, &["check", &case.input("bad.toml"), &case.input("bad.toml")], &["is also"]);
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn a_new_run_replaces_the_old_folder_whole_or_not_at_all() {
    let case = Case::new("replace");
    mnist(&case);
    case.pipeline(MNIST);
    let out = case.dir.join("out");
    let run = |extra: &[&str]| {
        let mut args = vec![case.input("bad.toml"), "--quiet".into(), "--out".into(), out.to_str().unwrap().into()];
        args.extend(extra.iter().map(|s| s.to_string()));
        Command::new(env!("CARGO_BIN_EXE_nabla")).args(&args).output().unwrap()
    };
    // An older run that drew its curve under another name.
    let o = run(&["--set", "train.curve_figure=stale.png"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.join("stale.png").is_file());
    let snapshot = |dir: &Path| -> Vec<(PathBuf, Vec<u8>)> {
        listing(dir).into_iter().filter(|p| p.is_file()).map(|p| (p.clone(), std::fs::read(&p).unwrap())).collect()
    };
    // A run that fails leaves the old results as they were, and no leftovers.
    let before = snapshot(&case.dir);
    let o = run(&["--set", "train.lr=1e38", "--set", "train.iterations=30"]);
    assert!(!o.status.success());
    assert_eq!(snapshot(&case.dir), before, "a failed run changed the old results");
    // A run that succeeds replaces the folder whole.
    let o = run(&[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!out.join("stale.png").exists(), "a file of the older run survived");
    assert!(out.join("metrics.json").is_file() && out.join("weights.safetensors").is_file());
    let beside: Vec<_> = listing(&case.dir).into_iter().filter(|p| p.parent() == Some(case.dir.as_path())).collect();
    assert_eq!(beside, [case.dir.join("in"), out.clone()], "leftovers beside the output folder");
    // A folder where metrics.json goes: refused before training, nothing changed.
    std::fs::remove_file(out.join("metrics.json")).unwrap();
    std::fs::create_dir(out.join("metrics.json")).unwrap();
    let before = listing(&case.dir);
    let o = run(&[]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("holds 'metrics.json', which is not a regular file"), "{err}");
    assert_eq!(listing(&case.dir), before);
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn fetch_reads_no_endless_list() {
    // /dev/zero never ends: without a ceiling the list would fill memory.
    let case = Case::new("fetch-dev-zero");
    let out = case.dir.join("faces");
    let o = Command::new("prlimit")
        .args(["--as=1000000000", "--", env!("CARGO_BIN_EXE_nabla"), "fetch", "facescrub", "--list", "/dev/zero"])
        .args(["--out", out.to_str().unwrap(), "--quiet"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("/dev/zero: cannot read the list: it is a device"), "{err}");
    assert!(!out.exists());
    let _ = std::fs::remove_dir_all(&case.dir);
}
