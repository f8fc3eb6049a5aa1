//! Runs under `mpirun -np 2` on the loopback (the `mpi` feature; CI installs
//! Open MPI): shared sweeps, trials and cross-validation give the metrics of
//! a single-process run; data-parallel training ends within a stated
//! tolerance of the single-process weights, resumes from its checkpoints,
//! and a killed rank ends the job within seconds.
#![cfg(feature = "mpi")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
/// `nabla FILE --quiet --out OUT`, in one process.
use common::run as single;

fn temp(name: &str) -> PathBuf {
    common::temp("mpi", name)
}

/// The same under `mpirun -np N`.
fn mpirun(n: usize, file: &Path, out: &Path, extra: &[&str]) -> Command {
    let mut c = Command::new("mpirun");
    c.args(["--allow-run-as-root", "--oversubscribe", "-np", &n.to_string(), env!("CARGO_BIN_EXE_nabla")])
        .arg(file)
        .args(["--quiet", "--out", out.to_str().unwrap()])
        .args(extra)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn ok(o: Output) -> String {
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "failed: {err}\n{}", String::from_utf8_lossy(&o.stdout));
    err
}

/// metrics.json without what measures time, or the threads that ran (each rank may have fewer).
fn metrics(out: &Path) -> serde_json::Value {
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("metrics.json")).unwrap()).unwrap();
    m.as_object_mut().unwrap().retain(|k, _| !k.ends_with("_seconds") && k != "threads");
    m
}

/// Every f32 of a safetensors file, by tensor name.
fn weights(path: &Path) -> Vec<(String, Vec<f32>)> {
    let mut p = nabla::nn::Params::new();
    let bytes = std::fs::read(path).unwrap();
    for (name, t) in nabla::weights::parse(&bytes).unwrap().iter() {
        p.insert(name, t.clone());
    }
    p.iter().map(|(n, t)| (n.to_string(), t.data().to_vec())).collect()
}

const MNIST: &str = r#"
version = 1
name = "mpi"
seed = 3

[data]
dataset = "mnist"
train_limit = 2000

[model]
kind = "mlp"
hidden = [32]
activation = "relu"

[train]
optimizer = "sgd"
lr = 1e-2
momentum = 0.9
loss = "mean"
iterations = 40
batch_size = 64
eval_every = 20
"#;

#[test]
fn shared_sweep_trials_and_crossval_equal_one_process() {
    let dir = temp("sweep");
    let file = dir.join("p.toml");
    let text = format!(
        "{MNIST}\n[crossval]\nseeds = [0, 1, 2]\n\n[sweep]\nkey = \"train.lr\"\nvalues = [1e-3, 3e-3, 1e-2]\n\n\
         [[trials]]\nname = \"as is\"\nset = {{}}\n\n[[trials]]\nname = \"wider\"\nset = {{ \"model.hidden\" = [48] }}\n"
    );
    std::fs::write(&file, text).unwrap();
    let (one, two) = (dir.join("one"), dir.join("two"));
    ok(single(&file, &one, &[]).output().unwrap());
    let err = ok(mpirun(2, &file, &two, &[]).output().unwrap());
    assert_eq!(err.matches("running ").count(), 1, "only rank 0 prints: {err}");
    let m = metrics(&two);
    assert_eq!(m["sweep"]["results"].as_array().unwrap().len(), 3);
    assert_eq!(m["trials"].as_array().unwrap().len(), 2);
    assert_eq!(m, metrics(&one), "the shared run's metrics differ from one process's");
    let read = |d: &Path| std::fs::read(d.join("weights.safetensors")).unwrap();
    assert_eq!(read(&one), read(&two));
    // Rank 1 wrote nothing: no second output or staging folder.
    let mut left: Vec<String> =
        std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    left.sort();
    assert_eq!(left, ["one", "p.toml", "two"]);
    let _ = std::fs::remove_dir_all(dir);
}

/// Largest |a - b| over every weight, and the largest |a|.
fn gap(a: &[(String, Vec<f32>)], b: &[(String, Vec<f32>)]) -> (f32, f32) {
    assert_eq!(a.iter().map(|t| &t.0).collect::<Vec<_>>(), b.iter().map(|t| &t.0).collect::<Vec<_>>());
    let mut worst = (0.0f32, 0.0f32);
    for ((_, x), (_, y)) in a.iter().zip(b) {
        assert_eq!(x.len(), y.len());
        for (u, v) in x.iter().zip(y) {
            worst = (worst.0.max((u - v).abs()), worst.1.max(u.abs()));
        }
    }
    worst
}

/// The test pipeline with `edits` (from, to) applied to its text.
fn edited(edits: &[(&str, &str)]) -> String {
    edits.iter().fold(MNIST.to_string(), |t, (from, to)| {
        assert!(t.contains(from), "no '{from}' to edit");
        t.replace(from, to)
    })
}

/// Data-parallel training over `n` ranks against one process on the same
/// global batches. The only difference is the order of the additions over a
/// batch's rows (each rank sums its slice, then the slices are added in rank
/// order): a few units in the last place of a gradient entry, carried
/// through a few dozen updates. The tolerance, 1e-5 of the largest weight,
/// is ~100 times the gap seen (~1e-7 of it) and far below what one example
/// more or less in a batch moves a weight.
fn data_parallel_matches(name: &str, n: usize, edits: &[(&str, &str)]) {
    let dir = temp(name);
    let file = dir.join("p.toml");
    std::fs::write(&file, edited(edits).replace("[train]\n", "[train]\nparallel = \"data\"\n")).unwrap();
    let (one, many) = (dir.join("one"), dir.join("many"));
    ok(single(&file, &one, &[]).output().unwrap());
    ok(mpirun(n, &file, &many, &[]).output().unwrap());
    let (a, b) = (weights(&one.join("weights.safetensors")), weights(&many.join("weights.safetensors")));
    let (diff, largest) = gap(&a, &b);
    assert!(diff <= 1e-5 * largest, "{name}: weights differ by {diff:e} (largest weight {largest:e})");
    let loss = |d: &Path| metrics(d)["final_loss"].as_f64().unwrap();
    let (la, lb) = (loss(&one), loss(&many));
    assert!((la - lb).abs() <= 1e-5 * la.abs(), "{name}: final loss {la} vs {lb}");
    // The ranks classify shares of each split and gather them: a share out
    // of place would not give (nearly) the single process's accuracies.
    for key in ["train_accuracy", "validation_accuracy", "test_accuracy"] {
        let acc = |d: &Path| metrics(d)[key].as_f64().unwrap_or_else(|| panic!("{name}: no {key}"));
        let (aa, ab) = (acc(&one), acc(&many));
        assert!((aa - ab).abs() <= 0.002, "{name}: {key} {aa} vs {ab}");
    }
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn data_parallel_sgd_mean_loss_matches_one_process() {
    data_parallel_matches("sgd", 2, &[]);
}

#[test]
fn data_parallel_uneven_slices_and_summed_loss_over_three_ranks() {
    // 63 rows as 21 + 21 + 21 would be even: 62 rows split 20 + 21 + 21.
    let edits =
        [("batch_size = 64", "batch_size = 62"), ("loss = \"mean\"", "loss = \"sum\""), ("lr = 1e-2", "lr = 2e-4")];
    data_parallel_matches("uneven", 3, &edits);
}

#[test]
fn data_parallel_adam_epochs_schedule_matches_one_process() {
    let edits = [
        ("optimizer = \"sgd\"", "optimizer = \"adam\""),
        ("lr = 1e-2", "lr = 1e-3"),
        ("momentum = 0.9\n", ""),
        ("iterations = 40\nbatch_size = 64", "epochs = 2\nbatches_per_epoch = 8\nsteps_per_batch = 3"),
    ];
    data_parallel_matches("adam", 2, &edits);
}

/// A data-parallel run with checkpoints: 2 ranks, long enough to be caught
/// part-way.
fn long_run(dir: &Path, iterations: usize) -> PathBuf {
    let file = dir.join("p.toml");
    let text = edited(&[
        ("train_limit = 2000", "train_limit = 20000"),
        ("iterations = 40", &format!("iterations = {iterations}")),
        ("eval_every = 20", "eval_every = 50\ncheckpoint_every = 5"),
    ])
    .replace("[train]\n", "[train]\nparallel = \"data\"\n");
    std::fs::write(&file, text).unwrap();
    file
}

/// The processes whose parent is `parent` and whose environment says they
/// are rank `rank` of an Open MPI job.
fn rank_pids(parent: u32, rank: usize) -> Vec<i32> {
    let want = format!("OMPI_COMM_WORLD_RANK={rank}");
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let status = std::fs::read_to_string(e.path().join("status")).unwrap_or_default();
        let ppid = status.lines().find_map(|l| l.strip_prefix("PPid:")).map(|p| p.trim().parse::<u32>().unwrap_or(0));
        let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
        if ppid == Some(parent) && env.split(|&b| b == 0).any(|v| v == want.as_bytes()) {
            found.push(pid);
        }
    }
    found
}

/// Wait for a checkpoint file in `d` (not one still being written).
fn wait_for_checkpoint(child: &mut std::process::Child, d: &Path) {
    let started = Instant::now();
    let finished = |d: &Path| {
        std::fs::read_dir(d)
            .map(|mut e| e.any(|f| f.unwrap().path().extension().is_some_and(|x| x == "safetensors")))
            .unwrap_or(false)
    };
    while !finished(d) {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first checkpoint");
        assert!(started.elapsed() < Duration::from_secs(120), "no checkpoint after 120 s");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn data_parallel_resumes_bit_for_bit() {
    let dir = temp("resume");
    // Long enough that the signal lands mid-run on a fast, idle machine too.
    let file = long_run(&dir, 1000);
    let straight = dir.join("straight");
    ok(mpirun(2, &file, &straight, &[]).output().unwrap());
    let out = dir.join("out");
    let mut child = mpirun(2, &file, &out, &[]).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    wait_for_checkpoint(&mut child, &dir.join(".out.checkpoints"));
    // mpirun passes SIGTERM on to its ranks.
    // SAFETY: a signal to the child this test started.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().unwrap();
    assert!(!out.exists(), "the interrupted run wrote its output folder");
    let err = ok(mpirun(2, &file, &out, &["--resume"]).output().unwrap());
    assert_eq!(err.matches("resuming from the checkpoint at step").count(), 1, "rank 0 alone says so: {err}");
    let read = |d: &Path| std::fs::read(d.join("weights.safetensors")).unwrap();
    assert!(read(&out) == read(&straight), "the resumed run's weights differ from the straight run's");
    assert_eq!(metrics(&out)["learning_curve"], metrics(&straight)["learning_curve"]);
    assert!(!dir.join(".out.checkpoints").exists(), "checkpoints left after the resumed run");
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn a_killed_rank_ends_the_job_within_seconds() {
    let dir = temp("kill");
    let file = long_run(&dir, 1_000_000);
    let out = dir.join("out");
    let mut child = mpirun(2, &file, &out, &[]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    // Training has started on both ranks once rank 0 has checkpointed.
    wait_for_checkpoint(&mut child, &dir.join(".out.checkpoints"));
    let victims = rank_pids(child.id(), 1);
    assert_eq!(victims.len(), 1, "rank 1 not found among mpirun's children");
    // SAFETY: a signal to a process of the job this test started.
    unsafe { libc::kill(victims[0], libc::SIGKILL) };
    let killed = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if killed.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("the job still runs 20 s after rank 1 was killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let waited = killed.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success(), "the job succeeded after a rank was killed");
    assert!(waited < Duration::from_secs(10), "the job took {waited:?} to end");
    assert!(err.contains("rank 1") || err.contains("signal 9"), "no clear error: {err}");
    assert!(rank_pids(child.id(), 0).is_empty(), "rank 0 outlived the job");
    assert!(!out.exists(), "a failed job wrote its output folder");
    let _ = std::fs::remove_dir_all(dir);
}

/// The dropout masks: each rank draws the whole batch's and keeps its rows.
#[test]
fn data_parallel_dropout_matches_one_process() {
    let dropout = "[model]\nkind = \"sequential\"\nlayers = [{ type = \"flatten\" }, { type = \"linear\", out = 32 }, \
                   { type = \"relu\" }, { type = \"dropout\", p = 0.5 }, { type = \"linear\", out = 10 }]\n";
    data_parallel_matches(
        "dropout",
        2,
        &[("[model]\nkind = \"mlp\"\nhidden = [32]\nactivation = \"relu\"\n", dropout)],
    );
}

#[test]
fn data_parallel_refuses_a_batch_smaller_than_the_ranks() {
    let dir = temp("refuse");
    let file = dir.join("p.toml");
    let text = edited(&[("batch_size = 64", "batch_size = 2")]).replace("[train]\n", "[train]\nparallel = \"data\"\n");
    std::fs::write(&file, text).unwrap();
    let o = mpirun(3, &file, &dir.join("out"), &[]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("p.toml: train: data-parallel step: a mini-batch of 2 examples cannot be split over 3 ranks"),
        "{err}"
    );
    assert!(!dir.join("out").exists());
    let _ = std::fs::remove_dir_all(dir);
}
