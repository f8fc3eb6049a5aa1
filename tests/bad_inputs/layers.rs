//! Hostile layer lists (`[model] kind = "sequential"`): each is refused by
//! `nabla check` and by a run, under an address-space and CPU limit, with a
//! message naming the file, the layer (index, and name when it has one) and
//! what is wrong; nothing is written.

use super::*;
use std::time::{Duration, Instant};

/// MNIST (examples [1, 28, 28], 10 classes) with a sequential model:
/// `model` is extra `[model]` keys, `layers` the `[[model.layers]]` tables.
fn sequential(model: &str, layers: &str) -> String {
    assert!(MNIST.contains("kind = \"linear\"\n"));
    MNIST.replacen("kind = \"linear\"\n", &format!("kind = \"sequential\"\n{model}\n{layers}\n"), 1)
}

/// One `[[model.layers]]` table of `fields` (lines of `key = value`).
fn layer(fields: &str) -> String {
    format!("[[model.layers]]\n{fields}\n")
}

/// A valid head after any layer: flatten, then 10 classes.
fn head() -> String {
    layer("type = \"flatten\"") + &layer("type = \"linear\"\nout = 10")
}

/// Run `nabla <args>` under a 3 GB address-space and 60 s CPU limit.
fn nabla_bounded(args: &[&str]) -> (Option<i32>, String, Duration) {
    let started = Instant::now();
    let o = Command::new("prlimit")
        .args(["--as=3000000000", "--cpu=60", "--", env!("CARGO_BIN_EXE_nabla")])
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("prlimit runs");
    (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned(), started.elapsed())
}

/// `text` as `in/bad.toml` is refused by `check` and by a run (and by a run
/// with `extra` arguments), each message containing `bad.toml` and every
/// `expect`, within the limits, writing nothing.
fn refused_with(name: &'static str, text: &str, extra: &[&str], expect: &[&str]) {
    let case = Case::new(name);
    mnist(&case);
    case.pipeline(text);
    let before = listing(&case.dir);
    let file = case.input("bad.toml");
    let out = case.dir.join("out");
    let out = out.to_str().unwrap();
    let mut check = vec!["check", file.as_str()];
    check.extend(extra);
    let mut run = vec![file.as_str(), "--quiet", "--out", out];
    run.extend(extra);
    for args in [check, run] {
        let (code, err, took) = nabla_bounded(&args);
        let how = args[0];
        assert_eq!(code, Some(1), "{name} ({how}): exit {code:?} (a signal is None): {err}");
        assert!(!err.contains("panicked"), "{name} ({how}): panicked: {err}");
        assert!(took < Duration::from_secs(30), "{name} ({how}): took {took:?}");
        assert!(err.contains("bad.toml"), "{name} ({how}): the message does not name bad.toml: {err}");
        for e in expect {
            assert!(err.contains(e), "{name} ({how}): expected '{e}' in: {err}");
        }
    }
    assert!(!Path::new(out).exists(), "{name}: wrote the output folder");
    assert_eq!(listing(&case.dir), before, "{name}: wrote files beside the inputs");
    let _ = std::fs::remove_dir_all(&case.dir);
}

fn refused(name: &'static str, text: &str, expect: &[&str]) {
    refused_with(name, text, &[], expect);
}

/// A list of `layers` followed by [`head`].
fn with_head(name: &'static str, layers: &str, expect: &[&str]) {
    refused(name, &sequential("", &(layers.to_string() + &head())), expect);
}

#[test]
fn a_valid_list_checks_and_prints_its_table() {
    let case = Case::new("valid-sequential");
    mnist(&case);
    let conv = layer("type = \"conv2d\"\nname = \"c1\"\nout = 4\nkernel = 3\npadding = 1");
    case.pipeline(&sequential("", &(conv + &layer("type = \"relu\"") + &head())));
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).args(["check", &case.input("bad.toml")]).output().unwrap();
    let all = format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    assert!(o.status.success(), "{all}");
    assert!(all.contains("| c1 | conv2d 4 3x3 pad 1 | [4, 28, 28] | 40 |"), "{all}");
    assert!(all.contains("| layers.3 | linear 10 | [10] | 31,370 |"), "{all}");
    let _ = std::fs::remove_dir_all(&case.dir);
}

#[test]
fn types_and_fields() {
    with_head("unknown-type", &layer("type = \"conv3d\"\nout = 2"), &["model.layers: layer 1: unknown type `conv3d`"]);
    with_head("empty-type", &layer("type = \"\""), &["layer 1: unknown type ``"]);
    with_head("type-in-capitals", &layer("type = \"ReLU\""), &["layer 1: unknown type `ReLU`"]);
    with_head("no-type", &layer("out = 3"), &["missing field `type`"]);
    with_head("unknown-field", &layer("type = \"relu\"\ninplace = true"), &["unknown field `inplace`"]);
    with_head("field-not-taken", &layer("type = \"relu\"\nout = 3"), &["layer 1: relu takes no `out` (it takes none)"]);
    with_head(
        "pool-with-groups",
        &layer("type = \"max_pool2d\"\nname = \"p\"\nkernel = 2\ngroups = 2"),
        &["layer 1 ('p'): max_pool2d takes no `groups` (it takes `kernel`, `stride`, `padding`)"],
    );
    with_head("flatten-with-p", &layer("type = \"flatten\"\np = 0.5"), &["layer 1: flatten takes no `p`"]);
    with_head(
        "init-on-relu",
        &layer("type = \"relu\"\nweight_init = { kind = \"zeros\" }"),
        &["layer 1: relu takes no `weight_init`"],
    );
    with_head("conv-without-out", &layer("type = \"conv2d\"\nkernel = 3"), &["layer 1: conv2d needs `out`"]);
    with_head("conv-without-kernel", &layer("type = \"conv2d\"\nout = 3"), &["layer 1: conv2d needs `kernel`"]);
    with_head("pool-without-kernel", &layer("type = \"avg_pool2d\""), &["layer 1: avg_pool2d needs `kernel`"]);
    with_head("dropout-without-p", &layer("type = \"dropout\""), &["layer 1: dropout needs `p`"]);
    refused(
        "linear-without-out",
        &sequential("", &(layer("type = \"flatten\"") + &layer("type = \"linear\"\nname = \"fc\""))),
        &["layer 2 ('fc'): linear needs `out`"],
    );
}

#[test]
fn toml_type_confusion() {
    let conv = |field: &str| layer(&format!("type = \"conv2d\"\nout = 6\nkernel = 5\n{field}"));
    with_head("out-as-text", &layer("type = \"conv2d\"\nout = \"six\"\nkernel = 5"), &["invalid type: string \"six\""]);
    with_head("out-negative", &layer("type = \"conv2d\"\nout = -1\nkernel = 5"), &["invalid value: integer `-1`"]);
    with_head(
        "out-fraction",
        &layer("type = \"conv2d\"\nout = 1.5\nkernel = 5"),
        &["invalid type: floating point `1.5`"],
    );
    with_head("kernel-as-pair", &layer("type = \"conv2d\"\nout = 6\nkernel = [5, 5]"), &["invalid type: sequence"]);
    with_head("stride-as-text", &conv("stride = \"2\""), &["invalid type: string \"2\""]);
    with_head("bias-as-text", &conv("bias = \"no\""), &["invalid type: string \"no\""]);
    with_head("p-as-text", &layer("type = \"dropout\"\np = \"half\""), &["invalid type: string \"half\""]);
    with_head("type-as-number", &layer("type = 3"), &["invalid type: integer `3`"]);
    with_head("name-as-number", &layer("type = \"relu\"\nname = 7"), &["invalid type: integer `7`"]);
    with_head("out-past-i64", &conv("groups = 99999999999999999999"), &["TOML parse error"]);
    refused("layers-as-a-number", &sequential("layers = 5", ""), &["invalid type: integer `5`"]);
    refused("layers-as-a-table", &sequential("", "[model.layers]\ntype = \"relu\""), &["invalid type: map"]);
    // A deeply nested value: the parser's recursion must stop, not the stack.
    let deep = format!("type = \"conv2d\"\nout = {}1{}\nkernel = 5", "[".repeat(100_000), "]".repeat(100_000));
    with_head("out-nested-100000-deep", &layer(&deep), &["TOML parse error"]);
}

#[test]
fn sizes() {
    let conv = |fields: &str| layer(&format!("type = \"conv2d\"\nname = \"c\"\n{fields}"));
    with_head(
        "conv-out-0",
        &conv("out = 0\nkernel = 3"),
        &["layer 1 ('c'): conv2d out = 0 channels: must be between 1"],
    );
    with_head(
        "conv-out-huge",
        &conv("out = 1000000000000000000\nkernel = 3"),
        &["layer 1 ('c'): conv2d out = 1000000000000000000 channels: must be between 1 and 16777216"],
    );
    with_head("conv-out-i64-max", &conv("out = 9223372036854775807\nkernel = 3"), &["must be between 1 and 16777216"]);
    refused(
        "linear-out-0",
        &sequential("", &(layer("type = \"flatten\"") + &layer("type = \"linear\"\nout = 0") + &head())),
        &["layer 2: linear out = 0: must be between 1 and 16777216"],
    );
    with_head(
        "kernel-0",
        &conv("out = 2\nkernel = 0"),
        &["layer 1 ('c'): conv2d kernel 0 and stride 1 must be at least 1"],
    );
    with_head(
        "kernel-larger-than-input",
        &conv("out = 2\nkernel = 29"),
        &["layer 1 ('c'): conv2d its 29x29 kernel is larger than its input [1, 28, 28] padded by 0 (28x28)"],
    );
    with_head(
        "stride-0",
        &conv("out = 2\nkernel = 3\nstride = 0"),
        &["layer 1 ('c'): conv2d kernel 3 and stride 0 must be at least 1"],
    );
    with_head(
        "pool-stride-0",
        &layer("type = \"max_pool2d\"\nkernel = 2\nstride = 0"),
        &["layer 1: max_pool2d kernel 2 and stride 0"],
    );
    with_head(
        "padding-1e18",
        &conv("out = 2\nkernel = 3\npadding = 1000000000000000000"),
        &["layer 1 ('c'): conv2d kernel, stride and padding must be at most 16777216"],
    );
    with_head(
        "stride-past-the-ceiling",
        &conv("out = 2\nkernel = 3\nstride = 16777217"),
        &["kernel, stride and padding must be at most 16777216"],
    );
    with_head(
        "pool-padding-over-half",
        &layer("type = \"max_pool2d\"\nkernel = 3\npadding = 2"),
        &["layer 1: max_pool2d padding 2 is more than half its 3x3 window"],
    );
    with_head(
        "avg-pool-padding-1e18",
        &layer("type = \"avg_pool2d\"\nkernel = 2\npadding = 1000000000000000000"),
        &["layer 1: avg_pool2d padding 1000000000000000000 is more than half"],
    );
    with_head(
        "groups-not-dividing",
        &(layer("type = \"conv2d\"\nout = 6\nkernel = 3") + &conv("out = 6\nkernel = 3\ngroups = 4")),
        &["layer 2 ('c'): conv2d groups = 4 must divide both its 6 input channels and its 6 output channels"],
    );
    with_head("groups-0", &conv("out = 6\nkernel = 3\ngroups = 0"), &["groups = 0 must divide"]);
    // A pool that shrinks the image to nothing, then another window.
    with_head(
        "shrunk-to-nothing",
        &(layer("type = \"max_pool2d\"\nkernel = 28") + &conv("out = 2\nkernel = 2")),
        &["layer 2 ('c'): conv2d its 2x2 kernel is larger than its input [1, 1, 1]"],
    );
}

#[test]
fn shapes_that_do_not_chain() {
    let conv = layer("type = \"conv2d\"\nout = 6\nkernel = 5");
    refused(
        "linear-on-an-image",
        &sequential("", &(conv.clone() + &layer("type = \"linear\"\nname = \"fc1\"\nout = 10"))),
        &["layer 2 ('fc1'): linear takes a flat input [features]; its input is [6, 24, 24]: put a flatten layer before it"],
    );
    refused(
        "conv-after-flatten",
        &sequential("", &(layer("type = \"flatten\"") + &conv + &head())),
        &["layer 2: conv2d takes an image [channels, height, width]; its input is [784]"],
    );
    refused(
        "pool-after-linear",
        &sequential(
            "",
            &(layer("type = \"flatten\"")
                + &layer("type = \"linear\"\nout = 10")
                + &layer("type = \"max_pool2d\"\nkernel = 2")),
        ),
        &["layer 3: max_pool2d takes an image"],
    );
    refused(
        "last-layer-not-the-classes",
        &sequential("", &(layer("type = \"flatten\"") + &layer("type = \"linear\"\nout = 9"))),
        &["the last layer gives [9] per example, but the data has 10 classes: end with a linear layer of out = 10"],
    );
    refused(
        "ends-on-an-image",
        &sequential("", &layer("type = \"conv2d\"\nout = 10\nkernel = 28")),
        &["the last layer gives [10, 1, 1] per example, but the data has 10 classes"],
    );
}

#[test]
fn lists_and_names() {
    refused("no-layers", &sequential("", ""), &["model.layers", "the list of layers is empty"]);
    refused("empty-layers-array", &sequential("layers = []", ""), &["model.layers", "the list of layers is empty"]);
    let relus = layer("type = \"relu\"").repeat(100_000);
    refused("100000-layers", &sequential("", &(relus + &head())), &["model.layers", "100002 layers; at most 1000"]);
    let relus = layer("type = \"relu\"").repeat(999);
    refused("1001-layers", &sequential("", &(relus + &head())), &["1001 layers; at most 1000"]);
    let named = |n: &str| layer(&format!("type = \"relu\"\nname = {n}"));
    with_head(
        "duplicate-names",
        &(named("\"act\"") + &named("\"act\"")),
        &["layer 2 ('act'): layer 1 has the same name 'act'"],
    );
    // A name that is another layer's default prefix.
    with_head(
        "name-of-a-later-default",
        &(named("\"layers.1\"") + &layer("type = \"relu\"")),
        &["layer 2: layer 1 has the same name 'layers.1'"],
    );
    for (case, n) in [
        ("name-dot-dot-slash", "\"../x\""),
        ("name-empty", "\"\""),
        ("name-double-dot", "\"a..b\""),
        ("name-leading-dot", "\".a\""),
        ("name-unicode", "\"свёртка\""),
        ("name-space", "\"conv 1\""),
        ("name-slash", "\"a/b\""),
        ("name-nul", "\"a\\u0000b\""),
        ("name-newline", "\"a\\nb\""),
    ] {
        with_head(case, &named(n), &["layer 1", "a name is dotted words of letters, digits and '_'"]);
    }
    with_head("name-too-long", &named(&format!("\"{}\"", "a".repeat(201))), &["layer 1", "at most 200 characters"]);
}

#[test]
fn dropout_and_initialisers() {
    for (case, p, shown) in [
        ("dropout-1", "1.0", "p = 1 is"),
        ("dropout-nan", "nan", "p = NaN is"),
        ("dropout-negative", "-1.0", "p = -1 is"),
        ("dropout-inf", "inf", "p = inf is"),
        ("dropout-int", "1", "p = 1 is"),
    ] {
        let text = sequential("", &(layer(&format!("type = \"dropout\"\nname = \"drop\"\np = {p}")) + &head()));
        refused(case, &text, &[shown]);
    }
    refused(
        "dropout-not-in-range-names-the-layer",
        &sequential("", &(layer("type = \"dropout\"\nname = \"drop\"\np = 1.0") + &head())),
        &["layer 1 ('drop'): dropout p = 1 is not in [0, 1)"],
    );
    let linear = |init: &str| {
        sequential(
            "",
            &(layer("type = \"flatten\"") + &layer(&format!("type = \"linear\"\nname = \"fc\"\nout = 10\n{init}"))),
        )
    };
    refused(
        "init-nan",
        &linear("weight_init = { kind = \"uniform\", lo = nan, hi = 1.0 }"),
        &["layer 2 ('fc'): weight_init: uniform needs finite lo <= hi"],
    );
    refused(
        "init-negative-std",
        &linear("bias_init = { kind = \"normal\", mean = 0.0, std = -1.0 }"),
        &["layer 2 ('fc'): bias_init: normal needs a finite mean and a finite std >= 0"],
    );
    refused(
        "init-inf-mean",
        &linear("weight_init = { kind = \"normal\", mean = inf, std = 1.0 }"),
        &["layer 2 ('fc'): weight_init: normal needs a finite mean"],
    );
    refused(
        "init-unknown-kind",
        &linear("weight_init = { kind = \"xavier\" }"),
        &["unknown initialiser kind `xavier`"],
    );
    refused("init-extra-key", &linear("weight_init = { kind = \"zeros\", std = 1.0 }"), &["takes no `std`"]);
    refused(
        "bias-init-without-bias",
        &linear("bias = false\nbias_init = { kind = \"zeros\" }"),
        &["layer 2 ('fc'): linear has no bias (bias = false) to initialise"],
    );
}

#[test]
fn kinds_and_their_fields() {
    let lenet_ish = layer("type = \"flatten\"") + &layer("type = \"linear\"\nout = 10");
    let other = |kind: &str, extra: &str| {
        MNIST.replacen("kind = \"linear\"\n", &format!("kind = \"{kind}\"\n{extra}\n{lenet_ish}\n"), 1)
    };
    refused(
        "layers-on-mlp",
        &other("mlp", "hidden = [4]"),
        &["model.layers: a model of kind \"mlp\" takes no `layers`"],
    );
    refused("layers-on-linear", &other("linear", ""), &["a model of kind \"linear\" takes no `layers`"]);
    refused("layers-on-alexnet", &other("alexnet", ""), &["a model of kind \"alexnet\" takes no `layers`"]);
    refused("hidden-on-sequential", &sequential("hidden = [25]", &lenet_ish), &["model.hidden", "takes no `hidden`"]);
    refused(
        "activation-on-sequential",
        &sequential("activation = \"tanh\"", &lenet_ish),
        &["model.activation", "takes no `activation`"],
    );
    // Valid on its own; a trial that makes it an MLP is checked as a whole.
    let trial = "\n[[trials]]\nname = \"as-mlp\"\nset = { \"model.kind\" = \"mlp\", \"model.hidden\" = [4] }\n";
    refused(
        "trial-turns-it-into-an-mlp",
        &(sequential("", &lenet_ish) + trial),
        &["trial 'as-mlp'", "takes no `layers`"],
    );
    // A list given on the command line is checked as the file's is.
    refused_with(
        "set-layers",
        &sequential("", &lenet_ish),
        &["--set", "model.layers=[{ type = \"relu\", out = 3 }]"],
        &["--set model.layers=", "layer 1: relu takes no `out`"],
    );
}

/// Networks that build but could never run here: refused by the budget
/// before anything is allocated (`nabla_bounded` would turn an allocation
/// past 3 GB into an abort, which is a signal, not exit 1).
#[test]
fn networks_beyond_the_machine() {
    // [16777216, 227, 227] activations per image: terabytes.
    let faces = edited_faces();
    let wide = layer("type = \"conv2d\"\nname = \"wide\"\nout = 16777216\nkernel = 1")
        + &layer("type = \"flatten\"")
        + &layer("type = \"linear\"\nout = 2");
    refused(
        "terabyte-activations",
        &faces.replacen(
            "kind = \"mlp\"\nhidden = [4]\nactivation = \"relu\"\n",
            &format!("kind = \"sequential\"\n{wide}"),
            1,
        ),
        &["a step's activations of 4 examples through layers of 1729026326530 values", "TB of memory"],
    );
    // 1000384 features into 16777216 outputs: 1.7e13 parameters.
    let params = layer("type = \"conv2d\"\nout = 1276\nkernel = 1")
        + &layer("type = \"flatten\"")
        + &layer("type = \"linear\"\nname = \"huge\"\nout = 16777216")
        + &layer("type = \"linear\"\nout = 10");
    refused("1e13-parameters", &sequential("", &params), &["model.layers", "parameters", "memory"]);
    // Padding at the ceiling: [2, 33554458, 33554458] per example.
    with_head(
        "padding-at-the-ceiling",
        &layer("type = \"conv2d\"\nout = 2\nkernel = 3\npadding = 16777216"),
        &["through layers of 4503606606695066 values", "memory"],
    );
    // A kernel at the ceiling: 65536 x 1 x 16777216 x 16777216 weights, past
    // a usize (the parameter count wrapped to 65536, and `check` passed a
    // file with no [train]).
    let kernel = layer("type = \"conv2d\"\nout = 65536\nkernel = 16777216\npadding = 8388608");
    let weight = "layer 1: conv2d its weight [65536, 1, 16777216, 16777216] has more elements than memory can hold";
    refused("2^64-weights", &sequential("", &(kernel.clone() + &head())), &[weight]);
    let no_train = sequential("", &(kernel + &head()));
    let no_train = no_train.split("[train]").next().unwrap().to_string() + "[samples]\nper_class = 1\n";
    refused("2^64-weights-without-train", &no_train, &[weight]);
}

/// [`FACES`] at AlexNet's 227 x 227 in colour (no images are read: `check`
/// refuses from the file alone, and a run checks first).
fn edited_faces() -> String {
    let text = FACES.replacen("size = 32\ncolor = \"gray\"", "size = 227\ncolor = \"rgb\"", 1);
    assert_ne!(text, FACES);
    text.replace("{IN}/faces", "{IN}/no-faces-needed")
}
