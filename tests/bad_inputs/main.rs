//! The bad-input catalogue: every case runs the real `nabla` binary on a
//! pipeline file, data or weights that are wrong in one way, and must end with
//! a non-zero exit, a message naming the offending file and the problem, no
//! panic, and nothing written: no output folder, no stray files beside the
//! inputs.

mod layers;
mod ownership;
mod paths;
mod pipelines;
mod readers;
mod state;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// One case's folder: `in/` holds its inputs, `out/` must never appear.
struct Case {
    name: &'static str,
    dir: PathBuf,
}

impl Case {
    fn new(name: &'static str) -> Case {
        let dir = std::env::temp_dir().join(format!("nabla-bad-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("in")).unwrap();
        Case { name, dir }
    }

    /// Path of an input, as text for pipelines and arguments.
    fn input(&self, rel: &str) -> String {
        self.dir.join("in").join(rel).to_str().unwrap().to_string()
    }

    fn write(&self, rel: &str, bytes: impl AsRef<[u8]>) -> &Case {
        let path = self.dir.join("in").join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        self
    }

    /// Write `bad.toml` from a template (`{IN}` becomes the inputs folder).
    fn pipeline(&self, text: &str) -> &Case {
        self.write("bad.toml", text.replace("{IN}", &self.input("")))
    }

    /// Run `nabla in/bad.toml --out out <extra>` and check the outcome.
    fn fails(&self, extra: &[&str], names: &str, expect: &[&str]) {
        let out = self.dir.join("out");
        self.fails_with_out(&out, extra, names, expect);
    }

    fn fails_with_out(&self, out: &Path, extra: &[&str], names: &str, expect: &[&str]) {
        let before = listing(&self.dir);
        let file = self.input("bad.toml");
        let mut args = vec![file.as_str(), "--quiet", "--out", out.to_str().unwrap()];
        args.extend(extra);
        let o = Command::new(env!("CARGO_BIN_EXE_nabla"))
            .args(&args)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("the nabla binary runs");
        let err = String::from_utf8_lossy(&o.stderr);
        let name = self.name;
        assert!(!o.status.success(), "{name}: succeeded");
        assert_ne!(o.status.code(), None, "{name}: killed by a signal: {err}");
        assert!(!err.contains("panicked"), "{name}: panicked: {err}");
        assert!(err.contains(names), "{name}: the message does not name {names}: {err}");
        for e in expect {
            assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
        }
        assert!(!out.exists(), "{name}: wrote the output folder");
        assert_eq!(listing(&self.dir), before, "{name}: wrote files beside the inputs");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Every path under `dir`, sorted.
fn listing(dir: &Path) -> Vec<PathBuf> {
    let mut all = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            all.push(p);
        }
    }
    all.sort();
    all
}

// ---------------------------------------------------------------- inputs

fn idx(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

/// A small, valid MNIST folder `in/mnist` (100 training, 20 test images).
fn mnist(case: &Case) {
    let images = |n: usize| idx(&[n as u32, 28, 28], &(0..n * 784).map(|i| (i % 251) as u8).collect::<Vec<_>>());
    let labels = |n: usize| idx(&[n as u32], &(0..n).map(|i| (i % 10) as u8).collect::<Vec<_>>());
    case.write("mnist/train-images-idx3-ubyte", images(100))
        .write("mnist/train-labels-idx1-ubyte", labels(100))
        .write("mnist/t10k-images-idx3-ubyte", images(20))
        .write("mnist/t10k-labels-idx1-ubyte", labels(20));
}

const MNIST: &str = r#"
version = 1
name = "bad"
seed = 0

[data]
dataset = "mnist"
root = "{IN}/mnist"

[model]
kind = "linear"

[train]
optimizer = "sgd"
lr = 1e-5
iterations = 2
batch_size = 0
loss = "sum"
eval_every = 1
"#;

fn png(w: u32, h: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(w, h, |x, y| image::Luma([(x * 7 + y * 13) as u8]));
    let mut out = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageLuma8(img).write_to(&mut out, image::ImageOutputFormat::Png).unwrap();
    out.into_inner()
}

/// A valid faces folder `in/faces`: actors aa and bb, 4 images each.
fn faces(case: &Case) {
    for actor in ["aa", "bb"] {
        for i in 0..4 {
            case.write(&format!("faces/{actor}{i}.png"), png(12, 12));
        }
    }
}

const FACES: &str = r#"
version = 1
name = "bad"
seed = 0

[data]
dataset = "faces"
root = "{IN}/faces"
actors = ["aa", "bb"]
size = 32
color = "gray"
split = { train = 2, test = 1, validation = 1 }

[model]
kind = "mlp"
hidden = [4]
activation = "relu"

[train]
optimizer = "adam"
lr = 1e-3
loss = "mean"
epochs = 1
batches_per_epoch = 1
steps_per_batch = 2
"#;

/// [`FACES`] through AlexNet: 227 x 227 colour crops, and a backbone whose
/// weights file each case writes (no fallback to random weights).
fn backbone() -> String {
    let swap = |text: String, from: &str, to: &str| {
        assert!(text.contains(from), "the FACES template lacks '{from}'");
        text.replace(from, to)
    };
    let text = swap(
        FACES.to_string(),
        "size = 32\ncolor = \"gray\"",
        "size = 227\ncolor = \"rgb\"\nnormalize = \"mean_max_abs\"",
    );
    swap(
        text,
        "\n[model]",
        "\n[backbone]\nkind = \"alexnet\"\nweights = \"{IN}/alexnet.pth\"\nif_missing = \"error\"\ncache = \"{IN}/cache\"\n\n[model]",
    )
}

/// A safetensors file of zero-filled F32 tensors.
fn safetensors(tensors: &[(&str, &[usize])]) -> Vec<u8> {
    let mut header = Vec::new();
    let mut offset = 0;
    for (name, shape) in tensors {
        let bytes = 4 * shape.iter().product::<usize>();
        header.push(format!(
            "\"{name}\":{{\"dtype\":\"F32\",\"shape\":{shape:?},\"data_offsets\":[{offset},{}]}}",
            offset + bytes
        ));
        offset += bytes;
    }
    let json = format!("{{{}}}", header.join(","));
    let mut out = (json.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(json.as_bytes());
    out.resize(out.len() + offset, 0);
    out
}

/// A zip archive of stored entries, as `torch.save` writes.
fn zip(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in entries {
        w.start_file(*name, opts).unwrap();
        w.write_all(bytes).unwrap();
    }
    w.finish().unwrap().into_inner()
}

/// A protocol-2 pickle of `{name: tensor}` over one float storage of `numel`.
fn state_dict_pickle(name: &str, numel: usize, size: &[usize]) -> Vec<u8> {
    let mut p = b"\x80\x02}q\x00X".to_vec();
    let s = |p: &mut Vec<u8>, text: &str| {
        p.extend_from_slice(&(text.len() as u32).to_le_bytes());
        p.extend_from_slice(text.as_bytes());
    };
    s(&mut p, name);
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n(");
    // persistent id ('storage', torch.FloatStorage, '0', 'cpu', numel)
    p.extend_from_slice(b"(X");
    s(&mut p, "storage");
    p.extend_from_slice(b"ctorch\nFloatStorage\nX");
    s(&mut p, "0");
    p.push(b'X');
    s(&mut p, "cpu");
    p.push(b'J');
    p.extend_from_slice(&(numel as i32).to_le_bytes());
    p.extend_from_slice(b"tQK\x00(");
    for d in size {
        p.push(b'J');
        p.extend_from_slice(&(*d as i32).to_le_bytes());
    }
    p.extend_from_slice(b"t(");
    let mut stride = 1;
    let mut strides = Vec::new();
    for d in size.iter().rev() {
        strides.push(stride);
        stride *= d;
    }
    for st in strides.iter().rev() {
        p.push(b'J');
        p.extend_from_slice(&(*st as i32).to_le_bytes());
    }
    p.extend_from_slice(b"t\x89ccollections\nOrderedDict\n)Rtq\x01Rq\x02s.");
    p
}

fn pth(pickle: &[u8], storage: &[u8]) -> Vec<u8> {
    zip(&[("archive/data.pkl", pickle), ("archive/data/0", storage)])
}

// ---------------------------------------------------------------- pipeline files

#[test]
fn pipeline_file_mistakes() {
    let edit = |name: &'static str, from: &str, to: &str, expect: &[&str]| {
        let case = Case::new(name);
        mnist(&case);
        assert!(MNIST.contains(from), "{name}: the template lacks '{from}'");
        case.pipeline(&MNIST.replace(from, to)).fails(&[], "bad.toml", expect);
    };
    edit("unknown-key", "loss = \"sum\"", "los = \"sum\"", &["unknown field `los`"]);
    edit("unknown-top-key", "seed = 0", "seed = 0\nseeds = 1", &["unknown field `seeds`"]);
    edit("wrong-type", "iterations = 2", "iterations = \"two\"", &["invalid type"]);
    edit("float-for-int", "iterations = 2", "iterations = 2.5", &["invalid type"]);
    edit("negative-lr", "lr = 1e-5", "lr = -1e-5", &["train.lr", "must be positive"]);
    edit("zero-lr", "lr = 1e-5", "lr = 0.0", &["train.lr", "must be positive"]);
    edit("nan-lr", "lr = 1e-5", "lr = nan", &["train.lr", "must be positive"]);
    edit("zero-iterations", "iterations = 2", "iterations = 0", &["train.iterations: must be at least 1"]);
    edit("negative-iterations", "iterations = 2", "iterations = -3", &["invalid value"]);
    edit("zero-eval-every", "eval_every = 1", "eval_every = 0", &["train.eval_every: must be at least 1"]);
    edit("batch-larger-than-data", "batch_size = 0", "batch_size = 101", &["train.batch_size: 101 is larger"]);
    edit("unknown-optimizer", "\"sgd\"", "\"rmsprop\"", &["unknown variant `rmsprop`"]);
    edit("unknown-dataset", "\"mnist\"", "\"cifar\"", &["unknown variant `cifar`"]);
    edit("unknown-model", "\"linear\"", "\"transformer\"", &["unknown variant `transformer`"]);
    edit("unknown-loss", "\"sum\"", "\"hinge\"", &["unknown variant `hinge`"]);
    edit("version", "version = 1", "version = 2", &["version 2 is not supported"]);
    edit("syntax", "[train]", "[train", &["TOML parse error"]);
    edit("duplicate-key", "seed = 0", "seed = 0\nseed = 1", &["duplicate key"]);
    edit("bad-name", "name = \"bad\"", "name = \"../escape\"", &["name", "must be non-empty letters"]);
    edit("no-stage", "[train]", "[unused]", &["unknown field `unused`"]);
    edit("save-path-escapes", "eval_every = 1", "eval_every = 1\nsave = \"../w.safetensors\"", &["plain file name"]);
    edit("train-limit-too-big", "root = ", "train_limit = 1000\nroot = ", &["data.train_limit: 1000 is larger"]);
    edit(
        "bad-init",
        "kind = \"linear\"",
        "kind = \"linear\"\nweight_init = { kind = \"uniform\", low = 0.0 }",
        &["unknown field `low`"],
    );

    let case = Case::new("not-utf8");
    mnist(&case);
    case.write("bad.toml", b"version = 1\nname = \"\xff\xfe\"\n").fails(&[], "bad.toml", &["UTF-8"]);

    let case = Case::new("set-unknown-key");
    mnist(&case);
    case.pipeline(MNIST).fails(&["--set", "train.lrate=0.1"], "bad.toml", &["unknown field `lrate`"]);

    let case = Case::new("set-without-equals");
    mnist(&case);
    case.pipeline(MNIST).fails(&["--set", "train.lr"], "bad.toml", &["expected section.key=value"]);

    let case = Case::new("diverges");
    mnist(&case);
    case.pipeline(MNIST).fails(
        &["--set", "train.lr=1e38", "--set", "train.iterations=30"],
        "bad.toml",
        &["training diverged at iteration", "learning rate 1e38"],
    );
}

#[test]
fn a_missing_pipeline_file_is_named() {
    let case = Case::new("no-such-pipeline");
    let o = Command::new(env!("CARGO_BIN_EXE_nabla")).arg(case.input("nothing.toml")).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success() && err.contains("nothing.toml") && err.contains("cannot be read"), "{err}");
}

#[test]
fn output_folder_that_cannot_be_written() {
    let case = Case::new("out-under-a-file");
    mnist(&case);
    case.pipeline(MNIST).write("a-file", b"not a folder");
    let out = case.dir.join("in/a-file/out");
    case.fails_with_out(&out, &[], "a-file", &["cannot"]);
}

// ---------------------------------------------------------------- MNIST IDX data

#[test]
fn mnist_data_mistakes() {
    let broken = |name: &'static str, file: &str, bytes: Vec<u8>, expect: &[&str]| {
        let case = Case::new(name);
        mnist(&case);
        case.write(&format!("mnist/{file}"), bytes).pipeline(MNIST).fails(&[], file, expect);
    };
    let images = "train-images-idx3-ubyte";
    let labels = "train-labels-idx1-ubyte";
    broken("truncated-idx", images, idx(&[100, 28, 28], &[0; 5000]), &["truncated"]);
    broken("idx-claims-2^31-images", images, idx(&[1 << 31, 28, 28], &[0; 784]), &["truncated", "2147483648"]);
    broken("idx-overflowing-dims", images, idx(&[u32::MAX, u32::MAX, u32::MAX], &[]), &["overflow"]);
    broken("idx-wrong-magic", images, b"PK\x03\x04 not idx".to_vec(), &["not an IDX file"]);
    broken("idx-wrong-type", images, vec![0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], &["0x0d is not supported"]);
    broken("idx-empty-file", images, vec![], &["too short"]);
    broken("idx-header-cut", images, vec![0, 0, 8, 3, 0, 0, 0], &["header ends before dimension"]);
    broken("idx-longer-than-header", labels, idx(&[100], &[1; 101]), &["longer than its header says"]);
    broken("image-of-wrong-size", images, idx(&[100, 27, 27], &[0; 100 * 729]), &["expected dimensions [n, 28, 28]"]);
    broken("labels-count-mismatch", labels, idx(&[99], &[1; 99]), &["99 labels for 100 images"]);
    broken("label-not-a-digit", labels, idx(&[100], &[10; 100]), &["label 10 at index 0 is not a digit"]);
    broken("labels-not-1d", labels, idx(&[10, 10], &[1; 100]), &["expected dimensions [n]"]);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&idx(&[100, 28, 28], &[7; 78400])).unwrap();
    let gz = gz.finish().unwrap();
    broken("gzip-truncated", "train-images-idx3-ubyte.gz", gz[..gz.len() / 2].to_vec(), &["truncated"]);
    broken("gzip-header-only", "train-images-idx3-ubyte.gz", vec![0x1f, 0x8b, 8, 0], &["gzip"]);

    let case = Case::new("missing-data-folder");
    case.pipeline(MNIST).fails(&[], "mnist", &["MNIST folder not found"]);

    let case = Case::new("missing-labels-file");
    mnist(&case);
    std::fs::remove_file(case.input("mnist/t10k-labels-idx1-ubyte")).unwrap();
    case.pipeline(MNIST).fails(&[], "t10k-labels-idx1-ubyte", &["MNIST file not found"]);
}

// ---------------------------------------------------------------- face images

#[test]
fn face_image_mistakes() {
    let broken = |name: &'static str, file: &str, bytes: Vec<u8>, expect: &[&str]| {
        let case = Case::new(name);
        faces(&case);
        case.write(&format!("faces/{file}"), bytes).pipeline(FACES).fails(&[], file, expect);
    };
    broken("zero-byte-jpeg", "aa1.jpg", vec![], &["cannot decode the image"]);
    broken("text-as-png", "aa1.png", b"hello, not a picture".to_vec(), &["cannot decode the image"]);
    broken("truncated-png", "aa2.png", png(12, 12)[..40].to_vec(), &["cannot decode the image"]);
    // The header says 60000 x 60000 (with a correct checksum): refused before
    // any pixel buffer is allocated.
    let mut lying = png(12, 12);
    lying[16..20].copy_from_slice(&60000u32.to_be_bytes());
    lying[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&lying[12..29]);
    lying[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    broken("png-lies-about-size", "bb3.png", lying, &["cannot decode the image"]);

    let edit = |name: &'static str, from: &str, to: &str, expect: &[&str]| {
        let case = Case::new(name);
        faces(&case);
        assert!(FACES.contains(from), "{name}: the template lacks '{from}'");
        case.pipeline(&FACES.replace(from, to)).fails(&[], "bad.toml", expect);
    };
    edit("zero-scale", "size = 32", "size = 32\nscale = 0.0", &["data.scale", "is not in (0, 1]"]);
    edit("zero-size", "size = 32", "size = 0", &["data.size", "not between 1 and 1024"]);
    edit("no-actors", "[\"aa\", \"bb\"]", "[]", &["data.actors", "at least one actor"]);
    edit("zero-train-split", "train = 2", "train = 0", &["data.split", "at least one training image"]);

    let case = Case::new("missing-faces-folder");
    case.pipeline(FACES).fails(&[], "faces", &["face image folder not found"]);

    let case = Case::new("actor-without-images");
    faces(&case);
    case.pipeline(&FACES.replace("[\"aa\", \"bb\"]", "[\"aa\", \"cc\"]")).fails(
        &[],
        "faces",
        &["no images of actor 'cc'"],
    );

    let case = Case::new("split-needs-more-images");
    faces(&case);
    case.pipeline(&FACES.replace("train = 2", "train = 5")).fails(&[], "faces", &["actor 'aa' has 4 usable images"]);
}

// ---------------------------------------------------------------- weights files

#[test]
fn model_weights_mistakes() {
    let with_load = MNIST.replace("kind = \"linear\"", "kind = \"linear\"\nload = \"{IN}/w.safetensors\"");
    let broken = |name: &'static str, bytes: Vec<u8>, expect: &[&str]| {
        let case = Case::new(name);
        mnist(&case);
        case.write("w.safetensors", bytes).pipeline(&with_load).fails(&[], "w.safetensors", expect);
    };
    let (w, b): (&[usize], &[usize]) = (&[10, 784], &[10]);
    broken("weights-missing-tensor", safetensors(&[("fc1.weight", w)]), &["missing tensor 'fc1.bias'"]);
    broken(
        "weights-extra-tensor",
        safetensors(&[("fc1.weight", w), ("fc1.bias", b), ("fc2.bias", b)]),
        &["unexpected tensor 'fc2.bias'"],
    );
    broken(
        "weights-wrong-shape",
        safetensors(&[("fc1.weight", &[784, 10]), ("fc1.bias", b)]),
        &["tensor 'fc1.weight' has shape [784, 10], expected [10, 784]"],
    );
    broken(
        "weights-truncated",
        safetensors(&[("fc1.weight", w), ("fc1.bias", b)])[..100].to_vec(),
        &["not a valid safetensors file"],
    );
    broken("weights-header-claims-huge", u64::MAX.to_le_bytes().to_vec(), &["not a valid safetensors file"]);

    let case = Case::new("weights-file-missing");
    mnist(&case);
    case.pipeline(&with_load).fails(&[], "w.safetensors", &["cannot read"]);
}

#[test]
fn backbone_weights_mistakes() {
    let broken = |name: &'static str, bytes: Vec<u8>, expect: &[&str]| {
        let case = Case::new(name);
        faces(&case);
        case.write("alexnet.pth", bytes).pipeline(&backbone()).fails(&[], "alexnet.pth", expect);
    };
    let good = pth(&state_dict_pickle("features.0.bias", 64, &[64]), &[0; 256]);
    broken("pth-truncated-zip", good[..good.len() / 2].to_vec(), &["not a valid zip archive"]);
    broken("pth-without-pickle", zip(&[("archive/version", b"3")]), &["no data.pkl in the archive"]);
    let mut evil = b"\x80\x02cos\nsystem\nX\x02\x00\x00\x00lsq\x00\x85R.".to_vec();
    broken("pickle-calls-os-system", pth(&evil, &[]), &["refusing to call os.system"]);
    evil = b"\x80\x02\xff.".to_vec();
    broken("pickle-unexpected-opcode", pth(&evil, &[]), &["pickle byte", "opcode"]);
    broken(
        "pth-storage-too-short",
        pth(&state_dict_pickle("features.0.bias", 64, &[64]), &[0; 100]),
        &["'features.0.bias': storage 0 holds 100 bytes, 256 expected"],
    );
    broken(
        "pth-view-past-its-storage",
        pth(&state_dict_pickle("features.0.bias", 8, &[64]), &[0; 32]),
        &["not a dense slice of its storage"],
    );
    broken(
        "backbone-missing-tensors",
        pth(&state_dict_pickle("features.0.bias", 64, &[64]), &[0; 256]),
        &["missing", "features.0.weight"],
    );
    broken("neither-zip-nor-safetensors", b"just some text".to_vec(), &["neither a torch zip checkpoint"]);
    let legacy = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny_legacy.pth")).unwrap();
    broken("legacy-pth-cut-in-its-pickles", legacy[..300].to_vec(), &["state dict: pickle byte 300"]);
    broken(
        "legacy-pth-cut-in-its-storages",
        legacy[..legacy.len() - 10].to_vec(),
        &["storage", "bytes left in the file"],
    );

    let case = Case::new("backbone-weights-absent");
    faces(&case);
    case.pipeline(&backbone()).fails(&[], "alexnet.pth", &["not found"]);
}
