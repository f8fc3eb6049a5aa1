//! `nabla report` from the command line: the committed runs give a page with
//! every part and the runs' own numbers; hostile run folders are skipped by
//! name, and bad arguments write nothing.

use std::path::{Path, PathBuf};

mod common;
use common::{nabla, text};

fn temp(name: &str) -> PathBuf {
    common::temp("report", name)
}

fn copy_run(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn the_committed_runs_make_a_page_with_their_numbers() {
    let dir = temp("committed");
    let html = dir.join("index.html");
    let o = nabla(&["report", "resources", "--out", html.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    let runs = std::fs::read_dir("resources")
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().join("metrics.json").is_file())
        .count();
    assert!(out.starts_with(&format!("{runs} runs -> ")), "{out}");
    let page = std::fs::read_to_string(&html).unwrap();
    for part in 1..=10 {
        assert!(page.contains(&format!("id=\"part{part}\"")), "no part {part}");
    }
    assert!(page.contains("data:image/png;base64,"), "figures are embedded");
    // Part 4's test accuracy, as its metrics.json has it.
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string("resources/part4/metrics.json").unwrap()).unwrap();
    let acc = format!("| test\\_accuracy | {:.1} % |", m["test_accuracy"].as_f64().unwrap() * 100.0);
    let md = std::fs::read_to_string(dir.join("REPORT.md")).unwrap();
    assert!(md.contains(&acc), "REPORT.md lacks {acc}");
    let mut written: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    written.sort();
    assert_eq!(written, ["REPORT.md", "index.html"]);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn hostile_run_folders_are_skipped_by_name() {
    let dir = temp("hostile");
    let res = dir.join("res");
    copy_run(Path::new("resources/part4"), &res.join("part4"));
    copy_run(Path::new("resources/part8"), &res.join("part8"));
    // Truncated JSON, a figure that is not a PNG, a symlinked run folder.
    let metrics = std::fs::read(res.join("part8/metrics.json")).unwrap();
    std::fs::write(res.join("part8/metrics.json"), &metrics[..100]).unwrap();
    let figure = std::fs::read_dir(res.join("part4"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "png"))
        .unwrap();
    std::fs::write(&figure, b"not a png").unwrap();
    std::os::unix::fs::symlink(std::fs::canonicalize("resources/part5").unwrap(), res.join("part5")).unwrap();
    let html = dir.join("index.html");
    let o = nabla(&["report", res.to_str().unwrap(), "--out", html.to_str().unwrap()]);
    let (out, err) = text(&o);
    assert!(o.status.success(), "{err}");
    assert!(out.starts_with("1 runs -> "), "{out}");
    assert!(err.contains("part8: metrics.json is not valid JSON"), "{err}");
    assert!(err.contains(&format!("{}: not a PNG; left out", figure.display())), "{err}");
    assert!(err.contains("part5: a symlink; skipped"), "{err}");
    assert!(html.is_file());
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn bad_arguments_write_nothing() {
    let dir = temp("args");
    let cases: [(&[&str], &str, i32); 4] = [
        (&["report", "no/such/folder", "--out", "OUT/index.html"], "cannot list the resources folder", 1),
        (&["report", "resources", "--out", "OUT/missing/index.html"], "cannot write", 1),
        (&["report", "resources", "--out", "OUT"], "is a folder; --out names the HTML file to write", 1),
        (&["report", "resources", "--bogus"], "unknown option '--bogus'", 2),
    ];
    for (args, message, code) in cases {
        let args: Vec<String> = args.iter().map(|a| a.replace("OUT", dir.to_str().unwrap())).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = nabla(&args);
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(message), "{args:?}: {err}");
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "{args:?} wrote something");
    }
    let _ = std::fs::remove_dir_all(dir);
}
