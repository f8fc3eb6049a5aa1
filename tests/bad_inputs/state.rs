//! Trusted state read back: checkpoints and feature caches that lie,
//! caches keyed on too little, `--resume` after a change of settings.

use super::*;
use serde_json::Value;

// ---------------------------------------------------------------- checkpoints

/// [`MNIST`] as a sweep of two runs that checkpoint every step: the first
/// finishes (its checkpoint stays), the second diverges and stops the run.
fn sweep_that_dies() -> String {
    let text = MNIST.replace("iterations = 2", "iterations = 3");
    assert!(text.contains("eval_every = 1\n"), "the MNIST template changed");
    text.replace(
        "eval_every = 1\n",
        "eval_every = 1\ncheckpoint_every = 1\n\n[sweep]\nkey = \"train.lr\"\nvalues = [1e-5, 1e38]\nselect = \"validation_accuracy\"\n",
    )
}

/// A case whose `.out.checkpoints` holds the finished first run's checkpoint;
/// returns its path.
fn checkpointed(name: &'static str) -> (Case, PathBuf) {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(&sweep_that_dies());
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--quiet", "--out", case.dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("diverged"), "{name}: the set-up run did not die: {err}");
    let finished = std::fs::read_dir(case.dir.join(".out.checkpoints"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|x| x == "safetensors") && meta(p).0["looped"]["iteration"] == 3)
        .expect("the finished run's checkpoint");
    (case, finished)
}

/// A checkpoint's safetensors header and, parsed, the loop state in its metadata.
fn meta(path: &Path) -> (Value, Value, Vec<u8>) {
    let bytes = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let state = serde_json::from_str(header["__metadata__"]["nabla_checkpoint"].as_str().unwrap()).unwrap();
    (state, header, bytes[8 + n..].to_vec())
}

/// Rewrite the checkpoint at `path`: `edit` gets its state, header and tensor bytes.
fn forge(path: &Path, edit: impl Fn(&mut Value, &mut Value, &mut Vec<u8>)) {
    let (mut state, mut header, mut data) = meta(path);
    edit(&mut state, &mut header, &mut data);
    header["__metadata__"]["nabla_checkpoint"] = Value::String(state.to_string());
    let mut json = header.to_string().into_bytes();
    json.resize(json.len().div_ceil(8) * 8, b' ');
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend(json);
    out.extend(data);
    std::fs::write(path, out).unwrap();
}

#[test]
fn checkpoints_that_lie_are_refused_naming_the_file() {
    let lie = |name: &'static str, edit: fn(&mut Value, &mut Value, &mut Vec<u8>), expect: &[&str]| {
        let (case, file) = checkpointed(name);
        forge(&file, edit);
        let named = file.file_name().unwrap().to_str().unwrap().to_string();
        case.fails(&["--resume"], &named, expect);
    };
    lie(
        "order-index-past-the-data",
        |s, _, _| s["looped"]["order"][0] = 1_000_000_000.into(),
        &["entry 0 is 1000000000"],
    );
    lie(
        "order-index-past-usize",
        |s, _, _| s["looped"]["order"][5] = u64::MAX.into(),
        &["entry 5 is 18446744073709551615"],
    );
    lie(
        "order-too-short",
        |s, _, _| _ = s["looped"]["order"].as_array_mut().unwrap().pop(),
        &["the data order has 99 entries for 100"],
    );
    lie("order-repeats", |s, _, _| s["looped"]["order"][1] = s["looped"]["order"][0].clone(), &["repeats example"]);
    lie("order-not-numbers", |s, _, _| s["looped"]["order"][1] = (-1).into(), &["unreadable checkpoint state"]);
    lie(
        "iteration-past-the-end",
        |s, _, _| s["looped"]["iteration"] = 1_000_000.into(),
        &["iteration 1000000 is not within 1..=3"],
    );
    lie("iteration-zero", |s, _, _| s["looped"]["iteration"] = 0.into(), &["iteration 0 is not within"]);
    lie(
        "cursor-past-the-data",
        |s, _, _| s["looped"]["cursor"] = u64::MAX.into(),
        &["cursor 18446744073709551615 is past"],
    );
    lie(
        "empty-curve",
        |s, _, _| s["looped"]["curve"] = Value::Array(vec![]),
        &["loop state: the curve's iterations (starting [], 0 points) are not those a run recording every 1 steps has up to step 3"],
    );
    // The numbers of the learning curve are read back as the report will show them.
    lie(
        "curve-loss-negative",
        |s, _, _| s["looped"]["curve"][2]["loss"] = (-1e30).into(),
        &["loop state: the curve's loss at iteration 2 is -1e30; a loss is a finite f32 of at least 0"],
    );
    lie(
        "curve-loss-null-after-a-step",
        |s, _, _| s["looped"]["curve"][1]["loss"] = Value::Null,
        &["loop state: the curve's loss at iteration 1 is NaN; a loss is a finite f32 of at least 0"],
    );
    lie(
        "curve-loss-huge",
        |s, _, _| s["looped"]["curve"][3]["loss"] = 1e308.into(),
        &["loop state: the curve's loss at iteration 3 is 1e308; a loss is a finite f32 of at least 0"],
    );
    lie(
        "curve-loss-before-the-first-step",
        |s, _, _| s["looped"]["curve"][0]["loss"] = 0.5.into(),
        &["loop state: the curve's loss before the first step is 5e-1; there is none"],
    );
    lie(
        "curve-point-missing",
        |s, _, _| _ = s["looped"]["curve"].as_array_mut().unwrap().remove(2),
        &["the curve's iterations (starting [0, 1, 3], 3 points) are not those a run recording every 1 steps"],
    );
    lie(
        "curve-point-added",
        |s, _, _| {
            let extra = s["looped"]["curve"][3].clone();
            s["looped"]["curve"].as_array_mut().unwrap().push(extra);
        },
        &["the curve's iterations (starting [0, 1, 2, 3, 3], 5 points) are not those"],
    );
    lie("curve-accuracy-not-a-fraction", |s, _, _| s["looped"]["curve"][1]["train"] = 7.5.into(), &["not fractions"]);
    lie("rng-spare-not-normal", |s, _, _| s["looped"]["rng"]["spare_normal"] = 1e300.into(), &["rng.spare_normal"]);
    lie(
        "optim-steps-huge",
        |s, _, _| s["optim_steps"] = u64::MAX.into(),
        &["optim_steps 18446744073709551615 is out of range"],
    );
    lie("other-format", |s, _, _| s["format"] = 9.into(), &["checkpoint format 9 is not 1"]);
    lie("state-not-an-object", |s, _, _| *s = Value::String("x".into()), &["unreadable checkpoint state"]);
    lie(
        "tensor-of-another-shape",
        |_, h, _| h["param/fc1.weight"]["shape"] = serde_json::json!([784, 10]),
        &["'param/fc1.weight' has shape [784, 10], expected [10, 784]"],
    );
    lie(
        "tensor-renamed",
        |_, h, _| {
            let t = h.as_object_mut().unwrap().remove("param/fc1.bias").unwrap();
            h["param/fc2.bias"] = t;
        },
        &["missing tensor 'param/fc1.bias'", "unexpected tensor 'param/fc2.bias'"],
    );
    lie(
        "tensor-of-nan",
        |_, h, d| {
            let at = h["param/fc1.bias"]["data_offsets"][0].as_u64().unwrap() as usize;
            d[at..at + 4].copy_from_slice(&f32::NAN.to_le_bytes());
        },
        &["tensor 'param/fc1.bias' holds NaN"],
    );
    lie(
        "tensor-of-another-name",
        |_, h, _| {
            let t = h.as_object_mut().unwrap().remove("param/fc1.bias").unwrap();
            h["stray/fc1.bias"] = t;
        },
        &["unexpected tensor 'stray/fc1.bias'"],
    );
    lie("header-cut", |_, _, d| d.truncate(10), &["not a checkpoint"]);
}

#[test]
fn a_checkpoint_that_is_no_file_is_refused() {
    let (case, file) = checkpointed("checkpoint-is-a-fifo");
    std::fs::remove_file(&file).unwrap();
    assert!(Command::new("mkfifo").arg(&file).status().unwrap().success());
    let named = file.file_name().unwrap().to_str().unwrap().to_string();
    case.fails(&["--resume"], &named, &["is a FIFO, not a regular file"]);

    let (case, file) = checkpointed("checkpoint-is-a-folder");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let named = file.file_name().unwrap().to_str().unwrap().to_string();
    case.fails(&["--resume"], &named, &["is a folder"]);
}

/// A 3 GB checkpoint (sparse: it costs no disk) is refused before it is read:
/// the run stays under a 1.5 GB address-space limit.
#[test]
fn a_huge_checkpoint_is_refused_before_it_is_read() {
    let (case, file) = checkpointed("checkpoint-huge");
    std::fs::OpenOptions::new().write(true).open(&file).unwrap().set_len(3 << 30).unwrap();
    let o = Command::new("prlimit")
        .args(["--as=1500000000", "--", env!("CARGO_BIN_EXE_nabla"), &case.input("bad.toml"), "--quiet", "--resume"])
        .args(["--out", case.dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains(file.file_name().unwrap().to_str().unwrap()) && err.contains("more than the"), "{err}");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn resume_with_other_settings_is_refused() {
    let (case, _) = checkpointed("resume-other-settings");
    case.fails(&["--resume", "--set", "train.iterations=4"], "run.json", &["other settings", "without --resume"]);

    let (case, file) = checkpointed("resume-without-manifest");
    std::fs::remove_file(file.with_file_name("run.json")).unwrap();
    case.fails(&["--resume"], ".out.checkpoints", &["without a run.json"]);

    let (case, file) = checkpointed("resume-manifest-garbage");
    std::fs::write(file.with_file_name("run.json"), "{\"format\": [").unwrap();
    case.fails(&["--resume"], "run.json", &["not a checkpoint manifest"]);
}

/// The same checkpoint, rewritten untouched, resumes (the forged cases above
/// fail for what was forged, not because resuming is broken); the sweep then
/// goes on to its second run, which diverged.
#[test]
fn an_honest_checkpoint_resumes() {
    let (case, file) = checkpointed("resume-honest");
    forge(&file, |_, _, _| {});
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--resume", "--out", case.dir.join("out").to_str().unwrap()])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("resuming from the checkpoint at step 3 of 3") && !err.contains("panicked"), "{err}");
    assert!(err.contains("train.lr = 1e38") || err.contains("train_lr___1000"), "did not reach the second run: {err}");
    let _ = std::fs::remove_dir_all(&case.dir);
}

// ---------------------------------------------------------------- feature caches

/// AlexNet's feature tensors, zero-filled (features of zeros are zeros).
fn alexnet_features() -> Vec<u8> {
    safetensors(&[
        ("features.0.weight", &[64, 3, 11, 11]),
        ("features.0.bias", &[64]),
        ("features.3.weight", &[192, 64, 5, 5]),
        ("features.3.bias", &[192]),
        ("features.6.weight", &[384, 192, 3, 3]),
        ("features.6.bias", &[384]),
        ("features.8.weight", &[256, 384, 3, 3]),
        ("features.8.bias", &[256]),
        ("features.10.weight", &[256, 256, 3, 3]),
        ("features.10.bias", &[256]),
    ])
}

/// A backbone case whose cache folder holds the features a first run wrote;
/// returns the cache file.
fn cached(name: &'static str) -> (Case, PathBuf) {
    let case = Case::new(name);
    faces(&case);
    case.write("alexnet.pth", alexnet_features()).pipeline(&backbone());
    let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--quiet", "--out", case.dir.join("first").to_str().unwrap()])
        .output()
        .unwrap();
    assert!(o.status.success(), "{name}: {}", String::from_utf8_lossy(&o.stderr));
    std::fs::remove_dir_all(case.dir.join("first")).unwrap();
    let file = std::fs::read_dir(case.input("cache")).unwrap().next().unwrap().unwrap().path();
    (case, file)
}

#[test]
fn feature_caches_that_lie_are_refused_naming_the_file() {
    let lie = |name: &'static str, bytes: Vec<u8>, expect: &[&str]| {
        let (case, file) = cached(name);
        std::fs::write(&file, bytes).unwrap();
        let named = file.file_name().unwrap().to_str().unwrap().to_string();
        case.fails(&[], &named, expect);
    };
    // The faces: 2 actors x (2 train, 1 test, 1 validation).
    let (tr, va, te): (&[usize], &[usize], &[usize]) = (&[4, 9216], &[2, 9216], &[2, 9216]);
    lie(
        "cache-of-the-wrong-shape",
        safetensors(&[("train", &[3, 9216]), ("validation", va), ("test", te)]),
        &["tensor 'train' has shape [3, 9216], expected [4, 9216]"],
    );
    lie(
        "cache-of-the-wrong-width",
        safetensors(&[("train", &[4, 10]), ("validation", va), ("test", te)]),
        &["shape [4, 10]"],
    );
    lie("cache-missing-a-split", safetensors(&[("train", tr), ("validation", va)]), &["no tensor 'test'"]);
    lie(
        "cache-with-a-stray-tensor",
        safetensors(&[("train", tr), ("validation", va), ("test", te), ("extra", &[1])]),
        &["unexpected tensor 'extra'"],
    );
    let mut nan = safetensors(&[("train", tr), ("validation", va), ("test", te)]);
    let at = nan.len() - 4;
    nan[at..].copy_from_slice(&f32::INFINITY.to_le_bytes());
    lie("cache-holding-inf", nan, &["holds inf"]);
    lie("cache-cut", b"\x10\x00\x00\x00\x00\x00\x00\x00{".to_vec(), &["feature cache"]);
    let mut big = safetensors(&[("train", tr), ("validation", va), ("test", te)]);
    big.resize(big.len() + (2 << 20), 0);
    lie("cache-too-large", big, &["more than the"]);

    let (case, file) = cached("cache-is-a-folder");
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    let named = file.file_name().unwrap().to_str().unwrap().to_string();
    case.fails(&[], &named, &["is a folder"]);
}

#[test]
fn backbone_weights_that_are_no_file_do_not_fall_back_to_random() {
    let case = Case::new("backbone-weights-fifo");
    faces(&case);
    let text = backbone().replace("if_missing = \"error\"", "if_missing = \"random\"");
    case.pipeline(&text);
    assert!(Command::new("mkfifo").arg(case.input("alexnet.pth")).status().unwrap().success());
    case.fails(&[], "alexnet.pth", &["is a FIFO"]);

    let case = Case::new("backbone-weights-nan");
    faces(&case);
    let mut w = alexnet_features();
    let at = w.len() - 4;
    w[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    case.write("alexnet.pth", w).pipeline(&backbone());
    case.fails(&[], "alexnet.pth", &["holds NaN"]);
}

// ---------------------------------------------------------------- the in-process data cache

/// Two pipelines run by one `nabla` on the same `[data]`: one through the
/// backbone, one on the raw images. Each must get its own data, in either
/// order, and the backbone one must say where its weights came from.
#[test]
fn one_process_keeps_backbone_features_and_images_apart() {
    let case = Case::new("cache-features-vs-pixels");
    faces(&case);
    case.write("alexnet.pth", alexnet_features());
    let head = backbone().replace("name = \"bad\"", "name = \"head\"");
    let finetune = FACES
        .replace("name = \"bad\"", "name = \"whole\"")
        .replace("size = 32\ncolor = \"gray\"", "size = 227\ncolor = \"rgb\"\nnormalize = \"mean_max_abs\"");
    let finetune = finetune[..finetune.find("[model]").unwrap()].to_string()
        + "[model]\nkind = \"alexnet\"\n[train]\noptimizer = \"sgd\"\nlr = 1e-4\nepochs = 1\nbatch_size = 4\n";
    let at_inputs = |text: &str| text.replace("{IN}", &case.input(""));
    case.write("head.toml", at_inputs(&head)).write("whole.toml", at_inputs(&finetune));
    for (order, name) in [(["head.toml", "whole.toml"], "a"), (["whole.toml", "head.toml"], "b")] {
        let cwd = case.dir.join(name);
        std::fs::create_dir_all(&cwd).unwrap();
        let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
            .args(order.map(|f| case.input(f)))
            .arg("--quiet")
            .current_dir(&cwd)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{order:?}: {err}");
        let m: Value =
            serde_json::from_str(&std::fs::read_to_string(cwd.join("resources/head/metrics.json")).unwrap()).unwrap();
        let w = m["weights"].as_str().unwrap_or_default();
        assert!(w.contains("alexnet.pth"), "{order:?}: the backbone's provenance is lost: {m}");
        assert!(cwd.join("resources/whole/metrics.json").is_file(), "{order:?}");
    }
    let _ = std::fs::remove_dir_all(&case.dir);
}
