//! The front door of every parser that reads bytes from outside: pipeline
//! files, IDX data, weight files, face images and the FaceScrub list. The
//! fuzz targets (`fuzz/`) and the corpus replay test (`tests/fuzz_corpus.rs`)
//! call exactly these, so what is fuzzed is what users run. Each returns the
//! parser's own error message; none may panic, hang or allocate without bound.

use std::path::Path;

/// A pipeline file: TOML syntax, schema, then validation.
pub fn pipeline(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::pipeline::load::parse(Path::new("fuzz.toml"), text, &[]).map(drop).map_err(|e| e.to_string())
}

/// An IDX array, raw or gzipped (as a mapped file is read).
pub fn idx(bytes: &[u8]) -> Result<(), String> {
    crate::data::idx::parse_file(Path::new("fuzz.idx"), bytes).map(drop).map_err(|e| e.to_string())
}

/// A weights file: a `.pth` zip checkpoint or safetensors.
pub fn weights(bytes: &[u8]) -> Result<(), String> {
    crate::weights::parse(bytes).map(drop).map_err(|e| e.to_string())
}

/// A face image, decoded and resized to a 32 x 32 colour crop.
pub fn image(bytes: &[u8]) -> Result<(), String> {
    crate::data::faces::decode_image(Path::new("fuzz.png"), bytes, 32, crate::data::faces::Color::Rgb, 1.0 / 255.0)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The FaceScrub list (`facescrub_actors.txt`), all actors kept.
pub fn facescrub_list(bytes: &[u8]) -> Result<(), String> {
    let text = std::str::from_utf8(bytes).map_err(|e| format!("not UTF-8: {e}"))?;
    crate::fetch::parse_list(Path::new("fuzz.txt"), text, &[]).map(drop).map_err(|e| e.to_string())
}

/// A parser's front door: bytes in, its error message out.
pub type Parser = fn(&[u8]) -> Result<(), String>;

/// Every target by name, for the fuzz crate and the replay test.
pub const TARGETS: [(&str, Parser); 5] =
    [("pipeline", pipeline), ("idx", idx), ("weights", weights), ("image", image), ("facescrub_list", facescrub_list)];
