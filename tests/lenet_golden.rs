//! LeNet-5 and a variant (tanh, average pooling, a grouped convolution,
//! sigmoid, a linear layer without bias) against PyTorch: the same weights
//! (named as `torch.nn.Sequential` names them), the same batch, the same
//! logits, loss and every gradient. Fixtures: `tests/fixtures/gen_lenet5.py`.

use nabla::autodiff::{Reduction, Tape, Targets, Var};
use nabla::nn::{Layer, LayerSpec, Params, Sequential, Window2d};
use nabla::Tensor;
use std::collections::BTreeMap;

fn fixture(name: &str) -> BTreeMap<String, Tensor> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let bytes = std::fs::read(path).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(n, v)| (n.to_string(), Tensor::from_le_bytes(v.data(), v.shape()).unwrap()))
        .collect()
}

/// Largest |got - want| relative to the largest |want|.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}");
    let scale = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-12);
    let err = got.data().iter().zip(want.data()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(err <= tol * scale, "{what}: max error {err:e} against scale {scale:e}");
}

fn w(kernel: usize, stride: usize, padding: usize) -> Window2d {
    Window2d { kernel, stride, padding }
}

fn conv(out: usize, kernel: usize, padding: usize, groups: usize) -> Layer {
    Layer::Conv2d { out, win: w(kernel, 1, padding), groups, bias: true }
}

fn lenet5_avg() -> Vec<Layer> {
    vec![
        conv(6, 5, 2, 1),
        Layer::Tanh,
        Layer::AvgPool2d(w(2, 2, 0)),
        conv(16, 5, 0, 2),
        Layer::Sigmoid,
        Layer::AvgPool2d(w(3, 2, 1)),
        Layer::Flatten,
        Layer::Linear { out: 120, bias: false },
        Layer::Tanh,
        Layer::Linear { out: 10, bias: true },
    ]
}

fn matches_pytorch(file: &str, specs: Vec<LayerSpec>) {
    let f = fixture(file);
    let net = Sequential::new(&[1, 28, 28], &specs).unwrap();
    // Exactly PyTorch's state dict: the same names and shapes, no more.
    let mut params = Params::new();
    for (name, shape) in net.param_shapes() {
        let t = f.get(&name).unwrap_or_else(|| panic!("{file} has no '{name}'"));
        assert_eq!(t.shape(), shape.as_slice(), "{name}");
        params.insert(&name, t.clone());
    }
    let in_file = f.keys().filter(|k| k.starts_with("layers.")).count();
    assert_eq!(in_file, params.len(), "{file}: parameters the network does not have");
    let labels: Vec<usize> = f["labels"].data().iter().map(|&l| l as usize).collect();
    let x = Var::constant(f["input"].clone());

    let logits = net.forward(&Tape::inference(), &params, &x, None).unwrap();
    assert_close(&format!("{file}: logits"), logits.value(), &f["logits"], 1e-5);

    // The loss as training computes it (last layer fused with the loss when it can be).
    let tape = Tape::new();
    let loss = net.loss(&tape, &params, &x, &Targets::Classes(labels), Reduction::Mean, None).unwrap();
    let value = Tensor::from_vec(vec![loss.value().item().unwrap()], &[1]).unwrap();
    assert_close(&format!("{file}: loss"), &value, &f["loss"], 1e-5);
    let grads = tape.backward(&loss).unwrap();
    for (name, _) in net.param_shapes() {
        let g = grads.by_name(&name).unwrap_or_else(|| panic!("no gradient for {name}"));
        assert_close(&format!("{file}: grad of {name}"), g, &f[&format!("grad.{name}")], 1e-4);
    }
}

#[test]
fn lenet5_matches_pytorch_forward_and_backward() {
    matches_pytorch("lenet5.safetensors", nabla::nn::presets::lenet5());
}

#[test]
fn tanh_avg_pool_grouped_sigmoid_variant_matches_pytorch() {
    matches_pytorch("lenet5_avg.safetensors", lenet5_avg().into_iter().map(LayerSpec::new).collect());
}

/// Our saved weights load in PyTorch by the same names: a safetensors file
/// of the fixture's parameters round-trips through the strict loader.
#[test]
fn parameters_round_trip_under_pytorch_names() {
    let f = fixture("lenet5.safetensors");
    let specs = nabla::nn::presets::lenet5();
    let net = Sequential::new(&[1, 28, 28], &specs).unwrap();
    let mut params = Params::new();
    for (name, _) in net.param_shapes() {
        params.insert(&name, f[&name].clone());
    }
    let mut fresh = Params::new();
    net.init(&mut fresh, nabla::nn::Init::FanIn, nabla::nn::Init::FanIn, &mut nabla::Rng::new(0));
    fresh.load_safetensors(&params.to_safetensors()).unwrap();
    assert_eq!(fresh, params);
}
