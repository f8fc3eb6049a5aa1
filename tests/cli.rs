//! The front door: `nabla` on the real pipeline files (with small settings),
//! `nabla check`, and broken files that must fail cleanly, writing nothing.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::{nabla, stderr};

fn temp(name: &str) -> PathBuf {
    common::temp("cli", name)
}

fn metrics(dir: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join("metrics.json")).unwrap()).unwrap()
}

/// Settings that make any MNIST pipeline quick.
const QUICK: [&str; 6] =
    ["--set", "data.train_limit=3000", "--set", "train.iterations=4", "--set", "train.eval_every=2"];

#[test]
fn part1_draws_the_sample_grid() {
    let out = temp("p1").join("out");
    let o = nabla(&["pipelines/part1.toml", "--quiet", "--out", out.to_str().unwrap()]);
    assert!(o.status.success(), "{}", stderr(&o));
    let png = image::open(out.join("figure1_samples.png")).unwrap();
    assert!(png.width() > 500 && png.height() > 500);
    assert_eq!(metrics(&out)["samples_per_class"], 10);
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("figure1_samples.png"));
}

#[test]
fn part3_gradient_check_passes_and_reports_each_direction() {
    let out = temp("p3").join("out");
    let o =
        nabla(&["pipelines/part3.toml", "--quiet", "--out", out.to_str().unwrap(), "--set", "data.train_limit=5000"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    assert_eq!(m["gradcheck_passed"], true);
    assert_eq!(m["gradcheck_entries"].as_array().unwrap().len(), 4 + 20 + 10);
    assert!(m["gradcheck_max_scaled_diff"].as_f64().unwrap() < 1e-3);
}

#[test]
fn part4_and_part5_sweep_train_save_and_part6_reads_the_weights() {
    let dir = temp("p456");
    let (p4, p5, p6) = (dir.join("p4"), dir.join("p5"), dir.join("p6"));
    let mut args = vec!["pipelines/part4.toml", "--quiet", "--out", p4.to_str().unwrap()];
    args.extend(QUICK);
    let o = nabla(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&p4);
    for key in [
        "train_accuracy",
        "validation_accuracy",
        "test_accuracy",
        "final_loss",
        "wall_seconds",
        "seed",
        "nabla_version",
        "config",
    ] {
        assert!(m.get(key).is_some(), "metrics.json lacks {key}");
    }
    assert_eq!(m["sweep"]["results"].as_array().unwrap().len(), 5);
    assert!(p4.join("figure2_learning_curve.png").is_file() && p4.join("figure3_weights.png").is_file());
    assert!(p4.join("sweep_train_lr_0.0001.png").is_file());

    let mut args = vec!["pipelines/part5.toml", "--quiet", "--out", p5.to_str().unwrap()];
    args.extend(QUICK);
    let o = nabla(&args);
    assert!(o.status.success(), "{}", stderr(&o));
    let weights = p5.join("weights.safetensors");
    assert!(weights.is_file());

    let load = format!("model.load={}", weights.display());
    let o = nabla(&[
        "pipelines/part6.toml",
        "--quiet",
        "--out",
        p6.to_str().unwrap(),
        "--set",
        &load,
        "--set",
        "data.train_limit=2000",
        "--set",
        "contour.grid=9",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    for f in ["figure5_contour.png", "figure6_trajectories.png", "contour_edge.png", "report.md"] {
        assert!(p6.join(f).is_file(), "{f} missing");
    }
    let m = metrics(&p6);
    assert!(m["contour_edge_range"].as_f64().unwrap() < m["contour_central_range"].as_f64().unwrap());
}

#[test]
fn check_accepts_every_shipped_pipeline() {
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            // part6 reads weights that part5 writes; point it at a file that exists.
            let o = nabla(&["check", path.to_str().unwrap(), "--set", "model.load=Cargo.toml"]);
            let o = if o.status.success() { o } else { nabla(&["check", path.to_str().unwrap()]) };
            assert!(o.status.success(), "{}: {}", path.display(), stderr(&o));
        }
    }
}

/// A broken variant of part 4 (`edit` applied to its text) must fail with a
/// message containing `expect` and write nothing.
fn rejects(name: &str, edit: impl Fn(&str) -> String, extra: &[&str], expect: &[&str]) {
    let dir = temp(name);
    let file = dir.join("broken.toml");
    std::fs::write(&file, edit(&std::fs::read_to_string("pipelines/part4.toml").unwrap())).unwrap();
    let out = dir.join("out");
    let mut args = vec![file.to_str().unwrap(), "--quiet", "--out", out.to_str().unwrap()];
    args.extend(extra);
    let o = nabla(&args);
    let err = stderr(&o);
    assert!(!o.status.success(), "{name}: succeeded");
    assert!(err.contains("broken.toml"), "{name}: the message does not name the file: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
    }
    assert!(!err.contains("panicked"), "{name}: panicked: {err}");
    assert!(!out.exists(), "{name}: wrote the output folder");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1, "{name}: left files beside the output folder");
}

#[test]
fn broken_files_fail_cleanly_and_write_nothing() {
    let same = |s: &str| s.to_string();
    rejects(
        "unknown-key",
        |s| s.replace("momentum = 0.0", "momentun = 0.0"),
        &[],
        &["line 26", "unknown field `momentun`"],
    );
    rejects(
        "wrong-type",
        |s| s.replace("iterations = 1000", "iterations = \"many\""),
        &[],
        &["line 27", "invalid type"],
    );
    rejects("negative-lr", |s| s.replace("lr = 1e-4", "lr = -1e-4"), &[], &["line 25", "train.lr", "must be positive"]);
    rejects(
        "zero-iterations",
        |s| s.replace("iterations = 1000", "iterations = 0"),
        &[],
        &["train.iterations: must be at least 1"],
    );
    rejects(
        "batch-too-big",
        same,
        &["--set", "train.batch_size=60001"],
        &["train.batch_size: 60001 is larger than the 60000"],
    );
    rejects("limit-too-big", same, &["--set", "data.train_limit=100000"], &["data.train_limit: 100000 is larger"]);
    rejects("version", |s| s.replace("version = 1", "version = 7"), &[], &["version 7 is not supported"]);
    rejects("syntax", |s| s.replace("[train]", "[train"), &[], &["TOML parse error"]);
    rejects(
        "no-model",
        |s| s.replace("[model]\nkind = \"linear\"", "[unused]\nkind = \"linear\""),
        &[],
        &["unknown field `unused`"],
    );
    rejects(
        "bad-sweep-value",
        |s| s.replace("1e-6]", "-1.0]"),
        &[],
        &["sweep.values: train.lr = -1.0", "must be positive"],
    );
    rejects(
        "bad-sweep-key",
        |s| s.replace("key = \"train.lr\"", "key = \"train.lrate\""),
        &[],
        &["unknown field `lrate`"],
    );
    rejects("unknown-optimizer", same, &["--set", "train.optimizer=rmsprop"], &["unknown variant `rmsprop`"]);
    rejects(
        "missing-data",
        same,
        &["--set", "data.root=no/such/folder", "--set", "train.iterations=1"],
        &["no/such/folder: MNIST folder not found"],
    );
    rejects(
        "bad-init",
        |s| s.replace("kind = \"uniform\", lo = 0.0, hi = 1.0 }\nbias", "kind = \"uniform\", low = 0.0 }\nbias"),
        &[],
        &["unknown field `low`"],
    );
    rejects(
        "diverges",
        |s| {
            s.replace("[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 1e-4, 5e-5, 1e-5, 1e-6]\nselect = \"validation_accuracy\"\n", "")
        },
        &["--set", "train.lr=1e38", "--set", "data.train_limit=2000", "--set", "train.iterations=50"],
        &["training diverged at iteration", "learning rate 1e38"],
    );
}

#[test]
fn check_reports_bad_files_and_paths() {
    let dir = temp("check");
    let file = dir.join("bad.toml");
    std::fs::write(&file, "version = 1\nname = \"x\"\n[data]\ndataset = \"mnist\"\nroot = \"nowhere\"\n[samples]\n")
        .unwrap();
    let o = nabla(&["check", file.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("bad.toml: data.root: folder nowhere not found"), "{}", stderr(&o));
    let o = nabla(&["check", "pipelines/part6.toml", "--set", "model.load=no/weights.safetensors"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("model.load: no/weights.safetensors not found"), "{}", stderr(&o));
    let o = nabla(&["--bogus"]);
    assert_eq!(o.status.code(), Some(2));
    let o = nabla(&["schema"]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("### Train"));
}

#[test]
fn a_seed_gives_the_same_run_on_one_and_two_threads() {
    let dir = temp("threads");
    let run = |threads: &str| {
        let out = dir.join(format!("t{threads}"));
        let mut args = vec!["pipelines/part5.toml", "--quiet", "--out", out.to_str().unwrap()];
        args.extend(QUICK);
        let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
            .args(&args)
            .env("RAYON_NUM_THREADS", threads)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", stderr(&o));
        let mut m = metrics(&out);
        for key in ["wall_seconds", "train_seconds", "threads"] {
            m.as_object_mut().unwrap().remove(key);
        }
        (m, std::fs::read(out.join("weights.safetensors")).unwrap())
    };
    let (one, two) = (run("1"), run("2"));
    assert_eq!(one.0, two.0, "metrics differ between 1 and 2 threads");
    assert!(one.1 == two.1, "trained weights differ between 1 and 2 threads");
    // The final run repeats the sweep's run at the chosen value exactly.
    let chosen = one.0["sweep"]["chosen"].as_str().unwrap().to_string();
    let result = one.0["sweep"]["results"].as_array().unwrap().iter().find(|r| r["value"] == chosen).unwrap().clone();
    assert_eq!(result["validation_accuracy"], one.0["validation_accuracy"]);
}

#[test]
fn part7_measures_and_fits_the_growth() {
    let out = temp("p7").join("out");
    let o = nabla(&[
        "pipelines/part7.toml",
        "--quiet",
        "--out",
        out.to_str().unwrap(),
        "--set",
        "scaling.depths=[1, 2, 3, 4]",
        "--set",
        "scaling.widths=[2, 4, 8]",
        "--set",
        "scaling.repeats=1",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&out);
    // How fast each method grows is timing, measured by `benches/backprop_scaling`;
    // here: every method measured, fitted and drawn.
    let fits = m["scaling_fits"].as_object().unwrap();
    assert!(["naive", "vectorised"].iter().all(|k| fits.contains_key(*k)), "{fits:?}");
    for (method, fit) in fits {
        for key in ["ln_time_per_layer", "seconds_per_layer", "exponent_of_k"] {
            assert!(fit[key].as_f64().is_some_and(f64::is_finite), "{method}.{key}: {fit}");
        }
        let depths = fit["depth_points"].as_u64().unwrap();
        assert!((2..=4).contains(&depths) && (1..=3).contains(&fit["width_points"].as_u64().unwrap()), "{fit}");
    }
    assert!(m["naive_over_vectorised"]["ratio"].as_f64().is_some_and(|r| r.is_finite() && r > 0.0), "{m}");
    let report = std::fs::read_to_string(out.join("report.md")).unwrap();
    assert!(report.contains("| naive | 1 | 6 |"), "{report}");
    assert!(out.join("scaling.png").is_file());
}

#[test]
fn part8_and_part9_run_on_the_shared_faces() {
    if nabla::data::shared_data_or_skip("facescrub/cropped32", "part8_and_part9_run_on_the_shared_faces").is_none() {
        return;
    }
    let dir = temp("p89");
    let (p8, p9) = (dir.join("p8"), dir.join("p9"));
    let o = nabla(&[
        "pipelines/part8.toml",
        "--quiet",
        "--out",
        p8.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.steps_per_batch=50",
        "--set",
        "crossval.seeds=[0, 1]",
        "--set",
        "trials=[]",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&p8);
    assert_eq!(m["per_seed"].as_array().unwrap().len(), 2);
    assert!(m["train_accuracy"].as_f64().unwrap() > 0.3, "{}", m["train_accuracy"]);
    let load = format!("model.load={}", p8.join("weights.safetensors").display());
    let o = nabla(&["pipelines/part9.toml", "--quiet", "--out", p9.to_str().unwrap(), "--set", &load]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(metrics(&p9)["units_favour"].as_array().unwrap().len(), 25);
    assert!(p9.join("figure8_hidden_units.png").is_file());
    // A split the data cannot meet is an error naming the actor.
    let o = nabla(&[
        "pipelines/part8.toml",
        "--quiet",
        "--out",
        dir.join("x").to_str().unwrap(),
        "--set",
        "data.split.train=200",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("actor 'hader' has"), "{}", stderr(&o));
}

#[test]
fn part10_runs_on_random_weights_and_says_so() {
    if nabla::data::shared_data_or_skip("facescrub/cropped227", "part10_runs_on_random_weights_and_says_so").is_none() {
        return;
    }
    let dir = temp("p10");
    let out = dir.join("out");
    let cache = format!("backbone.cache={}", dir.join("cache").display());
    let args = ["--quiet", "--set", "train.epochs=1", "--set", "train.steps_per_batch=5", "--set", &cache];
    let mut run = vec!["pipelines/part10.toml", "--out", out.to_str().unwrap()];
    run.extend(args);
    let o = nabla(&run);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("WARNING: backbone weights"), "no loud warning: {}", stderr(&o));
    assert_eq!(metrics(&out)["weights"], "random-init");
    assert!(std::fs::read_to_string(out.join("report.md")).unwrap().contains("random weights"));
    // The second run reads the cached features.
    let o = nabla(&run);
    assert!(stderr(&o).contains("features from cache"), "{}", stderr(&o));
    // Without the fallback, a missing file stops the run and says where to get it.
    let o = nabla(&[
        "pipelines/part10.toml",
        "--quiet",
        "--out",
        dir.join("x").to_str().unwrap(),
        "--set",
        "backbone.if_missing=error",
    ]);
    assert!(!o.status.success() && stderr(&o).contains("alexnet-owt-7be5be79.pth"), "{}", stderr(&o));
    assert!(!dir.join("x").exists());
    // The whole network trains end to end (one epoch on a few images here).
    let ft = dir.join("ft");
    let o = nabla(&[
        "pipelines/part10_finetune.toml",
        "--quiet",
        "--out",
        ft.to_str().unwrap(),
        "--set",
        "train.epochs=1",
        "--set",
        "train.batch_size=8",
        "--set",
        "data.train_limit=16",
        "--set",
        "train.save=alexnet.safetensors",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(metrics(&ft)["final_loss"].as_f64().unwrap().is_finite());
    assert!(ft.join("learning_curve.png").is_file() && ft.join("alexnet.safetensors").is_file());
}

/// A declared network runs end to end: LeNet-5 in epochs of mini-batches
/// (32 steps for 1024 examples in batches of 64 over 2 epochs, measured after
/// each epoch), its filters drawn, its table in the report, its weights
/// saved under PyTorch's names.
#[test]
fn lenet5_trains_by_epochs_of_mini_batches() {
    let dir = temp("lenet5");
    let o = nabla(&[
        "pipelines/lenet5.toml",
        "--quiet",
        "--out",
        dir.to_str().unwrap(),
        "--set",
        "data.train_limit=1024",
        "--set",
        "train.epochs=2",
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    let m = metrics(&dir);
    assert_eq!(m["steps"], 32);
    let iterations: Vec<u64> =
        m["learning_curve"].as_array().unwrap().iter().map(|p| p["iteration"].as_u64().unwrap()).collect();
    assert_eq!(iterations, [0, 16, 32]);
    assert!(m["test_accuracy"].as_f64().unwrap() > 0.4, "{}", m["test_accuracy"]);
    assert!(dir.join("filters.png").is_file() && dir.join("filters_learned.png").is_file());
    let report = std::fs::read_to_string(dir.join("report.md")).unwrap();
    assert!(report.contains("| layers.0 | conv2d 6 5x5 pad 2 | [6, 28, 28] | 156 |"), "{report}");
    let bytes = std::fs::read(dir.join("weights.safetensors")).unwrap();
    let names = safetensors::SafeTensors::deserialize(&bytes).unwrap().names().len();
    assert_eq!(names, 10);
    let _ = std::fs::remove_dir_all(&dir);
}
