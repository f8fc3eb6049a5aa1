//! `nabla time`: the binary on the shipped pipelines, its JSON parsed, and
//! bad flags and files refused. Timings are noise on a shared machine, so
//! only the structure is asserted: every layer, FLOPs as `Layer::flops`
//! gives them, shares summing to 100 %.

use nabla::nn::{presets, Sequential};
use serde_json::Value;
use std::process::{Command, Output};

fn nabla(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nabla"))
        .arg("time")
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the nabla binary runs")
}

fn json(args: &[&str]) -> Value {
    let o = nabla(args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("one JSON object on stdout")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// Each layer row against the network's nodes: names, types, shapes, FLOPs
/// for the batch; shares that sum to 100 %.
fn check_section(section: &Value, net: &Sequential, batch: usize, training: bool) {
    let rows = section["layers"].as_array().unwrap();
    assert_eq!(rows.len(), net.nodes.len());
    let mut share = 0.0;
    for (i, (row, node)) in rows.iter().zip(&net.nodes).enumerate() {
        assert_eq!(row["name"], node.prefix.as_str());
        assert_eq!(row["type"], node.layer.type_name());
        assert_eq!(row["output"], serde_json::json!(node.output));
        let flops = node.layer.flops(&node.input, &node.output) * batch as f64;
        assert!(close(row["forward_flops"].as_f64().unwrap(), flops), "{row}");
        assert!(row["forward_ms"].as_f64().unwrap() >= 0.0);
        if training {
            assert!(row["backward_ms"].as_f64().unwrap() >= 0.0);
            let bwd = nabla::nn::timing::backward_flops(&node.layer, &node.input, &node.output, i > 0);
            assert!(close(row["backward_flops"].as_f64().unwrap(), bwd * batch as f64), "{row}");
            assert_eq!(row["input_gradient"], i > 0);
        } else {
            assert!(row["backward_ms"].is_null() && row["backward_flops"].is_null());
        }
        share += row["share_percent"].as_f64().unwrap();
    }
    assert!((share - 100.0).abs() < 1e-6, "shares sum to {share}");
    let whole = &section["whole"];
    assert!(whole["forward_inference_ms"].as_f64().unwrap() >= 0.0);
    assert_eq!(whole["backward_ms"].is_f64(), training);
}

#[test]
fn lenet5_every_layer_timed_as_json() {
    let r = json(&["pipelines/lenet5.toml", "--batch", "4", "--iterations", "2", "--json"]);
    assert_eq!(r["name"], "lenet5");
    assert_eq!((r["batch"].as_u64(), r["iterations"].as_u64(), r["warmup"].as_u64()), (Some(4), Some(2), Some(1)));
    assert!(r["threads"].as_u64().unwrap() >= 1 && !r["cpu"].as_str().unwrap().is_empty());
    let kernels: Vec<&str> = nabla::gemm::KernelChoice::available().iter().map(|k| k.name()).collect();
    assert!(kernels.contains(&r["kernel"].as_str().unwrap()), "{}", r["kernel"]);
    assert!(r["backbone"].is_null());
    let net = Sequential::new(&[1, 28, 28], &presets::lenet5()).unwrap();
    check_section(&r["model"], &net, 4, true);
    let whole = &r["model"]["whole"];
    assert_eq!(whole["optimizer"], "adam");
    let parts = ["forward_training_ms", "backward_ms", "update_ms"].map(|k| whole[k].as_f64().unwrap());
    assert!(close(whole["step_ms"].as_f64().unwrap(), parts.iter().sum()));
}

#[test]
fn the_batch_defaults_to_the_files_and_the_table_names_every_layer() {
    let o = nabla(&["pipelines/lenet5.toml", "--iterations", "1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8(o.stdout).unwrap();
    assert!(text.contains("batch 64 | median of 1 run after 1 warm-up"), "{text}");
    assert!(text.contains("SGEMM kernel: ") && text.contains("threads: "), "{text}");
    for i in 0..12 {
        assert!(text.contains(&format!("| layers.{i} |")), "layers.{i} missing:\n{text}");
    }
    assert!(text.contains("| update (adam) |") && text.contains("| all layers |"), "{text}");
}

#[test]
fn a_backbone_is_timed_forward_only_beside_the_head() {
    let r = json(&["pipelines/part10.toml", "--batch", "1", "--iterations", "1", "--json"]);
    let backbone = Sequential::new(&[3, 227, 227], &presets::alexnet_features()).unwrap();
    check_section(&r["backbone"], &backbone, 1, false);
    assert_eq!(r["backbone"]["pass"], "inference");
    assert!(r["backbone"]["whole"]["step_ms"].is_null());
    let head = Sequential::new(&[9216], &presets::mlp(&[100], 6, nabla::nn::Activation::Relu)).unwrap();
    check_section(&r["model"], &head, 1, true);
}

/// A refused invocation: the exit code, a message on stderr, nothing on stdout.
fn refused(args: &[&str], code: i32, says: &str) {
    let o = nabla(args);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
    assert!(err.contains(says), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(o.stdout.is_empty(), "{args:?} wrote {}", String::from_utf8_lossy(&o.stdout));
}

#[test]
fn bad_flags_and_files_are_clear_errors() {
    let lenet = "pipelines/lenet5.toml";
    refused(&[lenet, "--batch", "0"], 2, "--batch needs a whole number from 1 to 1048576, got '0'");
    refused(&[lenet, "--batch", "1e9"], 2, "got '1e9'");
    refused(&[lenet, "--batch"], 2, "--batch needs a whole number");
    refused(&[lenet, "--iterations", "0"], 2, "--iterations needs a whole number from 1 to 1000, got '0'");
    refused(&[lenet, "--iterations", "18446744073709551616"], 2, "--iterations needs");
    refused(&[lenet, "--warp"], 2, "unknown option '--warp'");
    refused(&[], 2, "name a pipeline file");
    refused(&[lenet, lenet], 2, "one pipeline file at a time");
    refused(&[lenet, "--batch", "1048576"], 1, "pipelines/lenet5.toml: --batch 1048576: the model's activations");
    refused(&[lenet, "--batch", "20000", "--iterations", "1000"], 1, "floating-point operations");
    refused(&["pipelines/part1.toml"], 1, "pipelines/part1.toml: model: the file has no [model] section");
    refused(&["pipelines/no-such.toml"], 1, "no-such.toml");
    refused(&[lenet, "--set", "model.layers=3"], 1, "pipelines/lenet5.toml");
}

/// A network `nabla check` accepts (training holds it in 80 % of memory) but
/// whose activations at the file's batch of 64 pass time's 4 GiB bound.
#[test]
fn a_checked_network_too_wide_to_time_at_its_batch_is_refused() {
    let dir = std::env::temp_dir().join(format!("nabla-time-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wide.toml");
    let layers =
        [("conv2d", "out = 16384\nkernel = 1"), ("max_pool2d", "kernel = 28"), ("flatten", ""), ("linear", "out = 10")]
            .map(|(t, f)| format!("[[model.layers]]\ntype = \"{t}\"\n{f}\n"))
            .join("");
    let text = format!(
        "version = 1\nname = \"wide\"\n[data]\ndataset = \"mnist\"\n[model]\nkind = \"sequential\"\n{layers}\
         [train]\noptimizer = \"adam\"\nlr = 1e-3\nepochs = 1\nbatch_size = 64\n"
    );
    std::fs::write(&file, text).unwrap();
    let path = file.to_str().unwrap();
    refused(&[path], 1, &format!("{path}: --batch 64: the model's activations"));
    refused(&[path, "--batch", "30"], 1, "need about 6.4 GB, more than the");
    std::fs::remove_dir_all(&dir).unwrap();
}
