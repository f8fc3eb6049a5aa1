//! Report part 10's first half: pass every image through a fixed network
//! (torchvision's AlexNet features, 9216 after its last max-pool, or any
//! declared layer list) and keep its outputs; the model then trains on
//! those. Features are cached on disk, keyed by the weights and the images,
//! so a rerun with another head skips extraction. The weights and the cache
//! are files like any other: read with a ceiling and checked (names, shapes,
//! finite values) before use.

use super::Ctx;
use crate::autodiff::{Tape, Var};
use crate::data::{Dataset, Split};
use crate::nn::Params;
use crate::nn::{Init, Sequential};
use crate::pipeline::model;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Backbone, IfMissing};
use crate::tensor::{Rng, Tensor};
use sha2::{Digest, Sha256};
use std::io::Write;

/// Images per forward pass.
const BATCH: usize = 16;
/// The largest weights file read (torchvision's AlexNet is 244 MB).
const WEIGHTS_LIMIT: u64 = 1 << 30;
/// Room for a safetensors header beside its tensors.
const HEADER_ROOM: u64 = 1 << 20;

/// The backbone's weights, and how they were obtained ("file <path>" or "random-init").
pub(crate) fn weights(ctx: &Ctx, b: &Backbone, net: &Sequential) -> Result<(Params, String), RunError> {
    load_weights(b, net, ctx.pipeline().seed).map_err(|e| ctx.err("backbone", e))
}

/// [`weights`] for a pipeline of seed `seed` (random weights come from it).
pub(crate) fn load_weights(b: &Backbone, net: &Sequential, seed: u64) -> Result<(Params, String), String> {
    // Only a file that is not there counts as missing: a folder or a FIFO in
    // its place is an error, not a reason to fall back to random weights.
    let missing = |p: &std::path::Path| std::fs::metadata(p).is_err_and(|e| e.kind() == std::io::ErrorKind::NotFound);
    match &b.weights {
        Some(path) if !missing(path) => {
            let named = |e: String| format!("backbone.weights: {}: {e}", path.display());
            let bytes = crate::files::read_capped(path, WEIGHTS_LIMIT).map_err(|e| named(e.to_string()))?;
            let params = crate::weights::parse(&bytes).map_err(|e| named(e.to_string()))?;
            // Pretrained checkpoints carry a head (AlexNet's 1000 classes); only
            // the backbone's own tensors are used, and each must be there.
            let mut features = Params::new();
            let mut problems = Vec::new();
            for (name, shape) in net.param_shapes() {
                match params.get(&name) {
                    Ok(t) if t.shape() == shape.as_slice() => features.insert(&name, t.clone()),
                    Ok(t) => problems.push(format!("tensor '{name}' has shape {:?}, expected {shape:?}", t.shape())),
                    Err(_) => problems.push(format!("missing tensor '{name}' {shape:?}")),
                }
            }
            if !problems.is_empty() {
                return Err(format!("{}: {}", path.display(), problems.join("; ")));
            }
            finite(&features).map_err(named)?;
            Ok((features, format!("file {}", path.display())))
        }
        other if b.if_missing == IfMissing::Random => {
            crate::say!(
                "WARNING: backbone weights {} not found: using seeded RANDOM weights (if_missing = \"random\"). \
                 Features of an untrained AlexNet; the accuracies will not be the report's.",
                other.as_ref().map_or("(none given)".to_string(), |p| p.display().to_string())
            );
            let mut params = Params::new();
            net.init(&mut params, Init::FanIn, Init::FanIn, &mut Rng::new(seed ^ 0xA1E7));
            Ok((params, "random-init".to_string()))
        }
        other => Err(format!(
            "backbone.weights: {} not found. Pretrained AlexNet weights are torchvision's alexnet-owt-7be5be79.pth \
                 (download it where you have internet, e.g. with torchvision.models.alexnet(weights=\"DEFAULT\")), \
                 or set backbone.if_missing = \"random\" to run with random weights",
            other.as_ref().map_or("(none given)".to_string(), |p| p.display().to_string())
        )),
    }
}

/// Why `params` cannot be weights: the first value that is not finite.
fn finite(params: &Params) -> Result<(), String> {
    for (name, t) in params.iter() {
        if let Some(v) = t.data().iter().find(|v| !v.is_finite()) {
            return Err(format!("tensor '{name}' holds {v}"));
        }
    }
    Ok(())
}

/// The data set's features from the cache file at `path`: exactly a train,
/// a validation and a test tensor of one `width`-long finite row per example
/// of the split (the file is only named by a hash; its content is checked).
fn from_cache(path: &std::path::Path, data: &Dataset, [channels, side]: [usize; 2]) -> Result<Dataset, String> {
    let width = channels * side * side;
    let splits = [("train", &data.train), ("validation", &data.validation), ("test", &data.test)];
    let rows: u64 = splits.iter().map(|(_, s)| s.len() as u64).sum();
    let limit = rows.saturating_mul(width as u64 * 4).saturating_add(HEADER_ROOM);
    let bytes = crate::files::read_capped(path, limit).map_err(|e| e.to_string())?;
    let p = crate::weights::parse(&bytes).map_err(|e| e.to_string())?;
    if let Some((extra, _)) = p.iter().find(|(n, _)| !splits.iter().any(|(s, _)| s == n)) {
        return Err(format!("unexpected tensor '{extra}'"));
    }
    finite(&p)?;
    let mut out = Vec::new();
    for (name, split) in splits {
        let t = p.get(name).map_err(|_| format!("no tensor '{name}'"))?;
        if t.shape() != [split.len(), width] {
            return Err(format!("tensor '{name}' has shape {:?}, expected {:?}", t.shape(), [split.len(), width]));
        }
        out.push(Split { images: t.clone(), labels: split.labels.clone() });
    }
    let [train, validation, test] = <[Split; 3]>::try_from(out).expect("three splits");
    Ok(Dataset { train, validation, test, channels, side, ..data.clone() })
}

pub(crate) fn features_of(net: &Sequential, params: &Params, split: &Split) -> crate::Result<Split> {
    let (n, width) = (split.len(), split.images.shape()[1]);
    let features = net.output().iter().product::<usize>();
    let mut out = Vec::with_capacity(n * features);
    for start in (0..n).step_by(BATCH) {
        let rows = BATCH.min(n - start);
        let x = Tensor::from_vec(split.images.data()[start * width..(start + rows) * width].to_vec(), &[rows, width])?;
        let f = net.forward(&Tape::inference(), params, &Var::constant(x), None)?;
        out.extend_from_slice(f.value().data());
    }
    Ok(Split { images: Tensor::from_vec(out, &[n, features])?, labels: split.labels.clone() })
}

/// The data set with every image replaced by its AlexNet features.
pub(crate) fn extract(ctx: &Ctx, b: &Backbone, data: &Dataset) -> Result<(Dataset, String), RunError> {
    let net = model::backbone(b, &data.example_shape()).map_err(|e| ctx.err("backbone", e))?;
    let [channels, side, _] = model::as_image(net.output());
    let (params, source) = weights(ctx, b, &net)?;
    // Cache key: the weights and every image, in order.
    let mut h = Sha256::new();
    for (name, t) in params.iter() {
        h.update(name.as_bytes());
        t.data().iter().for_each(|v| h.update(v.to_le_bytes()));
    }
    for s in [&data.train, &data.validation, &data.test] {
        s.images.data().iter().for_each(|v| h.update(v.to_le_bytes()));
        s.labels.iter().for_each(|l| h.update((*l as u64).to_le_bytes()));
    }
    // A declared backbone's layers decide its outputs as much as its weights.
    if b.kind == crate::pipeline::schema::BackboneKind::Sequential {
        h.update(format!("{:?}", net.nodes).as_bytes());
    }
    let key: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    let stem = if b.kind == crate::pipeline::schema::BackboneKind::Alexnet { "alexnet" } else { "backbone" };
    let cached = b.cache.as_ref().map(|dir| dir.join(format!("{stem}-features-{key}.safetensors")));
    let names = ["train", "validation", "test"];
    if let Some(path) = cached.as_ref().filter(|p| std::fs::symlink_metadata(p).is_ok()) {
        let ds = from_cache(path, data, [channels, side]).map_err(|e| {
            ctx.err(
                "backbone",
                format!("feature cache {}: {e} (delete it to extract the features again)", path.display()),
            )
        })?;
        crate::say!("features from cache {}", path.display());
        return Ok((ds, source));
    }
    let fail = |e: crate::Error| ctx.err("backbone", e);
    let started = std::time::Instant::now();
    let (train, validation, test) = (
        features_of(&net, &params, &data.train).map_err(fail)?,
        features_of(&net, &params, &data.validation).map_err(fail)?,
        features_of(&net, &params, &data.test).map_err(fail)?,
    );
    crate::say!(
        "extracted backbone features of {} images in {:.1} s",
        train.len() + validation.len() + test.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = cached {
        let mut p = Params::new();
        for (name, s) in names.iter().zip([&train, &validation, &test]) {
            p.insert(name, s.images.clone());
        }
        // Best effort: a cache that cannot be written only costs time.
        let bytes = p.to_safetensors();
        let written = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
            .map_err(|e| e.to_string())
            .and_then(|()| crate::pipeline::checkpoint::write_staged(&path, |f| f.write_all(&bytes)));
        if let Err(e) = written {
            crate::say!("warning: could not cache features in {}: {e}", path.display());
        }
    }
    Ok((Dataset { train, validation, test, channels, side, ..data.clone() }, source))
}
