//! Hostile data and weight files: pickles that explode, nesting without end,
//! offsets that overflow, files that never end or are not files at all.
//! Cases that could exhaust memory or hang run the binary under an
//! address-space limit and a deadline, so a regression fails the test rather
//! than the machine.

use super::*;
use std::time::{Duration, Instant};

/// The address space a run may use. A correct build needs a few hundred MB
/// here (the largest, a capped gzip read, 512 MiB of buffer); each unfixed
/// reader needed gigabytes.
const AS_LIMIT: u64 = 1_500_000_000;
/// A run that takes longer is taken to hang (a FIFO opened for reading).
const DEADLINE: Duration = Duration::from_secs(60);

/// [`Case::fails`] under [`AS_LIMIT`] and [`DEADLINE`].
fn fails_bounded(case: &Case, names: &str, expect: &[&str]) {
    let name = case.name;
    let out = case.dir.join("out");
    let before = listing(&case.dir);
    // stderr goes to a file beside the case, so a chatty run cannot block on a full pipe.
    let log = case.dir.with_extension("stderr");
    let mut child = Command::new("prlimit")
        .arg(format!("--as={AS_LIMIT}"))
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_nabla"))
        .args([&case.input("bad.toml"), "--quiet", "--out", out.to_str().unwrap()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("prlimit runs");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{name}: still running after {DEADLINE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let err = std::fs::read_to_string(&log).unwrap_or_default();
    let _ = std::fs::remove_file(&log);
    assert!(!status.success(), "{name}: succeeded");
    assert_ne!(status.code(), None, "{name}: killed by a signal: {err}");
    assert!(!err.contains("panicked") && !err.contains("memory allocation"), "{name}: crashed: {err}");
    assert!(err.contains(names), "{name}: the message does not name {names}: {err}");
    for e in expect {
        assert!(err.contains(e), "{name}: expected '{e}' in: {err}");
    }
    assert!(!out.exists(), "{name}: wrote the output folder");
    assert_eq!(listing(&case.dir), before, "{name}: wrote files beside the inputs");
    let _ = std::fs::remove_dir_all(&case.dir);
}

fn gzip_members(parts: &[&[u8]]) -> Vec<u8> {
    let mut all = Vec::new();
    for part in parts {
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(part).unwrap();
        all.extend(gz.finish().unwrap());
    }
    all
}

/// A state dict pickle `{name: tensor}` over one float storage, with every
/// number as an 8-byte LONG1 (so offsets and sizes past 32 bits fit).
fn wide_state_dict(name: &str, numel: i64, offset: i64, size: &[i64], stride: &[i64]) -> Vec<u8> {
    let int = |p: &mut Vec<u8>, v: i64| {
        p.extend_from_slice(b"\x8a\x08");
        p.extend_from_slice(&v.to_le_bytes());
    };
    let text = |p: &mut Vec<u8>, s: &str| {
        p.push(0x8c);
        p.push(s.len() as u8);
        p.extend_from_slice(s.as_bytes());
    };
    let mut p = b"\x80\x02}".to_vec();
    text(&mut p, name);
    p.extend_from_slice(b"ctorch._utils\n_rebuild_tensor_v2\n((");
    text(&mut p, "storage");
    p.extend_from_slice(b"ctorch\nFloatStorage\n");
    text(&mut p, "0");
    text(&mut p, "cpu");
    int(&mut p, numel);
    p.extend_from_slice(b"tQ");
    int(&mut p, offset);
    p.push(b'(');
    size.iter().for_each(|&d| int(&mut p, d));
    p.extend_from_slice(b"t(");
    stride.iter().for_each(|&d| int(&mut p, d));
    p.extend_from_slice(b"t\x89)tRs.");
    p
}

#[test]
fn hostile_pickles_in_a_pth() {
    let broken = |name: &'static str, pickle: Vec<u8>, storage: &[u8], expect: &[&str]| {
        let case = Case::new(name);
        faces(&case);
        case.write("alexnet.pth", pth(&pickle, storage)).pipeline(&backbone());
        fails_bounded(&case, "alexnet.pth", expect);
    };
    // Memo 0 holds a tuple of 1000 ints; a list looks it up 100 000 times:
    // 3.2 GB if each lookup copies, 2 MB if they share.
    let mut bomb = b"\x80\x02(".to_vec();
    bomb.extend(std::iter::repeat_n(*b"K\x07", 1000).flatten());
    bomb.extend_from_slice(b"tq\x00](");
    bomb.extend(std::iter::repeat_n(*b"h\x00", 100_000).flatten());
    bomb.extend_from_slice(b"e.");
    broken("pickle-memo-bomb", bomb, &[], &["data.pkl", "not a dict of tensors"]);
    // t = (t, t) 64 times: 2^64 values once expanded.
    let mut doubling = b"\x80\x02)q\x00".to_vec();
    doubling.extend(std::iter::repeat_n(*b"h\x00h\x00\x86q\x00", 64).flatten());
    doubling.push(b'.');
    broken("pickle-doubling-memo", doubling, &[], &["data.pkl", "nest more than 32 deep"]);
    // A million nested tuples (2 MB): dropping them recursed past a pool thread's stack.
    let mut deep = b"\x80\x02)".to_vec();
    deep.extend(std::iter::repeat_n(0x85, 1_000_000));
    deep.push(b'.');
    broken("pickle-nested-a-million-deep", deep, &[], &["data.pkl", "nest more than 32 deep"]);
    let mut keys = b"\x80\x02)q\x00".to_vec();
    keys.extend(std::iter::repeat_n(*b"}h\x00Nsq\x00", 100_000).flatten());
    keys.push(b'.');
    broken("pickle-nested-dict-keys", keys, &[], &["data.pkl", "nest more than 32 deep"]);
    let marks = vec![b'('; 2_000_000];
    broken("pickle-two-million-marks", marks, &[], &["data.pkl", "builds more than"]);
    // offset + count wraps to 3 (inside a 4-float storage), then offset * 4 wraps.
    let wrap = wide_state_dict("features.0.bias", 4, i64::MAX, &[(1 << 61) + 1, 4], &[4, 1]);
    broken("pth-offset-plus-count-wraps", wrap, &[0; 16], &["features.0.bias", "not a dense slice"]);
    // A shape whose product wraps to the storage's 4 elements.
    let wrap = wide_state_dict("features.0.bias", 4, 0, &[(1 << 62) + 1, 4], &[4, 1]);
    broken("pth-shape-product-wraps", wrap, &[0; 16], &["features.0.bias", "not a dense slice"]);
    let huge = wide_state_dict("features.0.bias", i64::MAX, 0, &[4], &[1]);
    broken("pth-storage-bytes-overflow", huge, &[0; 16], &["features.0.bias", "larger than the 1073741824 bytes"]);
}

#[test]
fn weights_files_that_are_not_files_or_too_large() {
    let case = Case::new("weights-fifo");
    faces(&case);
    case.pipeline(&backbone());
    assert!(Command::new("mkfifo").arg(case.input("alexnet.pth")).status().unwrap().success());
    // The stage treats a non-regular path as absent: "not found" names it.
    fails_bounded(&case, "alexnet.pth", &[]);

    let case = Case::new("backbone-weights-sparse");
    faces(&case);
    case.pipeline(&backbone());
    std::fs::File::create(case.input("alexnet.pth")).unwrap().set_len(5 << 29).unwrap();
    fails_bounded(&case, "alexnet.pth", &["2684354560 bytes, more than the 1073741824"]);
}

#[test]
fn idx_files_that_lie_or_are_not_files() {
    let images = "train-images-idx3-ubyte";
    // 1.6 TB declared, 2 GB of zeros delivered by a 2 MB gzip file.
    let case = Case::new("idx-gzip-bomb");
    mnist(&case);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&idx(&[1 << 31, 28, 28], &[])).unwrap();
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..2048 {
        gz.write_all(&zeros).unwrap();
    }
    std::fs::remove_file(case.input(&format!("mnist/{images}"))).unwrap();
    case.write(&format!("mnist/{images}.gz"), gz.finish().unwrap()).pipeline(MNIST);
    fails_bounded(&case, images, &["more than the 268435456 an IDX file may hold"]);

    let case = Case::new("idx-fifo");
    mnist(&case);
    std::fs::remove_file(case.input(&format!("mnist/{images}"))).unwrap();
    assert!(Command::new("mkfifo").arg(case.input(&format!("mnist/{images}"))).status().unwrap().success());
    case.pipeline(MNIST);
    fails_bounded(&case, images, &["is a FIFO, not a regular file"]);

    let case = Case::new("idx-sparse");
    mnist(&case);
    std::fs::File::create(case.input(&format!("mnist/{images}"))).unwrap().set_len(5 << 29).unwrap();
    case.pipeline(MNIST);
    fails_bounded(&case, images, &["2684354560 bytes, more than the"]);

    // A valid two-member gzip file is read whole: the run gets past the
    // images, to the labels' own mistake.
    let case = Case::new("idx-two-member-gzip");
    mnist(&case);
    let raw = std::fs::read(case.input(&format!("mnist/{images}"))).unwrap();
    std::fs::remove_file(case.input(&format!("mnist/{images}"))).unwrap();
    case.write(&format!("mnist/{images}.gz"), gzip_members(&[&raw[..1000], &raw[1000..]]))
        .write("mnist/train-labels-idx1-ubyte", idx(&[100], &[10; 100]))
        .pipeline(MNIST);
    fails_bounded(&case, "train-labels-idx1-ubyte", &["label 10 at index 0 is not a digit"]);

    let case = Case::new("mnist-no-images");
    mnist(&case);
    case.write(&format!("mnist/{images}"), idx(&[0, 28, 28], &[]))
        .write("mnist/train-labels-idx1-ubyte", idx(&[0], &[]))
        .pipeline(MNIST);
    fails_bounded(&case, images, &["holds no images"]);
}

#[test]
fn face_folders_with_special_files() {
    let special = |name: &'static str, make: &dyn Fn(&str), expect: &[&str]| {
        let case = Case::new(name);
        faces(&case);
        make(&case.input("faces/aa9.png"));
        case.pipeline(FACES);
        fails_bounded(&case, "aa9.png", expect);
    };
    let fifo = |p: &str| assert!(Command::new("mkfifo").arg(p).status().unwrap().success());
    special("faces-fifo", &fifo, &["is a FIFO, not a regular file"]);
    special("faces-link-to-dev-zero", &|p| std::os::unix::fs::symlink("/dev/zero", p).unwrap(), &["is a device"]);
    let sparse = |p: &str| std::fs::File::create(p).unwrap().set_len(5 << 29).unwrap();
    special("faces-sparse-image", &sparse, &["2684354560 bytes, more than the"]);
    special("faces-folder-named-like-an-image", &|p| std::fs::create_dir(p).unwrap(), &["is a folder"]);
}
