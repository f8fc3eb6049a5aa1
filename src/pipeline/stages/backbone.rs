//! Report part 10's first half: pass every image through a fixed AlexNet and
//! keep the 9216 features after its last max-pool; the model then trains on
//! those. Features are cached on disk, keyed by the weights and the images,
//! so a rerun with another head skips extraction.

use super::Ctx;
use crate::autodiff::{Tape, Var};
use crate::data::{Dataset, Split};
use crate::nn::alexnet::AlexNet;
use crate::nn::Params;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Backbone, IfMissing};
use crate::tensor::{Rng, Tensor};
use sha2::{Digest, Sha256};

/// Images per forward pass.
const BATCH: usize = 16;

/// The backbone's weights, and how they were obtained ("file <path>" or "random-init").
pub(crate) fn weights(ctx: &Ctx, b: &Backbone, net: &AlexNet) -> Result<(Params, String), RunError> {
    match &b.weights {
        Some(path) if path.is_file() => {
            let params = crate::weights::read(path).map_err(|e| ctx.err("backbone", e))?;
            // Pretrained checkpoints carry the 1000-class head; only the features are used.
            let mut features = Params::new();
            for (name, t) in params.iter().filter(|(n, _)| n.starts_with("features.")) {
                features.insert(name, t.clone());
            }
            net.check_part(&features, "features.")
                .map_err(|e| ctx.err("backbone", format!("{}: {e}", path.display())))?;
            Ok((features, format!("file {}", path.display())))
        }
        other if b.if_missing == IfMissing::Random => {
            eprintln!(
                "WARNING: backbone weights {} not found: using seeded RANDOM weights (if_missing = \"random\"). \
                 Features of an untrained AlexNet; the accuracies will not be the report's.",
                other.as_ref().map_or("(none given)".to_string(), |p| p.display().to_string())
            );
            Ok((net.init(&mut Rng::new(ctx.pipeline().seed ^ 0xA1E7)), "random-init".to_string()))
        }
        other => Err(ctx.err(
            "backbone",
            format!(
                "backbone.weights: {} not found. Pretrained AlexNet weights are torchvision's alexnet-owt-7be5be79.pth \
                 (download it where you have internet, e.g. with torchvision.models.alexnet(weights=\"DEFAULT\")), \
                 or set backbone.if_missing = \"random\" to run with random weights",
                other.as_ref().map_or("(none given)".to_string(), |p| p.display().to_string())
            ),
        )),
    }
}

fn features_of(net: &AlexNet, params: &Params, split: &Split) -> crate::Result<Split> {
    let (n, width) = (split.len(), split.images.shape()[1]);
    let mut out = Vec::with_capacity(n * net.feature_len());
    for start in (0..n).step_by(BATCH) {
        let rows = BATCH.min(n - start);
        let x = Tensor::from_vec(
            split.images.data()[start * width..(start + rows) * width].to_vec(),
            &[rows, 3, 227, 227],
        )?;
        let f = net.features(&Tape::inference(), params, &Var::constant(x))?;
        out.extend_from_slice(f.value().data());
    }
    Ok(Split { images: Tensor::from_vec(out, &[n, net.feature_len()])?, labels: split.labels.clone() })
}

/// The data set with every image replaced by its AlexNet features.
pub(crate) fn extract(ctx: &Ctx, b: &Backbone, data: &Dataset) -> Result<(Dataset, String), RunError> {
    if data.channels != 3 || data.side != 227 {
        return Err(ctx.err(
            "backbone",
            format!("AlexNet needs 3 x 227 x 227 images; data gives {} x {} x {}", data.channels, data.side, data.side),
        ));
    }
    let net = AlexNet::torchvision(data.classes());
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
    let key: String = h.finalize().iter().take(12).map(|b| format!("{b:02x}")).collect();
    let cached = b.cache.as_ref().map(|dir| dir.join(format!("alexnet-features-{key}.safetensors")));
    let names = ["train", "validation", "test"];
    if let Some(path) = cached.as_ref().filter(|p| p.is_file()) {
        if let Ok(p) = crate::weights::read(path) {
            if let (Ok(tr), Ok(va), Ok(te)) = (p.get("train"), p.get("validation"), p.get("test")) {
                eprintln!("features from cache {}", path.display());
                let split = |t: &Tensor, s: &Split| Split { images: t.clone(), labels: s.labels.clone() };
                let ds = Dataset {
                    train: split(tr, &data.train),
                    validation: split(va, &data.validation),
                    test: split(te, &data.test),
                    channels: 256,
                    side: 6,
                    ..data.clone()
                };
                return Ok((ds, source));
            }
        }
    }
    let fail = |e: crate::Error| ctx.err("backbone", e);
    let started = std::time::Instant::now();
    let (train, validation, test) = (
        features_of(&net, &params, &data.train).map_err(fail)?,
        features_of(&net, &params, &data.validation).map_err(fail)?,
        features_of(&net, &params, &data.test).map_err(fail)?,
    );
    eprintln!(
        "extracted AlexNet features of {} images in {:.1} s",
        train.len() + validation.len() + test.len(),
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = cached {
        let mut p = Params::new();
        for (name, s) in names.iter().zip([&train, &validation, &test]) {
            p.insert(name, s.images.clone());
        }
        // Best effort: a cache that cannot be written only costs time.
        let tmp = path.with_extension("partial");
        let written = std::fs::create_dir_all(path.parent().unwrap_or(std::path::Path::new(".")))
            .and_then(|()| std::fs::write(&tmp, p.to_safetensors()))
            .and_then(|()| std::fs::rename(&tmp, &path));
        if let Err(e) = written {
            eprintln!("warning: could not cache features in {}: {e}", path.display());
        }
    }
    Ok((Dataset { train, validation, test, channels: 256, side: 6, ..data.clone() }, source))
}
