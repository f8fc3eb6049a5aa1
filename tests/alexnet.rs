//! AlexNet against PyTorch: a small AlexNet-shaped network (same kernels,
//! strides, paddings and names, fewer channels) with the weights, input,
//! features, logits and gradients that `tests/fixtures/gen_alexnet.py` wrote
//! with PyTorch.

use nabla::autodiff::{Tape, Var};
use nabla::nn::alexnet::AlexNet;
use nabla::nn::Params;
use nabla::Tensor;

fn fixture() -> Vec<(String, Tensor)> {
    let bytes =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/alexnet_small.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(name, view)| (name, Tensor::from_le_bytes(view.data(), view.shape()).unwrap()))
        .collect()
}

fn get<'a>(all: &'a [(String, Tensor)], name: &str) -> &'a Tensor {
    &all.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("fixture lacks {name}")).1
}

/// |a - b| <= tol * (max |b| over the tensor): a relative error on the scale
/// of the tensor, as sums of thousands of f32 terms warrant.
fn assert_close(what: &str, got: &Tensor, want: &Tensor, tol: f32) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    let scale = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(scale > 1e-9, "{what}: the fixture is all zero, the comparison would prove nothing");
    let nonzero = want.data().iter().filter(|v| v.abs() > 1e-6 * scale).count();
    assert!(nonzero * 10 > want.numel(), "{what}: fewer than 10% nonzero values");
    let worst = got.data().iter().zip(want.data()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    eprintln!("{what}: largest difference from PyTorch {:.2e} of the scale", worst / scale);
    for (i, (a, b)) in got.data().iter().zip(want.data()).enumerate() {
        assert!((a - b).abs() <= tol * scale, "{what}[{i}]: {a} vs PyTorch {b} (scale {scale})");
    }
}

#[test]
fn matches_pytorch_forward_and_backward() {
    let all = fixture();
    let net = AlexNet { channels: [4, 6, 8, 6, 6], hidden: 16, classes: 3, dropout: 0.5 };
    let mut params = Params::new();
    for (name, _) in net.shapes() {
        params.insert(&name, get(&all, &name).clone());
    }
    net.check(&params).unwrap();
    let tape = Tape::new();
    let x = tape.leaf(get(&all, "input").clone());
    let features = net.features(&tape, &params, &x).unwrap();
    assert_close("features", features.value(), get(&all, "features"), 1e-5);
    let logits = net.classify(&tape, &params, &features, false, &mut nabla::Rng::new(0)).unwrap();
    assert_close("logits", logits.value(), get(&all, "logits"), 1e-5);

    let cot = Var::constant(get(&all, "cotangent").clone());
    let loss = tape.sum(&tape.mul(&logits, &cot).unwrap());
    let grads = tape.backward(&loss).unwrap();
    assert_close("grad.input", grads.get(&x).unwrap(), get(&all, "grad.input"), 1e-4);
    for (name, _) in net.shapes() {
        assert_close(&format!("grad.{name}"), grads.by_name(&name).unwrap(), get(&all, &format!("grad.{name}")), 1e-4);
    }
}

/// `tests/fixtures/gen_alexnet_full.py`'s formula: values in [-bound, bound)
/// from Knuth's multiplicative hash of each index (those of each salt 10^8
/// apart), exact in f64 on both sides.
fn hashed(count: usize, salt: u64, bound: f64) -> Vec<f32> {
    (salt * 100_000_000..salt * 100_000_000 + count as u64)
        .map(|i| {
            let u = (i.wrapping_mul(2_654_435_761) & 0xFFFF_FFFF) as f64 / 2f64.powi(32);
            ((u - 0.5) * 2.0 * bound) as f32
        })
        .collect()
}

/// A little-endian f32 fixture file from `tests/fixtures`.
fn fixture_floats(name: &str) -> Vec<f32> {
    let bytes = std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
}

/// The generator's formula weights for the full-size network, and its
/// biases (the formula's, a few nudged clear of the ReLUs' kinks: see
/// `gen_alexnet_full.py`).
fn full_size_params(net: &AlexNet) -> Params {
    let mut params = Params::new();
    let mut biases = fixture_floats("alexnet_full_biases.bin").into_iter();
    // The generator's order: layer by layer, a salt for each weight (1, 3, 5, ...); the biases
    // follow one another in the file in the same order.
    let layers = ["features.0", "features.3", "features.6", "features.8", "features.10"].into_iter().chain([
        "classifier.1",
        "classifier.4",
        "classifier.6",
    ]);
    let shapes = net.shapes();
    let shape = |n: &str| shapes.iter().find(|(m, _)| m == n).unwrap().1.clone();
    for (l, layer) in layers.enumerate() {
        let (ws, bs) = (shape(&format!("{layer}.weight")), shape(&format!("{layer}.bias")));
        let fan_in: usize = ws[1..].iter().product();
        let salt = 1 + 2 * l as u64;
        let w = hashed(ws.iter().product(), salt, (3.0 / fan_in as f64).sqrt());
        params.insert(&format!("{layer}.weight"), Tensor::from_vec(w, &ws).unwrap());
        params.insert(&format!("{layer}.bias"), Tensor::from_vec(biases.by_ref().take(bs[0]).collect(), &bs).unwrap());
    }
    assert!(biases.next().is_none(), "alexnet_full_biases.bin holds more biases than the network");
    net.check(&params).unwrap();
    params
}

/// The full-size network (torchvision's, 1000 classes) with the generator's
/// formula weights gives PyTorch's features and logits for one image.
#[test]
fn full_size_alexnet_matches_pytorch() {
    let net = AlexNet::torchvision(1000);
    let params = full_size_params(&net);
    let x = Var::constant(Tensor::from_vec(hashed(3 * 227 * 227, 999, 1.0), &[1, 3, 227, 227]).unwrap());
    let tape = Tape::inference();
    let features = net.features(&tape, &params, &x).unwrap();
    let logits = net.classify(&tape, &params, &features, false, &mut nabla::Rng::new(0)).unwrap();
    let want = Tensor::from_vec(fixture_floats("alexnet_full_outputs.bin"), &[9216 + 1000]).unwrap();
    let (wf, wl) = want.data().split_at(9216);
    assert_close("features", features.value(), &Tensor::from_vec(wf.to_vec(), &[1, 256, 6, 6]).unwrap(), 1e-5);
    assert_close("logits", logits.value(), &Tensor::from_vec(wl.to_vec(), &[1, 1000]).unwrap(), 1e-5);
}

/// The same network's gradients for a batch of two: those of the input and
/// of every convolution's weights (through the Winograd paths for conv2-5),
/// sampled as `gen_alexnet_full.py` samples them. The generator chose the
/// images (their salt is the file's first value) so that no ReLU or pooling
/// decision is within rounding of flipping: a flip would move the gradients
/// by far more than the tolerance, on a correct engine whose sums round
/// differently from PyTorch's.
#[test]
fn full_size_alexnet_gradients_match_pytorch() {
    let net = AlexNet::torchvision(1000);
    let params = full_size_params(&net);
    let fixture = fixture_floats("alexnet_full_grads.bin");
    let (images, want) = fixture.split_first().unwrap();
    let tape = Tape::new();
    let x = tape.leaf(Tensor::from_vec(hashed(2 * 3 * 227 * 227, *images as u64, 1.0), &[2, 3, 227, 227]).unwrap());
    let features = net.features(&tape, &params, &x).unwrap();
    let logits = net.classify(&tape, &params, &features, false, &mut nabla::Rng::new(0)).unwrap();
    let coefficients = Var::constant(Tensor::from_vec(hashed(2 * 1000, 997, 1.0), &[2, 1000]).unwrap());
    let grads = tape.backward(&tape.sum(&tape.mul(&logits, &coefficients).unwrap())).unwrap();
    assert_eq!(want.len(), 6 * 1001, "alexnet_full_grads.bin: six gradients of 1 + 1000 values");
    let convs = ["features.0", "features.3", "features.6", "features.8", "features.10"];
    let got = std::iter::once(grads.get(&x).unwrap())
        .chain(convs.iter().map(|c| grads.by_name(&format!("{c}.weight")).unwrap()));
    for ((name, got), want) in ["input"].into_iter().chain(convs).zip(got).zip(want.chunks(1001)) {
        let (scale, samples) = (want[0], &want[1..]);
        let step = got.numel() / samples.len();
        let largest = got.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        assert!((largest - scale).abs() <= 3e-5 * scale, "grad {name}: largest {largest} vs PyTorch {scale}");
        let mut worst = 0.0f32;
        for (j, &w) in samples.iter().enumerate() {
            let g = got.data()[j * step];
            worst = worst.max((g - w).abs() / scale);
            assert!((g - w).abs() <= 3e-5 * scale, "grad {name}[{}]: {g} vs PyTorch {w} (largest {scale})", j * step);
        }
        println!("grad {name}: worst error / largest value {worst:.1e}");
    }
}

#[test]
fn reads_torch_save_checkpoints_without_python() {
    let pth = nabla::weights::read(std::path::Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/alexnet_small.pth"
    )))
    .unwrap();
    let all = fixture();
    let net = AlexNet { channels: [4, 6, 8, 6, 6], hidden: 16, classes: 3, dropout: 0.5 };
    net.check(&pth).unwrap();
    for (name, _) in net.shapes() {
        assert_eq!(pth.get(&name).unwrap(), get(&all, &name), "{name}");
    }
}

/// A zip holding one `archive/data.pkl` with `pickle` in it.
fn zip_with(pickle: &[u8]) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    let mut z = zip::ZipWriter::new(&mut out);
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    z.start_file("archive/data.pkl", opts).unwrap();
    std::io::Write::write_all(&mut z, pickle).unwrap();
    z.finish().unwrap();
    out.into_inner()
}

#[test]
fn hostile_or_broken_checkpoints_are_clear_errors() {
    let good = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/alexnet_small.pth")).unwrap();
    let err = nabla::weights::read_pth(&good[..good.len() / 2]).unwrap_err().to_string();
    assert!(err.contains("zip"), "{err}");
    // A pickle that would run os.system('ls') in Python.
    let evil = zip_with(b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00ls\x85R.");
    let err = nabla::weights::read_pth(&evil).unwrap_err().to_string();
    assert!(err.contains("refusing to call os.system"), "{err}");
    let odd = zip_with(b"\x80\x02\xff.");
    assert!(nabla::weights::read_pth(&odd).unwrap_err().to_string().contains("unsupported opcode 0xff"));
    let truncated = zip_with(b"\x80\x02X\xff\xff\xff\x7f");
    assert!(nabla::weights::read_pth(&truncated).unwrap_err().to_string().contains("truncated"));
    // A storage that claims far more data than the archive holds.
    let huge = zip_with(
        b"\x80\x02}X\x01\x00\x00\x00wctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuJ\xff\xff\xff\x7ftQK\x00K\x01\x85K\x01\x85\x89tRs.",
    );
    let err = nabla::weights::read_pth(&huge).unwrap_err().to_string();
    assert!(err.contains("storage 0") && err.contains("larger than"), "{err}");
}

/// Convolutions, pooling and their gradients give the same bits on one
/// thread and on two, for one image (threads share the image) and for a
/// batch (threads take chunks of images). 32 channels and more take the
/// Winograd paths (conv2-5, forward, input and filter gradients).
#[test]
fn one_and_two_threads_give_the_same_bits() {
    let net = AlexNet { channels: [32, 32, 40, 32, 32], hidden: 16, classes: 3, dropout: 0.5 };
    let params = net.init(&mut nabla::Rng::new(5));
    for batch in [1, 3] {
        let x = Tensor::uniform(&[batch, 3, 227, 227], -1.0, 1.0, &mut nabla::Rng::new(6));
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let tape = Tape::new();
                let xv = tape.leaf(x.clone());
                let f = net.features(&tape, &params, &xv).unwrap();
                let logits = net.classify(&tape, &params, &f, false, &mut nabla::Rng::new(0)).unwrap();
                let grads = tape.backward(&tape.sum(&logits)).unwrap();
                let mut bits: Vec<u32> = logits.value().data().iter().map(|v| v.to_bits()).collect();
                bits.extend(grads.get(&xv).unwrap().data().iter().map(|v| v.to_bits()));
                for (name, _) in net.shapes() {
                    bits.extend(grads.by_name(&name).unwrap().data().iter().map(|v| v.to_bits()));
                }
                bits
            })
        };
        assert!(run(1) == run(2), "batch {batch}: 1 and 2 threads differ");
    }
}
