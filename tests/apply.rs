//! Using a trained run: `nabla predict` and `nabla eval` on a small MNIST
//! run, their agreement with the run's own numbers, and the run folders,
//! inputs and backbones that must be refused by name.

use std::path::{Path, PathBuf};

mod common;
use common::{nabla, text};

fn temp(name: &str) -> PathBuf {
    common::temp("apply", name)
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A linear model on MNIST, a few steps: enough to be right often, not always.
const TINY: &str = r#"
version = 1
name = "tiny"
[data]
dataset = "mnist"
train_limit = 2000
[model]
kind = "linear"
[train]
optimizer = "sgd"
lr = 1e-3
iterations = 15
eval_every = 15
"#;

/// Train `pipeline` (TOML text) into `dir/run`; returns the run folder.
fn train(dir: &Path, pipeline: &str) -> PathBuf {
    let file = dir.join("p.toml");
    std::fs::write(&file, pipeline).unwrap();
    let run = dir.join("run");
    let o = nabla(&[file.to_str().unwrap(), "--quiet", "--out", run.to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    run
}

#[test]
fn predict_and_eval_reproduce_the_runs_test_accuracy() {
    let dir = temp("reproduce");
    let run = train(&dir, TINY);
    let m = json(&run.join("metrics.json"));
    let test = m["test_accuracy"].as_f64().unwrap();
    assert!(test > 0.5 && test < 1.0, "{test}");
    // The report's confusion matrix counts every test example once.
    let counts = &m["test_confusion"]["counts"];
    let total: u64 =
        counts.as_array().unwrap().iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(total, 5000);
    assert!(run.join("confusion.png").is_file() && run.join("mistakes.png").is_file());

    // eval on the run's own test split: the run's accuracy, to the last bit.
    let out = dir.join("eval");
    let o = nabla(&["eval", run.to_str().unwrap(), "--json", "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["accuracy"].as_f64().unwrap(), test);
    assert_eq!(e["examples"], 5000);
    assert_eq!(e["confusion"]["counts"], *counts);
    image::open(out.join("confusion.png")).unwrap();
    assert_eq!(json(&out.join("metrics.json"))["accuracy"], e["accuracy"]);

    // predict on the IDX file: the test split is its even indices.
    let o = nabla(&["predict", run.to_str().unwrap(), "data/mnist/t10k-images-idx3-ubyte.gz", "--json", "--top", "2"]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 10000);
    assert!(lines[3]["input"].as_str().unwrap().ends_with("t10k-images-idx3-ubyte.gz#3"));
    let top = lines[0]["top"].as_array().unwrap();
    assert_eq!(top.len(), 2);
    assert!(top[0]["probability"].as_f64().unwrap() >= top[1]["probability"].as_f64().unwrap());
    let labels = nabla::data::idx::read(Path::new("data/mnist/t10k-labels-idx1-ubyte.gz")).unwrap().data;
    let right =
        (0..10000).step_by(2).filter(|&i| lines[i]["top"][0]["index"].as_u64().unwrap() == labels[i] as u64).count();
    assert_eq!(right as f64 / 5000.0, test);

    // eval on another labelled set: all of t10k.
    let o = nabla(&["eval", run.to_str().unwrap(), "--data", "data/mnist", "--json", "--out", out.to_str().unwrap()]);
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stderr}");
    let e: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(e["examples"], 10000);
    let right_all = (0..10000).filter(|&i| lines[i]["top"][0]["index"].as_u64().unwrap() == labels[i] as u64).count();
    assert_eq!(e["accuracy"].as_f64().unwrap(), right_all as f64 / 10000.0);
}

/// A PNG of a digit-like blob, 28 x 28.
fn digit_png(path: &Path) {
    let img =
        image::GrayImage::from_fn(28, 28, |x, y| image::Luma([if (10..18).contains(&x) && y > 4 { 255 } else { 0 }]));
    img.save(path).unwrap();
}

#[test]
fn predict_reports_bad_inputs_by_name_and_goes_on() {
    let dir = temp("bad-inputs");
    let run = train(&dir, TINY);
    let images = dir.join("images");
    std::fs::create_dir_all(images.join("sub")).unwrap();
    digit_png(&images.join("a.png"));
    digit_png(&images.join("sub/b.png"));
    std::fs::write(images.join("broken.png"), b"\x89PNG\r\n\x1a\nnot really").unwrap();
    std::fs::write(images.join("notes.txt"), b"ignored: not an image name").unwrap();
    let missing = dir.join("missing.png");
    let o = nabla(&["predict", run.to_str().unwrap(), images.to_str().unwrap(), missing.to_str().unwrap(), "--quiet"]);
    let (stdout, stderr) = text(&o);
    assert!(!o.status.success(), "a failed input gives a failing exit");
    assert!(stderr.contains("broken.png") && stderr.contains("cannot decode"), "{stderr}");
    assert!(stderr.contains("missing.png"), "{stderr}");
    assert!(stdout.contains("a.png |") && stdout.contains("sub/b.png |"), "{stdout}");
    assert!(!stdout.contains("notes.txt"));
    assert!(stderr.contains("predicted 2, failed 2"), "{stderr}");
    // JSON names the failure too.
    let o = nabla(&["predict", run.to_str().unwrap(), images.join("broken.png").to_str().unwrap(), "--json"]);
    let line: serde_json::Value = serde_json::from_str(text(&o).0.lines().next().unwrap()).unwrap();
    assert!(line["error"].as_str().unwrap().contains("cannot decode"), "{line}");
    // An IDX file of another size is refused whole, by name.
    let idx = dir.join("small-idx3-ubyte");
    let mut bytes = vec![0, 0, 8, 3, 0, 0, 0, 1, 0, 0, 0, 5, 0, 0, 0, 5];
    bytes.extend([7u8; 25]);
    std::fs::write(&idx, bytes).unwrap();
    let o = nabla(&["predict", run.to_str().unwrap(), idx.to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(text(&o).1.contains("5 x 5 gray images; the model takes 1 channel(s) of 28 x 28"), "{}", text(&o).1);
    // Flags out of range.
    for bad in [["--top", "0"], ["--batch", "-3"], ["--top", "lots"]] {
        let o = nabla(&["predict", run.to_str().unwrap(), images.to_str().unwrap(), bad[0], bad[1]]);
        assert!(!o.status.success() && text(&o).1.contains(bad[0]), "{bad:?}: {}", text(&o).1);
    }
}

#[test]
fn run_folders_that_do_not_hold_together_are_refused() {
    let dir = temp("folders");
    let run = train(&dir, TINY);
    let png = dir.join("x.png");
    digit_png(&png);
    let predict = |run: &Path| {
        let o = nabla(&["predict", run.to_str().unwrap(), png.to_str().unwrap()]);
        assert!(!o.status.success());
        text(&o).1
    };
    let copy = |name: &str| {
        let to = dir.join(name);
        std::fs::create_dir_all(&to).unwrap();
        for f in std::fs::read_dir(&run).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, to.join(f.file_name().unwrap())).unwrap();
        }
        to
    };
    // A folder from before run folders carried their model.
    let old = copy("old");
    std::fs::remove_file(old.join("model.json")).unwrap();
    assert!(predict(&old).contains("model.json: not found"), "{}", predict(&old));
    // Weights replaced since the run.
    let swapped = copy("swapped");
    let w = swapped.join("weights.safetensors");
    let mut bytes = std::fs::read(&w).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&w, bytes).unwrap();
    assert!(predict(&swapped).contains("SHA-256 is not the one model.json records"), "{}", predict(&swapped));
    // A manifest that points out of the folder, or names too few classes.
    let hostile = copy("hostile");
    let m = std::fs::read_to_string(hostile.join("model.json")).unwrap();
    std::fs::write(hostile.join("model.json"), m.replace("\"weights.safetensors\"", "\"../../etc/passwd\"")).unwrap();
    assert!(
        predict(&hostile).contains("weights.file: '../../etc/passwd' must be a plain file name"),
        "{}",
        predict(&hostile)
    );
    std::fs::write(hostile.join("model.json"), m.replace("\"9\"\n", "\"8\"\n")).unwrap();
    assert!(predict(&hostile).contains("classes[9]: '8' is named twice"), "{}", predict(&hostile));
    std::fs::write(hostile.join("model.json"), m.replace("    \"8\",\n", "")).unwrap();
    assert!(predict(&hostile).contains("classes: 9 names, but"), "{}", predict(&hostile));
    std::fs::write(hostile.join("model.json"), m.replace("\"side\": 28", "\"side\": 32")).unwrap();
    assert!(predict(&hostile).contains("input: 1 channels of 32 x 32"), "{}", predict(&hostile));
    std::fs::write(hostile.join("model.json"), "{\"format\": ").unwrap();
    assert!(predict(&hostile).contains("model.json: EOF"), "{}", predict(&hostile));
    // Another model's pipeline beside these weights.
    let other = copy("other");
    let p = std::fs::read_to_string(other.join("pipeline.toml")).unwrap();
    std::fs::write(
        other.join("pipeline.toml"),
        p.replace("kind = \"linear\"", "kind = \"mlp\"").replace("hidden = []", "hidden = [8]"),
    )
    .unwrap();
    let e = predict(&other);
    assert!(e.contains("weights.safetensors") && e.contains("missing tensor 'fc2.weight'"), "{e}");
    // Not a folder at all.
    assert!(predict(&png).contains("not a folder"));
}

#[test]
fn a_backbone_run_needs_the_backbone_weights_it_was_trained_with() {
    let dir = temp("backbone");
    // First a small CNN, whose first convolution then serves as a backbone.
    let cnn = train(
        &dir,
        &TINY.replace(
            "kind = \"linear\"",
            "kind = \"sequential\"\n[[model.layers]]\ntype = \"conv2d\"\nout = 2\nkernel = 5\nstride = 3\n\
             [[model.layers]]\ntype = \"relu\"\n[[model.layers]]\ntype = \"flatten\"\n[[model.layers]]\ntype = \"linear\"\nout = 10",
        ),
    );
    let weights = dir.join("backbone.safetensors");
    std::fs::rename(cnn.join("weights.safetensors"), &weights).unwrap();
    let headed = dir.join("headed");
    std::fs::create_dir_all(&headed).unwrap();
    let run = train(
        &headed,
        &format!(
            "{TINY}\n[backbone]\nkind = \"sequential\"\nweights = \"{}\"\n[[backbone.layers]]\ntype = \"conv2d\"\nout = 2\n\
             kernel = 5\nstride = 3\n[[backbone.layers]]\ntype = \"relu\"\n",
            weights.display()
        ),
    );
    let png = dir.join("x.png");
    digit_png(&png);
    let o = nabla(&["predict", run.to_str().unwrap(), png.to_str().unwrap(), "--json"]);
    assert!(o.status.success(), "{}", text(&o).1);
    let o = nabla(&["eval", run.to_str().unwrap(), "--json", "--out", dir.join("e").to_str().unwrap()]);
    assert!(o.status.success(), "{}", text(&o).1);
    let e: serde_json::Value = serde_json::from_str(&text(&o).0).unwrap();
    assert_eq!(e["accuracy"], json(&run.join("metrics.json"))["test_accuracy"]);
    // Other weights in their place: refused, not silently other features.
    let mut p = nabla::weights::parse(&std::fs::read(&weights).unwrap()).unwrap();
    p.get_mut("layers.0.weight").unwrap().data_mut()[0] += 0.5;
    std::fs::write(&weights, p.to_safetensors()).unwrap();
    let o = nabla(&["predict", run.to_str().unwrap(), png.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).1.contains("not the weights the run used"), "{}", text(&o).1);
    // And none at all.
    std::fs::remove_file(&weights).unwrap();
    let o = nabla(&["predict", run.to_str().unwrap(), png.to_str().unwrap()]);
    assert!(!o.status.success() && text(&o).1.contains("not found"), "{}", text(&o).1);
}
