//! Checkpoint and resume: a run killed (SIGKILL) part-way and continued with
//! `--resume` ends with the same weights and learning curve, bit for bit, as
//! a run that was never interrupted; the killed run leaves no output folder,
//! and the checkpoints go away once the run has finished.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

mod common;
use common::run as nabla;

fn temp(name: &str) -> PathBuf {
    common::temp("resume", name)
}

/// A digest of the saved weights, the learning curve and the final
/// accuracies (what must not depend on the kill).
fn results(out: &Path, weights: &str) -> (String, serde_json::Value) {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    let keep = ["learning_curve", "epochs", "train_accuracy", "validation_accuracy", "test_accuracy", "final_loss"];
    let picked = keep.iter().map(|k| (k.to_string(), m[k].clone())).collect::<serde_json::Map<_, _>>();
    let weights = std::fs::read(out.join(weights)).unwrap();
    let digest = sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(&weights));
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    (hex, serde_json::Value::Object(picked))
}

/// Run the pipeline `text` straight through, then run it again, kill it once
/// it has checkpointed, resume it, and compare.
fn killed_and_resumed_matches_straight(name: &str, text: &str) {
    let dir = temp(name);
    let file = dir.join("p.toml");
    std::fs::write(&file, text).unwrap();
    killed_and_resumed(name, &dir, &file, &[], "weights.safetensors");
}

fn killed_and_resumed(name: &str, dir: &Path, file: &Path, sets: &[&str], weights: &str) {
    let nabla = |file: &Path, out: &Path, extra: &[&str]| {
        let mut c = nabla(file, out, sets);
        c.args(extra);
        c
    };
    let straight = dir.join("straight");
    let o = nabla(file, &straight, &[]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(!dir.join(".straight.checkpoints").exists(), "checkpoints left after a finished run");

    let out = dir.join("out");
    let checkpoints = dir.join(".out.checkpoints");
    let mut child = nabla(file, &out, &[]).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    // A finished checkpoint (not one still being written under a temporary name).
    let finished = |d: &Path| {
        std::fs::read_dir(d)
            .map(|mut e| e.any(|f| f.unwrap().path().extension().is_some_and(|x| x == "safetensors")))
            .unwrap_or(false)
    };
    while !finished(&checkpoints) {
        assert!(child.try_wait().unwrap().is_none(), "{name}: the run ended before its first checkpoint");
        assert!(started.elapsed() < Duration::from_secs(120), "{name}: no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!out.exists(), "{name}: the killed run wrote its output folder");

    let o = nabla(file, &out, &["--resume"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("resuming from the checkpoint at "), "{name}: did not resume: {err}");
    // "train: resuming from the checkpoint at step S of T": part-way, 0 < S < T.
    if let Some(at) = err.split("resuming from the checkpoint at step ").nth(1) {
        let mut nums = at.split_whitespace().filter_map(|w| w.parse::<usize>().ok());
        let (step, total) = (nums.next().unwrap(), nums.next().unwrap());
        assert!(step > 0 && step < total, "{name}: resumed at step {step} of {total}: not part-way");
    }
    assert_eq!(results(&out, weights), results(&straight, weights), "{name}: the resumed run differs");
    assert!(!checkpoints.exists(), "{name}: checkpoints left after the resumed run finished");
    let left: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(!left.iter().any(|n| n.to_string_lossy().contains(".partial-")), "{name}: staging left: {left:?}");
    let _ = std::fs::remove_dir_all(dir);
}

const MNIST_SGD: &str = r#"
version = 1
name = "resume"
seed = 3

[data]
dataset = "mnist"
train_limit = 20000

[model]
kind = "mlp"
hidden = [64]
activation = "relu"

[train]
optimizer = "sgd"
lr = 1e-3
momentum = 0.9
iterations = 600
batch_size = 500
eval_every = 40
checkpoint_every = 25
"#;

#[test]
fn sgd_mini_batches_resume_bit_for_bit() {
    killed_and_resumed_matches_straight("sgd", MNIST_SGD);
}

#[test]
fn adam_epochs_of_shuffled_batches_resume_bit_for_bit() {
    let text = MNIST_SGD
        .replace("optimizer = \"sgd\"", "optimizer = \"adam\"")
        .replace(
            "iterations = 600\nbatch_size = 500\neval_every = 40",
            "epochs = 4\nbatches_per_epoch = 6\nsteps_per_batch = 25",
        )
        .replace("momentum = 0.9\n", "")
        .replace("checkpoint_every = 25", "checkpoint_every = 7");
    killed_and_resumed_matches_straight("adam", &text);
}

/// The whole AlexNet (convolutions, dropout's random stream, Adam) resumes
/// mid-epoch too: 2 epochs of 2 batches, killed after its first checkpoint.
#[test]
fn alexnet_finetune_resumes_bit_for_bit() {
    if nabla::data::shared_data_or_skip("facescrub/cropped227", "alexnet_finetune_resumes_bit_for_bit").is_none() {
        return;
    }
    let dir = temp("finetune");
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/part10_finetune.toml");
    let sets = [
        "--set",
        "train.epochs=2",
        "--set",
        "train.batch_size=8",
        "--set",
        "data.train_limit=16",
        "--set",
        "train.save=alexnet.safetensors",
        "--set",
        "train.checkpoint_every=1",
    ];
    killed_and_resumed("finetune", &dir, &file, &sets, "alexnet.safetensors");
}
