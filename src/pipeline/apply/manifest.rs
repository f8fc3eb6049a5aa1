//! `model.json`: what a run folder needs to be used again. Beside the
//! weights, a training run writes the pipeline that produced them
//! (`pipeline.toml`: the file as it ran, after `--set`, with the sweep's and
//! the trials' choice applied) and this manifest: the class names in output
//! order, the input each example must be turned into, the weights' SHA-256,
//! and the backbone's weights' identity. `nabla predict` and `nabla eval`
//! read it back, trusting nothing: every field is checked against the
//! pipeline and the weights before use.

use serde::{Deserialize, Serialize};

/// The manifest's file name in a run folder.
pub const MANIFEST: &str = "model.json";
/// The pipeline's file name in a run folder.
pub const PIPELINE: &str = "pipeline.toml";
/// What `format` must say.
pub const FORMAT: &str = "nabla-run";

/// The most classes a manifest may name (a class name is at most 256 bytes).
pub const MAX_CLASSES: usize = 100_000;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always "nabla-run".
    pub format: String,
    /// Version of this layout; 1.
    pub version: u32,
    /// The nabla that wrote it.
    pub nabla_version: String,
    /// The pipeline's name.
    pub name: String,
    /// The trained weights: a file of this folder and its SHA-256 (hex).
    pub weights: FileDigest,
    /// Class names, in the order of the model's outputs.
    pub classes: Vec<String>,
    /// What one example is before the model (or its backbone) sees it.
    pub input: Input,
    /// The fixed network in front of the model, if the run had one.
    pub backbone: Option<BackboneDigest>,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub file: String,
    pub sha256: String,
}

/// The preprocessing of one image: decoded, resized to `side` x `side`
/// (triangle filter), made gray or RGB (channels first), each 8-bit value
/// times `pixel_scale`, then, when `normalize` is "mean_max_abs", the mean
/// subtracted and the result divided by its largest absolute value.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// The data set the model was trained on ("mnist" or "faces").
    pub dataset: String,
    pub channels: usize,
    pub side: usize,
    pub pixel_scale: f32,
    pub normalize: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BackboneDigest {
    /// `"file <path>"` or `"random-init"`, as the run's report says.
    pub source: String,
    /// SHA-256 (hex) of the backbone's tensors as used: each name, then its
    /// values as little-endian f32, in name order.
    pub tensors_sha256: String,
}

/// SHA-256 of `bytes`, in hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The identity of a set of tensors (see [`BackboneDigest::tensors_sha256`]).
pub fn tensors_sha256(params: &crate::nn::Params) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (name, t) in params.iter() {
        h.update((name.len() as u64).to_le_bytes());
        h.update(name.as_bytes());
        t.data().iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

impl Manifest {
    /// `model.json`'s text as `nabla predict` and `nabla eval` read it: the
    /// JSON, then [`Manifest::check`].
    pub fn parse(text: &str) -> Result<Manifest, String> {
        let manifest: Manifest = serde_json::from_str(text).map_err(|e| e.to_string())?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The manifest's own checks (the caller checks it against the
    /// pipeline and the files): format and version, a plain weights file
    /// name, a digest that is one, class names that can be printed.
    pub fn check(&self) -> Result<(), String> {
        if self.format != FORMAT {
            return Err(format!("format: '{}' is not '{FORMAT}'", self.format));
        }
        if self.version != 1 {
            return Err(format!("version: {} is not a version this nabla reads (1)", self.version));
        }
        // It names `eval/<name>`: one folder name, as a pipeline's name is.
        crate::pipeline::names::folder_name(&self.name).map_err(|m| format!("name: {m}"))?;
        crate::pipeline::names::file_name(&self.weights.file).map_err(|m| format!("weights.file: {m}"))?;
        let hex = |s: &str| s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex(&self.weights.sha256) {
            return Err("weights.sha256: not 64 hexadecimal digits".into());
        }
        if let Some(b) = &self.backbone {
            if !hex(&b.tensors_sha256) {
                return Err("backbone.tensors_sha256: not 64 hexadecimal digits".into());
            }
        }
        if self.classes.is_empty() || self.classes.len() > MAX_CLASSES {
            return Err(format!("classes: {} names; a model has 1 to {MAX_CLASSES} classes", self.classes.len()));
        }
        for (i, c) in self.classes.iter().enumerate() {
            if c.is_empty() || c.len() > 256 || c.chars().any(|c| c.is_control() || crate::terminal::hidden(c)) {
                return Err(format!(
                    "classes[{i}]: a class name is 1 to 256 bytes with no control characters or marks that reorder text"
                ));
            }
            if self.classes[..i].contains(c) {
                return Err(format!("classes[{i}]: '{c}' is named twice"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn good() -> Manifest {
        Manifest {
            format: FORMAT.into(),
            version: 1,
            nabla_version: "0.1.0".into(),
            name: "t".into(),
            weights: FileDigest { file: "weights.safetensors".into(), sha256: "ab".repeat(32) },
            classes: vec!["a".into(), "b".into()],
            input: Input {
                dataset: "mnist".into(),
                channels: 1,
                side: 28,
                pixel_scale: 1.0 / 255.0,
                normalize: "none".into(),
            },
            backbone: None,
        }
    }

    #[test]
    fn a_good_manifest_passes_and_round_trips() {
        let m = good();
        m.check().unwrap();
        let back: Manifest = serde_json::from_str(&serde_json::to_string(&m).unwrap()).unwrap();
        assert_eq!(back, m);
    }

    #[test]
    fn hostile_fields_are_named() {
        type Edit = Box<dyn Fn(&mut Manifest)>;
        let cases: Vec<(Edit, &str)> = vec![
            (Box::new(|m| m.format = "other".into()), "format"),
            (Box::new(|m| m.version = 2), "version"),
            (Box::new(|m| m.weights.file = "../../etc/passwd".into()), "weights.file"),
            (Box::new(|m| m.weights.file = ".hidden".into()), "weights.file"),
            (Box::new(|m| m.weights.sha256 = "zz".into()), "weights.sha256"),
            (Box::new(|m| m.name = "../../x".into()), "name"),
            (Box::new(|m| m.name = "/tmp/x".into()), "name"),
            (Box::new(|m| m.name = ".".into()), "name"),
            (Box::new(|m| m.name = "n".repeat(30_000_000)), "name"),
            (Box::new(|m| m.classes.clear()), "classes"),
            (Box::new(|m| m.classes[1] = "a".into()), "classes[1]"),
            (Box::new(|m| m.classes[0] = "\u{1b}[2J".into()), "classes[0]"),
            (Box::new(|m| m.classes[0] = "\u{202e}gnp.exe".into()), "classes[0]"),
            (Box::new(|m| m.classes[0] = "x".repeat(300)), "classes[0]"),
        ];
        for (spoil, field) in cases {
            let mut m = good();
            spoil(&mut m);
            let e = m.check().unwrap_err();
            assert!(e.starts_with(field), "{field}: {e}");
        }
    }
}
