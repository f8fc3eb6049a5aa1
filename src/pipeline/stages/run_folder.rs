//! A training run that saves its weights makes its folder usable on its
//! own: `pipeline.toml` (the settings that produced the weights) and
//! `model.json` (see `pipeline::apply::manifest`).

use super::{backbone, train, Ctx};
use crate::pipeline::apply::manifest::{
    sha256_hex, tensors_sha256, BackboneDigest, FileDigest, Input, Manifest, FORMAT, MANIFEST, PIPELINE,
};
use crate::pipeline::load::to_table;
use crate::pipeline::run::RunError;
use crate::pipeline::schema::{Dataset as DatasetName, Normalize, Pipeline, Train};
use crate::pipeline::{model, validate};

pub(crate) fn write(ctx: &mut Ctx, p: &Pipeline, t: &Train) -> Result<(), RunError> {
    let (Some(params), false) = (&ctx.params, t.save.is_empty()) else { return Ok(()) };
    let weights = FileDigest { file: t.save.clone(), sha256: sha256_hex(&params.to_safetensors()) };
    // The settings as they ran, with the sweep's and the trials' choice in place.
    let ran = Pipeline { sweep: None, trials: vec![], ..p.clone() };
    let table = to_table(&ran).map_err(|e| ctx.err("train", e))?;
    let text = format!(
        "# The pipeline that produced {} (after --set, with any sweep's and trials' choice applied),\n\
         # written by nabla {}. `nabla predict` and `nabla eval` read it.\n\n{}",
        t.save,
        env!("CARGO_PKG_VERSION"),
        toml::to_string(&table).map_err(|e| ctx.err("train", e.to_string()))?
    );
    let data = ctx.data_for(&train::with_seed(p, train::seeds(p)[0]).data)?;
    let shape = validate::data_shape(p);
    let d = &p.data;
    let input = Input {
        dataset: match d.dataset {
            DatasetName::Mnist => "mnist".into(),
            DatasetName::Faces => "faces".into(),
        },
        channels: shape.image[0],
        side: shape.image[1],
        pixel_scale: if d.dataset == DatasetName::Mnist { 1.0 / 255.0 } else { d.scale },
        normalize: if d.normalize == Normalize::MeanMaxAbs { "mean_max_abs".into() } else { "none".into() },
    };
    let backbone = match &p.backbone {
        None => None,
        Some(b) => {
            let net = model::backbone(b, &shape.image).map_err(|e| ctx.err("backbone", e))?;
            let (bparams, source) = backbone::weights(ctx, b, &net)?;
            Some(BackboneDigest { source, tensors_sha256: tensors_sha256(&bparams) })
        }
    };
    let manifest = Manifest {
        format: FORMAT.into(),
        version: 1,
        nabla_version: env!("CARGO_PKG_VERSION").into(),
        name: p.name.clone(),
        weights,
        classes: data.class_names.clone(),
        input,
        backbone,
    };
    let json = serde_json::to_string_pretty(&manifest).expect("a manifest serialises") + "\n";
    ctx.write(PIPELINE, text.as_bytes())?;
    ctx.write(MANIFEST, json.as_bytes())
}
