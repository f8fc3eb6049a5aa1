//! `nabla check`'s memory estimate against what a run really holds: each
//! case is checked (`memory: about N MB at most, ...`), then run as a child
//! process whose peak resident size comes from `wait4` (the kernel's
//! `ru_maxrss`, nothing the program reports about itself). The estimate must
//! bound the peak from above, and stay within twice it: a budget that
//! refuses networks needing a tenth of what it claims (issue 32: 45.9 GB
//! for a CNN that peaks at 0.8 GB) is as wrong as one that lets a run abort.
//!
//! The committed MNIST pipelines and stress networks run in about a minute
//! on two cores (small step counts with `--set`; the peak does not depend on
//! how many steps a run takes). The faces pipelines need the shared data
//! (skipped, with a line on stderr, without it); the slow cases (whole
//! data sets through deep CNNs, AlexNet) are `#[ignore]`d:
//! `cargo test --release --test memory -- --ignored --nocapture` prints the
//! whole table.

mod common;

use common::{command, temp};
use std::path::{Path, PathBuf};

/// `nabla check FILE SETS...`'s estimate, in bytes.
fn estimate(file: &Path, sets: &[String]) -> f64 {
    let mut args = vec!["check".to_string(), file.to_str().unwrap().to_string()];
    args.extend(sets.iter().flat_map(|s| ["--set".to_string(), s.clone()]));
    let o = command(&args.iter().map(String::as_str).collect::<Vec<_>>()).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{}: check failed: {}", file.display(), String::from_utf8_lossy(&o.stderr));
    let line = out.lines().find(|l| l.starts_with("memory: about ")).unwrap_or_else(|| panic!("no estimate in {out}"));
    let mb: f64 = line["memory: about ".len()..].split(' ').next().unwrap().parse().unwrap();
    mb * 1e6
}

/// Run `nabla FILE --quiet --out OUT SETS...`; its peak resident size in
/// bytes, from `wait4`.
fn peak(file: &Path, sets: &[String], out: &Path) -> f64 {
    let log = out.with_extension("log");
    let mut c = common::run(file, out, &[]);
    c.args(sets.iter().flat_map(|s| ["--set", s.as_str()]))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    // Reaped by wait4 below, which also gives its resource usage.
    #[allow(clippy::zombie_processes)]
    let child = c.spawn().unwrap();
    let (mut status, mut usage) = (0, unsafe { std::mem::zeroed::<libc::rusage>() });
    // SAFETY: wait4 writes the status and the usage into the two locals.
    let pid = unsafe { libc::wait4(child.id() as libc::pid_t, &mut status, 0, &mut usage) };
    assert_eq!(pid, child.id() as libc::pid_t, "wait4: {}", std::io::Error::last_os_error());
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "{}: the run failed: {err}", file.display());
    usage.ru_maxrss as f64 * 1024.0
}

/// One case: a pipeline file and its `--set`s.
struct Case {
    name: &'static str,
    file: PathBuf,
    sets: Vec<String>,
}

fn case(name: &'static str, file: impl Into<PathBuf>, sets: &[&str]) -> Case {
    Case { name, file: file.into(), sets: sets.iter().map(|s| s.to_string()).collect() }
}

/// Check and run each case in turn, its output in `dir/<name>`; print the
/// table; fail unless every estimate lies in [peak, 2 peak].
fn measure(dir: &Path, cases: &[Case]) {
    let mut bad = Vec::new();
    eprintln!("| case | estimate (MB) | peak RSS (MB) | estimate / peak |\n| --- | ---: | ---: | ---: |");
    for c in cases {
        let file =
            if c.file.is_absolute() { c.file.clone() } else { Path::new(env!("CARGO_MANIFEST_DIR")).join(&c.file) };
        let e = estimate(&file, &c.sets);
        let p = peak(&file, &c.sets, &dir.join(c.name));
        eprintln!("| {} | {:.0} | {:.0} | {:.2} |", c.name, e / 1e6, p / 1e6, e / p);
        if !(e >= p && e <= 2.0 * p) {
            bad.push(format!("{}: estimate {:.0} MB, peak {:.0} MB", c.name, e / 1e6, p / 1e6));
        }
    }
    assert!(bad.is_empty(), "estimates outside [peak, 2 x peak]: {bad:?}");
}

/// A layer table.
fn layer(kind: &str, fields: &str) -> String {
    format!("[[model.layers]]\ntype = \"{kind}\"\n{fields}\n")
}

/// A stress network on MNIST, written to `dir`: `layers`, then `train`'s
/// settings (Adam unless they say otherwise) and `data`'s.
fn stress(dir: &Path, name: &str, layers: &str, train: &str, data: &str) -> PathBuf {
    let text = format!(
        "version = 1\nname = \"{name}\"\n[data]\ndataset = \"mnist\"\n{data}\n[model]\nkind = \"sequential\"\n{layers}\
         [train]\n{train}\n"
    );
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(&file, text).unwrap();
    file
}

const ADAM: &str = "optimizer = \"adam\"\nlr = 1e-3\nloss = \"mean\"\neval_every = 100";

/// Deep and wide networks, each stressing another part of the estimate.
fn stress_networks(dir: &Path) -> Vec<Case> {
    let head = layer("flatten", "") + &layer("linear", "out = 10");
    let conv16 = layer("conv2d", "out = 16\nkernel = 3\npadding = 1") + &layer("relu", "");
    vec![
        // 300 ReLUs: issue 32's 14 GB estimate (peak 0.27 GB).
        case(
            "300 ReLUs",
            stress(
                dir,
                "deep_relu",
                &(layer("flatten", "") + &layer("relu", "").repeat(300) + &layer("linear", "out = 10")),
                &format!("{ADAM}\niterations = 2\nbatch_size = 64"),
                "train_limit = 2000",
            ),
            &[],
        ),
        // A hidden layer of 8192: its weights and its 8192-image figure.
        case(
            "784-8192-10",
            stress(
                dir,
                "wide_mlp",
                &(layer("flatten", "") + &layer("linear", "out = 8192") + &layer("relu", "") + &layer("linear", "out = 10")),
                &format!("{ADAM}\niterations = 2\nbatch_size = 256"),
                "train_limit = 2000",
            ),
            &[],
        ),
        // A step over all 60000 images: the training tape's activations.
        case(
            "full batch, 1000 tanh",
            stress(
                dir,
                "full_batch",
                &(layer("flatten", "") + &layer("linear", "out = 1000") + &layer("tanh", "") + &layer("linear", "out = 10")),
                "optimizer = \"sgd\"\nlr = 1e-4\nmomentum = 0.9\nloss = \"sum\"\niterations = 1\nbatch_size = 0\neval_every = 100",
                "",
            ),
            &[],
        ),
        // 64 channels of 3 x 3: the Winograd path's tiles.
        case(
            "conv 64, Winograd",
            stress(
                dir,
                "wide_conv",
                &(layer("max_pool2d", "kernel = 2")
                    + &layer("conv2d", "out = 64\nkernel = 3\npadding = 1")
                    + &layer("relu", "")
                    + &layer("conv2d", "out = 64\nkernel = 3\npadding = 1")
                    + &layer("relu", "")
                    + &layer("max_pool2d", "kernel = 2")
                    + &head),
                &format!("{ADAM}\niterations = 2\nbatch_size = 128"),
                "train_limit = 1000",
            ),
            &[],
        ),
        // Every other layer type: tanh, sigmoid, both poolings, dropout, no bias.
        case(
            "tanh, sigmoid, pools, dropout",
            stress(
                dir,
                "mixed",
                &(layer("conv2d", "out = 8\nkernel = 5\npadding = 2")
                    + &layer("tanh", "")
                    + &layer("avg_pool2d", "kernel = 2")
                    + &layer("conv2d", "out = 16\nkernel = 5")
                    + &layer("sigmoid", "")
                    + &layer("max_pool2d", "kernel = 2")
                    + &layer("flatten", "")
                    + &layer("dropout", "p = 0.5")
                    + &layer("linear", "out = 200")
                    + &layer("relu", "")
                    + &layer("dropout", "p = 0.25")
                    + &layer("linear", "out = 10\nbias = false")),
                "optimizer = \"sgd\"\nlr = 1e-2\nloss = \"mean\"\nepochs = 1\nbatch_size = 500",
                "train_limit = 2000",
            ),
            &[],
        ),
        // Kept for the slow suite (see `slow_cases`).
        case(
            "30 convolutions of 16",
            stress(
                dir,
                "deep_cnn",
                &(layer("max_pool2d", "kernel = 2") + &conv16.repeat(30) + &head),
                &format!("{ADAM}\niterations = 2\nbatch_size = 64"),
                "train_limit = 1000",
            ),
            &[],
        ),
    ]
}

#[test]
fn check_bounds_the_peak_of_mnist_pipelines_and_stress_networks() {
    let dir = temp("memory", "files");
    let part5 = dir.join("part5-out");
    let weights = format!("model.load=\"{}\"", part5.join("weights.safetensors").display());
    let mut cases = vec![
        case("part1", "pipelines/part1.toml", &[]),
        case("part3", "pipelines/part3.toml", &[]),
        case("part4", "pipelines/part4.toml", &["train.iterations=2"]),
        case("part5-out", "pipelines/part5.toml", &["train.iterations=2"]),
        case("part7", "pipelines/part7.toml", &["scaling.depths=[1,2]", "scaling.widths=[2,4]", "scaling.repeats=1"]),
        case("lenet5", "pipelines/lenet5.toml", &["train.epochs=1", "data.train_limit=640"]),
    ];
    // part 6 starts from the weights part 5 saves.
    cases.push(Case {
        name: "part6",
        file: "pipelines/part6.toml".into(),
        sets: vec![weights, "contour.grid=5".into(), "contour.steps=3".into()],
    });
    let mut stress = stress_networks(&dir);
    stress.pop(); // the 30 convolutions take 20 s: the slow suite has them
    cases.extend(stress);
    measure(&dir, &cases);
    if nabla::data::shared_data_or_skip("facescrub/cropped32", "memory: faces pipelines").is_some() {
        let part8 = dir.join("part8");
        let weights = format!("model.load=\"{}\"", part8.join("weights.safetensors").display());
        let faces = [
            case("part8", "pipelines/part8.toml", &["train.epochs=1", "train.steps_per_batch=2"]),
            Case { name: "part9", file: "pipelines/part9.toml".into(), sets: vec![weights] },
        ];
        measure(&dir, &faces);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// The cases too slow for every run: issue 32's deep CNNs and ReLUs on the
/// whole of MNIST, and the faces pipelines with AlexNet.
#[test]
#[ignore = "minutes: run with --ignored for the whole table"]
fn slow_cases() {
    let dir = temp("memory", "slow");
    let mut cases = vec![stress_networks(&dir).pop().unwrap()];
    let conv16 = layer("conv2d", "out = 16\nkernel = 3\npadding = 1") + &layer("relu", "");
    let head = layer("max_pool2d", "kernel = 4") + &layer("flatten", "") + &layer("linear", "out = 10");
    cases.push(case(
        "12 convolutions of 16, 28 x 28",
        stress(
            &dir,
            "cnn12",
            &(conv16.repeat(12) + &head),
            &format!("{ADAM}\niterations = 1\nbatch_size = 64"),
            "train_limit = 1000",
        ),
        &[],
    ));
    cases.push(case(
        "300 ReLUs, all 60000",
        stress(
            &dir,
            "relu_all",
            &(layer("flatten", "") + &layer("relu", "").repeat(300) + &layer("linear", "out = 10")),
            &format!("{ADAM}\niterations = 1\nbatch_size = 64"),
            "",
        ),
        &[],
    ));
    cases.push(case("lenet5, all 60000", "pipelines/lenet5.toml", &["train.epochs=1"]));
    measure(&dir, &cases);
    if nabla::data::shared_data_or_skip("facescrub/cropped227", "memory: AlexNet pipelines").is_some() {
        let cache = dir.join("features");
        let cache = format!("backbone.cache=\"{}\"", cache.display());
        measure(
            &dir,
            &[
                case("faces_cnn", "pipelines/faces_cnn.toml", &["train.epochs=1"]),
                Case {
                    name: "part10",
                    file: "pipelines/part10.toml".into(),
                    sets: vec!["train.epochs=1".into(), "train.steps_per_batch=2".into(), cache],
                },
                case("part10_finetune", "pipelines/part10_finetune.toml", &["train.epochs=1"]),
            ],
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
