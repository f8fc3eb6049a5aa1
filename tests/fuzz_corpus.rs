//! Replays the fuzz corpora through the parsers' front doors (`nabla::parsers`),
//! so CI checks on stable Rust what the fuzz targets (`fuzz/`, nightly) found:
//! every seed (a valid file) must parse, and every committed crash file
//! (`fuzz/regressions/<target>/`) must now give an error or a value, not a panic.

use std::path::{Path, PathBuf};

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut v: Vec<PathBuf> =
        entries.map(|e| e.unwrap().path()).filter(|p| p.is_file() && p.extension().is_none_or(|e| e != "py")).collect();
    v.sort();
    v
}

fn fuzz_dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz").join(kind).join(target)
}

#[test]
fn every_seed_parses() {
    for (target, parse) in nabla::parsers::TARGETS {
        let seeds = files(&fuzz_dir("seeds", target));
        assert!(!seeds.is_empty(), "no seeds for fuzz target {target}");
        for file in seeds {
            let bytes = std::fs::read(&file).unwrap();
            if let Err(e) = parse(&bytes) {
                panic!("seed {} of target {target} does not parse: {e}", file.display());
            }
        }
    }
}

#[test]
fn every_crash_file_is_now_a_clean_outcome() {
    for (target, parse) in nabla::parsers::TARGETS {
        for file in files(&fuzz_dir("regressions", target)) {
            let bytes = std::fs::read(&file).unwrap();
            let outcome = std::panic::catch_unwind(|| parse(&bytes).map(|_| ()));
            assert!(outcome.is_ok(), "{} (target {target}) panics again", file.display());
        }
    }
}

/// Every seed with each byte position damaged a few ways: a cheap stand-in for
/// the fuzzer on stable Rust, so a CI run touches the error paths too.
#[test]
fn damaged_seeds_never_panic() {
    for (target, parse) in nabla::parsers::TARGETS {
        for file in files(&fuzz_dir("seeds", target)) {
            let bytes = std::fs::read(&file).unwrap();
            for cut in (0..bytes.len()).step_by(1 + bytes.len() / 64) {
                let truncated = &bytes[..cut];
                let mut flipped = bytes.clone();
                flipped[cut] ^= 0xff;
                let mut big = bytes.clone();
                big[cut] = 0x7f;
                for case in [truncated, &flipped[..], &big[..]] {
                    let outcome = std::panic::catch_unwind(|| parse(case).map(|_| ()));
                    assert!(outcome.is_ok(), "{} (target {target}) damaged at byte {cut} panics", file.display());
                }
            }
        }
    }
}
