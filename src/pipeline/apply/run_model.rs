//! A run folder opened for use: its pipeline, manifest and weights read
//! back and checked against each other, the network rebuilt, and the
//! preprocessing that turns an image into what the network was trained on.

use super::manifest::{sha256_hex, tensors_sha256, Manifest, MANIFEST, PIPELINE};
use crate::data::faces::{decode_image, Color};
use crate::data::Split;
use crate::error::{Error, Result};
use crate::nn::{Init, Params, Sequential};
use crate::pipeline::schema::{ColorName, Dataset as DatasetName, Normalize, Pipeline};
use crate::pipeline::stages::backbone;
use crate::pipeline::{model, validate};
use crate::tensor::{Rng, Tensor};
use std::path::{Path, PathBuf};

/// The largest manifest read (100000 class names of 256 bytes, and room).
const MANIFEST_LIMIT: u64 = 32 << 20;
/// The largest pipeline file read.
const PIPELINE_LIMIT: u64 = 1 << 20;

/// A trained model, ready to classify.
pub struct RunModel {
    /// The run's folder.
    pub dir: PathBuf,
    /// What the run recorded about its model: name, classes, input shape,
    /// and the digests of the files it wrote.
    pub manifest: Manifest,
    /// The pipeline file the run was made from.
    pub pipeline: Pipeline,
    /// The trained network and its weights.
    pub net: Sequential,
    /// The network's trained weights.
    pub params: Params,
    /// The fixed network in front of it, with its weights.
    pub backbone: Option<(Sequential, Params)>,
    /// One image as the network (or backbone) takes it: `[channels, side, side]`.
    pub image: [usize; 3],
}

impl RunModel {
    /// Open the run folder `dir`. Every error names the file (most are an
    /// [`Error::File`] around the reader's error) and, where there is one, the
    /// field.
    pub fn open(dir: &Path) -> Result<RunModel> {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(Error::file(dir, "not a folder; give the run's output folder")),
            Err(e) => return Err(Error::file(dir, e)),
        }
        let at = |name: &str| dir.join(name);
        let read = |name: &str, limit: u64| {
            crate::files::read_text_capped(&at(name), limit).map_err(|e| match e {
                crate::files::ReadError::Io(io) if io.kind() == std::io::ErrorKind::NotFound => Error::file(
                    at(name),
                    format!(
                        "not found: this is not the folder of a training run that saved its weights with a nabla \
                         that writes {MANIFEST} and {PIPELINE} (0.1 from November 2026 on); rerun its pipeline"
                    ),
                ),
                e => Error::file(at(name), e),
            })
        };
        let mpath = at(MANIFEST);
        let manifest = Manifest::parse(&read(MANIFEST, MANIFEST_LIMIT)?).map_err(|e| Error::file(&mpath, e))?;
        let ppath = at(PIPELINE);
        let loaded = crate::pipeline::parse(&ppath, &read(PIPELINE, PIPELINE_LIMIT)?, &[])?;
        let p = loaded.pipeline;
        let m = p.model.as_ref().ok_or_else(|| Error::file(&ppath, "has no [model]"))?;
        let shape = validate::data_shape(&p);
        let image: [usize; 3] = shape.image.clone().try_into().map_err(|_| "an image is [c, h, w]".to_string())?;
        check_input(&manifest, &p, image).map_err(|e| format!("{}: {e} (in {})", mpath.display(), ppath.display()))?;
        let classes = manifest.classes.len();
        if shape.classes > 0 && shape.classes != classes {
            return Err(Error::file(
                &mpath,
                format!("classes: {classes} names, but {} gives {} classes", ppath.display(), shape.classes),
            ));
        }
        let net = model::build(m, &shape.example, classes).map_err(|e| format!("{}: model: {e}", ppath.display()))?;
        let params = weights(dir, &manifest, &net)?;
        let backbone = match (&p.backbone, &manifest.backbone) {
            (None, None) => None,
            (Some(_), None) => {
                return Err(Error::file(&mpath, format!("backbone: missing, but {} has one", ppath.display())))
            }
            (None, Some(_)) => {
                return Err(Error::file(&mpath, format!("backbone: given, but {} has none", ppath.display())))
            }
            (Some(b), Some(digest)) => {
                let bnet =
                    model::backbone(b, &shape.image).map_err(|e| format!("{}: backbone: {e}", ppath.display()))?;
                let (bparams, source) = backbone::load_weights(b, &bnet, p.seed)?;
                if tensors_sha256(&bparams) != digest.tensors_sha256 {
                    return Err(Error::Message(format!(
                        "backbone weights: {source} are not the weights the run used ({}; their SHA-256 differs, {}): \
                         features from other weights would make the predictions meaningless",
                        digest.source,
                        mpath.display()
                    )));
                }
                Some((bnet, bparams))
            }
        };
        Ok(RunModel { dir: dir.to_path_buf(), manifest, pipeline: p, net, params, backbone, image })
    }

    /// The class names in output order.
    pub fn classes(&self) -> &[String] {
        &self.manifest.classes
    }

    /// An image file's bytes as one example (as the manifest's input section says).
    /// A file that is not such an image is a
    /// [`DataError`](crate::data::DataError) naming `path`.
    pub fn preprocess(&self, path: &Path, bytes: &[u8]) -> Result<Vec<f32>> {
        let [channels, side, _] = self.image;
        let color = if channels == 3 { Color::Rgb } else { Color::Gray };
        let mut x = decode_image(path, bytes, side, color, self.manifest.input.pixel_scale)?;
        if self.pipeline.data.normalize == Normalize::MeanMaxAbs {
            normalize_row(&mut x);
        }
        Ok(x)
    }

    /// 8-bit pixels (an IDX image) as one example.
    pub fn from_bytes(&self, pixels: &[u8]) -> Vec<f32> {
        let mut x: Vec<f32> = pixels.iter().map(|&p| p as f32 * self.manifest.input.pixel_scale).collect();
        if self.pipeline.data.normalize == Normalize::MeanMaxAbs {
            normalize_row(&mut x);
        }
        x
    }

    /// Logits `[n, classes]` of preprocessed examples `[n, pixels]`.
    pub fn logits(&self, images: &Tensor) -> crate::Result<Tensor> {
        match &self.backbone {
            None => crate::nn::infer::logits(&self.net, &self.params, images),
            Some((bnet, bparams)) => {
                // In the pieces training's feature extraction used, so the features are the same bits.
                let split = Split { images: images.clone(), labels: vec![0; images.shape()[0]] };
                let features = backbone::features_of(bnet, bparams, &split)?;
                crate::nn::infer::logits(&self.net, &self.params, &features.images)
            }
        }
    }
}

/// Subtract the mean, divide by the largest absolute value (as
/// `Split::normalize_per_row` does for a data set).
fn normalize_row(x: &mut [f32]) {
    let mut s = Split { images: Tensor::from_vec(x.to_vec(), &[1, x.len()]).expect("one row"), labels: vec![0] };
    s.normalize_per_row();
    x.copy_from_slice(s.images.data());
}

/// The manifest's input section against what the pipeline implies.
fn check_input(manifest: &Manifest, p: &Pipeline, image: [usize; 3]) -> std::result::Result<(), String> {
    let d = &p.data;
    let input = &manifest.input;
    let dataset = match d.dataset {
        DatasetName::Mnist => "mnist",
        DatasetName::Faces => "faces",
    };
    let scale = match d.dataset {
        DatasetName::Mnist => 1.0 / 255.0,
        DatasetName::Faces => d.scale,
    };
    let normalize = if d.normalize == Normalize::MeanMaxAbs { "mean_max_abs" } else { "none" };
    let gray = d.dataset == DatasetName::Mnist || d.color == ColorName::Gray;
    let mut wrong = Vec::new();
    if input.dataset != dataset {
        wrong.push(format!("input.dataset: '{}', but the pipeline's data is '{dataset}'", input.dataset));
    }
    if [input.channels, input.side] != [image[0], image[1]] || gray != (image[0] == 1) {
        wrong.push(format!(
            "input: {} channels of {} x {}, but the pipeline's images are {:?}",
            input.channels, input.side, input.side, image
        ));
    }
    if input.pixel_scale != scale {
        wrong.push(format!("input.pixel_scale: {}, but the pipeline scales by {scale}", input.pixel_scale));
    }
    if input.normalize != normalize {
        wrong.push(format!("input.normalize: '{}', but the pipeline says '{normalize}'", input.normalize));
    }
    if wrong.is_empty() {
        Ok(())
    } else {
        Err(wrong.join("; "))
    }
}

/// The trained weights: the manifest's file, of the manifest's digest,
/// holding exactly the network's tensors, finite.
fn weights(dir: &Path, manifest: &Manifest, net: &Sequential) -> Result<Params> {
    let path = dir.join(&manifest.weights.file);
    let limit = (net.param_count() as u64).saturating_mul(4).saturating_add(1 << 20);
    let bytes = crate::files::read_capped(&path, limit).map_err(|e| Error::file(&path, e))?;
    if sha256_hex(&bytes) != manifest.weights.sha256.to_ascii_lowercase() {
        return Err(Error::file(
            &path,
            format!(
                "its SHA-256 is not the one {MANIFEST} records: the weights were replaced or damaged since the run"
            ),
        ));
    }
    let mut params = Params::new();
    net.init(&mut params, Init::Zeros, Init::Zeros, &mut Rng::new(0));
    params.load_safetensors(&bytes).map_err(|e| Error::file(&path, e))?;
    if let Some((name, i, v)) = params.first_non_finite() {
        return Err(Error::file(&path, format!("tensor '{name}' holds {v} at index {i}")));
    }
    Ok(params)
}
