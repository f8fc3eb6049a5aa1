//! Hostile pipeline files: sizes with no ceiling, variants that recurse,
//! values that are valid TOML but meaningless, bad input that "succeeds".

use super::*;

/// `edits` applied to `template`, each (from, to) once.
fn edited(template: &str, edits: &[(&str, &str)]) -> String {
    edits.iter().fold(template.to_string(), |t, (from, to)| {
        assert!(t.contains(from), "the template lacks '{from}'");
        t.replacen(from, to, 1)
    })
}

fn mnist_case(name: &'static str, edits: &[(&str, &str)], expect: &[&str]) {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(&edited(MNIST, edits)).fails(&[], "bad.toml", expect);
}

fn faces_case(name: &'static str, edits: &[(&str, &str)], expect: &[&str]) {
    let case = Case::new(name);
    faces(&case);
    case.pipeline(&edited(FACES, edits)).fails(&[], "bad.toml", expect);
}

/// Run `nabla check` on a file; returns (success, stderr).
fn check(case: &Case, text: &str) -> (bool, String) {
    case.pipeline(text);
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(["check", &case.input("bad.toml")]).output().unwrap();
    (o.status.success(), String::from_utf8_lossy(&o.stderr).into_owned())
}

const SWEEP_AND_TRIALS: &str = "\n[sweep]\nkey = \"train.lr\"\nvalues = [1e-5, 2e-5]\n\n[[trials]]\nname = \"a\"\nset = { \"train.iterations\" = 1 }\n";

#[test]
fn a_valid_file_with_a_sweep_and_trials_checks_and_runs() {
    let case = Case::new("sweep-and-trials");
    mnist(&case);
    let (ok, err) = check(&case, &format!("{MNIST}{SWEEP_AND_TRIALS}"));
    assert!(ok, "{err}");
    // Thousands of trials check in linear time (quadratic took ~13 s for 2000).
    let mut text = MNIST.to_string();
    for i in 0..999 {
        text += &format!("\n[[trials]]\nname = \"t{i}\"\nset = {{ \"train.lr\" = {} }}\n", 1e-6 * (i + 1) as f64);
    }
    let started = std::time::Instant::now();
    let (ok, err) = check(&case, &text);
    assert!(ok && started.elapsed().as_secs() < 10, "{err} {:?}", started.elapsed());
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn variants_are_checked_as_pairs() {
    // Epochs alone are fine, and so is a trial's zero batches_per_epoch while
    // epochs = 0; together they are not.
    mnist_case(
        "trial-breaks-a-sweep-value",
        &[(
            "eval_every = 1",
            "eval_every = 1\n[sweep]\nkey = \"train.epochs\"\nvalues = [0, 1]\n[[trials]]\nname = \"a\"\nset = { \"train.batches_per_epoch\" = 0 }",
        )],
        &["sweep.values: train.epochs = 1, trial 'a': train.batches_per_epoch"],
    );
    mnist_case(
        "duplicate-sweep-values",
        &[("eval_every = 1", "eval_every = 1\n[sweep]\nkey = \"train.lr\"\nvalues = [1e-5, 1e-5]")],
        &["sweep.values", "listed twice"],
    );
    mnist_case(
        "sweep-of-the-name",
        &[("eval_every = 1", "eval_every = 1\n[sweep]\nkey = \"name\"\nvalues = [\"x\"]")],
        &["sweep.key", "cannot be swept"],
    );
    mnist_case(
        "duplicate-trial-names",
        &[("eval_every = 1", "eval_every = 1\n[[trials]]\nname = \"a\"\nset = {}\n[[trials]]\nname = \"a\"\nset = {}")],
        &["two trials are named 'a'"],
    );
    mnist_case(
        "too-many-combinations",
        &[(
            "eval_every = 1",
            &format!(
                "eval_every = 1\n[sweep]\nkey = \"train.lr\"\nvalues = [{}]\n{}",
                (1..=200).map(|i| format!("{i}e-6")).collect::<Vec<_>>().join(", "),
                (0..60).map(|i| format!("[[trials]]\nname = \"t{i}\"\nset = {{}}\n")).collect::<String>()
            ),
        )],
        &["make more than 10000 combinations"],
    );
}

/// Run the file under an address-space limit: the refusal must come before
/// any large allocation (an abort in the allocator is a signal, which
/// `fails` rejects).
fn bounded(name: &'static str, edits: &[(&str, &str)], expect: &[&str]) {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(&edited(MNIST, edits));
    let out = case.dir.join("out");
    let o = Command::new("prlimit")
        .args(["--as=3000000000", "--", env!("CARGO_BIN_EXE_nabla"), &case.input("bad.toml"), "--quiet", "--out"])
        .arg(&out)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("prlimit runs");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{name}: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
    }
    assert!(!out.exists(), "{name}: wrote the output folder");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn sizes_beyond_the_machine_are_refused_before_allocating() {
    bounded(
        "billion-hidden-units",
        &[("kind = \"linear\"", "kind = \"mlp\"\nhidden = [1000000000]")],
        &["model.hidden: layer 1 ('fc1'): linear out = 1000000000: must be between 1 and 16777216"],
    );
    bounded(
        "16-million-hidden-units",
        &[("kind = \"linear\"", "kind = \"mlp\"\nhidden = [16000000]")],
        &["model.hidden", "memory"],
    );
    bounded("2^40-iterations", &[("iterations = 2", "iterations = 1099511627776")], &["train.iterations"]);
    bounded(
        "2^40-batches",
        &[("iterations = 2", "epochs = 1\nbatches_per_epoch = 1099511627776")],
        &["train.batches_per_epoch", "would leave some empty"],
    );
    bounded(
        "steps-overflow",
        &[("iterations = 2", "epochs = 4294967296\nbatches_per_epoch = 4\nsteps_per_batch = 4294967296")],
        &["does not fit in a step counter"],
    );
    bounded(
        "gradcheck-1e12",
        &[("[train]", "[gradcheck]\nrandom = 1000000000000\n\n[train]")],
        &["gradcheck.random", "at most 10000"],
    );
    bounded(
        "units-columns-1e9",
        &[
            ("kind = \"linear\"", "kind = \"mlp\"\nhidden = [4]"),
            ("[train]", "[units]\ncolumns = 1000000000\n\n[train]"),
        ],
        &["units.columns", "not between 1 and 4"],
    );
    bounded(
        "units-columns-0",
        &[("kind = \"linear\"", "kind = \"mlp\"\nhidden = [4]"), ("[train]", "[units]\ncolumns = 0\n\n[train]")],
        &["units.columns"],
    );
    bounded(
        "scaling-repeats-3000",
        &[("[train]", "[scaling]\ndepths = [1, 2]\nwidth_for_depths = 2\nwidths = [2, 4]\ndepth_for_widths = 1\nrepeats = 3000\n\n[train]")],
        &["scaling.repeats", "between 1 and 1000"],
    );
    bounded(
        "scaling-point-beyond-any-budget",
        &[(
            "[train]",
            "[scaling]\ndepths = [30, 31]\nwidth_for_depths = 64\nwidths = [2, 4]\ndepth_for_widths = 1\n\n[train]",
        )],
        &["scaling.depths", "the first point (N = 30, K = 64)"],
    );
    bounded(
        "contour-steps-1e12",
        &[("[train]", "[contour]\nweights = [[0, 0], [1, 1]]\nstart = [0.0, 0.0]\nlr = 1e-3\nsteps = 1000000000000\nmomentum = 0.5\n\n[train]")],
        &["contour", "steps <= 100000"],
    );
}

#[test]
fn values_that_parse_but_mean_nothing() {
    mnist_case(
        "zeros-init-with-a-key",
        &[("kind = \"linear\"", "kind = \"linear\"\nweight_init = { kind = \"zeros\", std = 3.0 }")],
        &["takes no `std`"],
    );
    mnist_case(
        "fan-in-with-a-key",
        &[("kind = \"linear\"", "kind = \"linear\"\nbias_init = { kind = \"fan_in\", lo = 3.0 }")],
        &["takes no `lo`"],
    );
    mnist_case(
        "nan-init",
        &[("kind = \"linear\"", "kind = \"linear\"\nweight_init = { kind = \"uniform\", lo = nan, hi = 1.0 }")],
        &["model.weight_init", "finite lo <= hi"],
    );
    mnist_case(
        "nan-contour-start",
        &[("[train]", "[contour]\nweights = [[0, 0], [1, 1]]\nstart = [nan, 0.0]\nlr = 1e-3\nsteps = 2\nmomentum = 0.5\n\n[train]")],
        &["contour.start", "not two finite numbers"],
    );
    mnist_case(
        "nan-gradcheck-tolerance",
        &[("[train]", "[gradcheck]\ntolerance = nan\n\n[train]")],
        &["gradcheck.tolerance"],
    );
    mnist_case(
        "inf-reference",
        &[("eval_every = 1", "eval_every = 1\n[reference]\ntest_accuracy = inf")],
        &["reference.test_accuracy"],
    );
    mnist_case("name-dot-dot", &[("name = \"bad\"", "name = \"..\"")], &["name", "must be non-empty letters"]);
    mnist_case("name-dot", &[("name = \"bad\"", "name = \".\"")], &["name", "must be non-empty letters"]);
    mnist_case(
        "more-batches-than-examples",
        &[("iterations = 2", "epochs = 1\nbatches_per_epoch = 101")],
        &["train.batches_per_epoch", "101 mini-batches of 100"],
    );
    faces_case(
        "same-actor-twice",
        &[("[\"aa\", \"bb\"]", "[\"aa\", \"aa\"]")],
        &["data.actors", "'aa' is listed twice"],
    );
    faces_case(
        "train-for-unknown-actor",
        &[("train = 2,", "train = 2, train_for = { cc = 1 },")],
        &["split.train_for names 'cc'"],
    );
    faces_case("no-test-images", &[("test = 1", "test = 0")], &["split.test must be at least 1"]);
    faces_case("no-validation-images", &[("validation = 1", "validation = 0")], &["split.validation"]);

    // Known only once the data is read: MNIST's test file of one image.
    let case = Case::new("one-test-image");
    mnist(&case);
    let one = |dims: &[u32], n: usize| idx(dims, &vec![1u8; n]);
    case.write("mnist/t10k-images-idx3-ubyte", one(&[1, 28, 28], 784))
        .write("mnist/t10k-labels-idx1-ubyte", one(&[1], 1))
        .pipeline(MNIST)
        .fails(&[], "t10k-images-idx3-ubyte", &["holds 1 image", "validation and test need at least 2"]);
}

#[test]
fn non_finite_losses_blame_their_cause() {
    faces_case(
        "scale-past-pixels",
        &[("color = \"gray\"", "color = \"gray\"\nscale = 1e36")],
        &["data.scale", "not in (0, 1]"],
    );
    // Starting weights past f32's range: the loss is not finite before any update.
    let case = Case::new("huge-init");
    faces(&case);
    let init = "activation = \"relu\"\nweight_init = { kind = \"normal\", mean = 0.0, std = 1e30 }";
    case.pipeline(&edited(FACES, &[("activation = \"relu\"", init)])).fails(
        &[],
        "bad.toml",
        &["before any update", "model.weight_init", "the learning rate is not the cause"],
    );
    // NaN weights loaded into a model: named with the file, not trained to chance.
    let case = Case::new("nan-weights");
    mnist(&case);
    let mut st = safetensors(&[("fc1.weight", &[10, 784]), ("fc1.bias", &[10])]);
    let at = st.len() - 4;
    st[at..].copy_from_slice(&f32::NAN.to_le_bytes());
    case.write("w.safetensors", st)
        .pipeline(&edited(MNIST, &[("kind = \"linear\"", "kind = \"linear\"\nload = \"{IN}/w.safetensors\"")]))
        .fails(&[], "bad.toml", &["model.load", "w.safetensors", "NaN", "fc1.bias"]);
}
