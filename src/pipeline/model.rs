//! The `[model]` section as a network: every kind becomes one layer list
//! (`nn::Sequential`), built for the shape of the examples it will get.
//! `check` builds it from the shapes the file implies, the stages from the
//! data they loaded: both go through [`build`], so what was checked is what
//! runs.

use super::schema::{ActivationName, InitSpec, LayerFields, Model, ModelKind};
use crate::nn::{presets, Activation, Init, Layer, LayerSpec, Sequential, Window2d};

pub(crate) fn init(spec: InitSpec) -> Init {
    match spec {
        InitSpec::Zeros => Init::Zeros,
        InitSpec::Uniform { lo, hi } => Init::Uniform { lo, hi },
        InitSpec::Normal { mean, std } => Init::Normal { mean, std },
        InitSpec::FanIn => Init::FanIn,
    }
}

fn activation(a: ActivationName) -> Activation {
    match a {
        ActivationName::Relu => Activation::Relu,
        ActivationName::Tanh => Activation::Tanh,
        ActivationName::Sigmoid => Activation::Sigmoid,
    }
}

/// The fields each layer type takes, besides `type` and `name`.
fn takes(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "conv2d" => &["out", "kernel", "stride", "padding", "groups", "bias", "weight_init", "bias_init"],
        "max_pool2d" | "avg_pool2d" => &["kernel", "stride", "padding"],
        "relu" | "tanh" | "sigmoid" | "flatten" => &[],
        "dropout" => &["p"],
        "linear" => &["out", "bias", "weight_init", "bias_init"],
        _ => return None,
    })
}

/// One declared layer as the network's, or what is wrong with its fields.
fn spec(f: &LayerFields) -> Result<LayerSpec, String> {
    let Some(allowed) = takes(&f.kind) else {
        return Err(format!(
            "unknown type `{}`, expected one of conv2d, max_pool2d, avg_pool2d, relu, tanh, sigmoid, dropout, \
             flatten, linear",
            f.kind
        ));
    };
    let given = [
        ("out", f.out.is_some()),
        ("kernel", f.kernel.is_some()),
        ("stride", f.stride.is_some()),
        ("padding", f.padding.is_some()),
        ("groups", f.groups.is_some()),
        ("bias", f.bias.is_some()),
        ("p", f.p.is_some()),
        ("weight_init", f.weight_init.is_some()),
        ("bias_init", f.bias_init.is_some()),
    ];
    if let Some((field, _)) = given.iter().find(|(k, set)| *set && !allowed.contains(k)) {
        return Err(format!("{} takes no `{field}` (it takes {})", f.kind, list(allowed)));
    }
    let need = |v: Option<usize>, field: &str| v.ok_or_else(|| format!("{} needs `{field}`", f.kind));
    let window = |default_stride: usize| -> Result<Window2d, String> {
        let kernel = need(f.kernel, "kernel")?;
        let stride = f.stride.unwrap_or(if default_stride == 0 { kernel } else { default_stride });
        Ok(Window2d { kernel, stride, padding: f.padding.unwrap_or(0) })
    };
    let layer = match f.kind.as_str() {
        "conv2d" => Layer::Conv2d {
            out: need(f.out, "out")?,
            win: window(1)?,
            groups: f.groups.unwrap_or(1),
            bias: f.bias.unwrap_or(true),
        },
        "max_pool2d" => Layer::MaxPool2d(window(0)?),
        "avg_pool2d" => Layer::AvgPool2d(window(0)?),
        "relu" => Layer::Relu,
        "tanh" => Layer::Tanh,
        "sigmoid" => Layer::Sigmoid,
        "flatten" => Layer::Flatten,
        "dropout" => Layer::Dropout { p: f.p.ok_or("dropout needs `p`")? },
        "linear" => Layer::Linear { out: need(f.out, "out")?, bias: f.bias.unwrap_or(true) },
        _ => unreachable!("takes() knows every type"),
    };
    for (field, i) in [("weight_init", f.weight_init), ("bias_init", f.bias_init)] {
        if let Some(i) = i {
            init_ok(i).map_err(|e| format!("{field}: {e}"))?;
        }
    }
    Ok(LayerSpec {
        layer,
        name: f.name.clone(),
        weight_init: f.weight_init.map(init),
        bias_init: f.bias_init.map(init),
    })
}

fn list(fields: &[&str]) -> String {
    if fields.is_empty() {
        "none".into()
    } else {
        fields.iter().map(|f| format!("`{f}`")).collect::<Vec<_>>().join(", ")
    }
}

/// Whether an initialiser can make finite numbers.
pub(crate) fn init_ok(spec: InitSpec) -> Result<(), String> {
    match spec {
        InitSpec::Uniform { lo, hi } if !(lo.is_finite() && hi.is_finite() && lo <= hi) => {
            Err(format!("uniform needs finite lo <= hi, got lo = {lo}, hi = {hi}"))
        }
        InitSpec::Normal { mean, std } if !(mean.is_finite() && std.is_finite() && std >= 0.0) => {
            Err(format!("normal needs a finite mean and a finite std >= 0, got mean = {mean}, std = {std}"))
        }
        _ => Ok(()),
    }
}

/// The layer list of `m` for `classes` classes, before shapes are known.
/// Errors are prefixed with the key they concern.
pub(crate) fn layers(m: &Model, classes: usize) -> Result<Vec<LayerSpec>, String> {
    let kind = format!("{:?}", m.kind).to_lowercase();
    let takes_no = |field: &str| Err(format!("model.{field}: a model of kind \"{kind}\" takes no `{field}`"));
    if m.kind != ModelKind::Sequential && !m.layers.is_empty() {
        return takes_no("layers");
    }
    if m.kind != ModelKind::Mlp && m.activation != ActivationName::Relu {
        return takes_no("activation");
    }
    Ok(match m.kind {
        ModelKind::Linear if !m.hidden.is_empty() => {
            return Err("model.hidden: a linear model has no hidden layers (use kind = \"mlp\")".into())
        }
        ModelKind::Alexnet | ModelKind::Sequential if !m.hidden.is_empty() => return takes_no("hidden"),
        ModelKind::Mlp if m.hidden.is_empty() || m.hidden.contains(&0) => {
            return Err(format!("model.hidden: an mlp needs positive hidden widths, got {:?}", m.hidden))
        }
        ModelKind::Linear | ModelKind::Mlp => presets::mlp(&m.hidden, classes, activation(m.activation)),
        ModelKind::Alexnet => presets::alexnet(classes),
        ModelKind::Sequential => m
            .layers
            .iter()
            .enumerate()
            .map(|(i, f)| {
                spec(f).map_err(|e| match &f.name {
                    Some(n) => format!("model.layers: layer {} ('{n}'): {e}", i + 1),
                    None => format!("model.layers: layer {}: {e}", i + 1),
                })
            })
            .collect::<Result<_, _>>()?,
    })
}

/// The network `m` describes for examples of shape `example` (one example,
/// e.g. `[1, 28, 28]`) and `classes` classes: shapes inferred, the output
/// checked to be one logit per class.
pub(crate) fn build(m: &Model, example: &[usize], classes: usize) -> Result<Sequential, String> {
    let specs = layers(m, classes)?;
    // Presets of fully connected layers take the example as one row.
    let flat = [example.iter().product::<usize>()];
    let input = if matches!(m.kind, ModelKind::Linear | ModelKind::Mlp) { &flat[..] } else { example };
    // A preset's layers come from the key that sized them.
    let key = match m.kind {
        ModelKind::Linear | ModelKind::Mlp => "model.hidden",
        ModelKind::Alexnet => "model.kind",
        ModelKind::Sequential => "model.layers",
    };
    let net = Sequential::new(input, &specs).map_err(|e| format!("{key}: {e}"))?;
    if net.output() != [classes] {
        return Err(format!(
            "model.layers: the last layer gives {:?} per example, but the data has {classes} classes: end with a \
             linear layer of out = {classes}",
            net.output()
        ));
    }
    Ok(net)
}

/// The network table of a checked pipeline's model (as `nabla check`
/// prints it), for the shapes its data section implies; None without a model.
pub fn network_table(l: &super::Loaded) -> Option<String> {
    let m = l.pipeline.model.as_ref()?;
    let shape = super::validate::data_shape(&l.pipeline);
    build(m, &shape.example, shape.classes).ok().map(|net| net.summary())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seq(layers: &str) -> Model {
        let text = format!("kind = \"sequential\"\n{layers}");
        toml::from_str(&text).unwrap()
    }

    const LENET: &str = r#"
[[layers]]
type = "conv2d"
out = 6
kernel = 5
padding = 2
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel = 2
[[layers]]
type = "conv2d"
out = 16
kernel = 5
[[layers]]
type = "relu"
[[layers]]
type = "max_pool2d"
kernel = 2
[[layers]]
type = "flatten"
[[layers]]
type = "linear"
out = 120
[[layers]]
type = "relu"
[[layers]]
type = "linear"
out = 84
[[layers]]
type = "relu"
[[layers]]
type = "linear"
out = 10
"#;

    #[test]
    fn lenet_from_a_file() {
        let net = build(&seq(LENET), &[1, 28, 28], 10).unwrap();
        assert_eq!(net.param_count(), 61706);
        assert_eq!(net.nodes[6].output, vec![400]);
    }

    #[test]
    fn mistakes_name_the_layer_and_the_field() {
        let e = |layers: &str, classes| build(&seq(layers), &[1, 28, 28], classes).unwrap_err();
        assert_eq!(e(LENET, 6), "model.layers: the last layer gives [10] per example, but the data has 6 classes: end with a linear layer of out = 6");
        let m = e("[[layers]]\ntype = \"relu\"\nout = 3\n", 10);
        assert_eq!(m, "model.layers: layer 1: relu takes no `out` (it takes none)");
        let m = e("[[layers]]\ntype = \"conv3d\"\n", 10);
        assert!(m.starts_with("model.layers: layer 1: unknown type `conv3d`"), "{m}");
        let m = e("[[layers]]\ntype = \"conv2d\"\nname = \"c1\"\nkernel = 3\n", 10);
        assert_eq!(m, "model.layers: layer 1 ('c1'): conv2d needs `out`");
        let m = e("[[layers]]\ntype = \"linear\"\nout = 10\n", 10);
        assert!(m.contains("layer 1: linear takes a flat input [features]; its input is [1, 28, 28]"), "{m}");
        let m = e("[[layers]]\ntype = \"conv2d\"\nout = 2\nkernel = 29\n", 10);
        assert!(m.contains("layer 1: conv2d its 29x29 kernel is larger than its input [1, 28, 28]"), "{m}");
        let m = e("[[layers]]\ntype = \"dropout\"\n", 10);
        assert!(m.contains("dropout needs `p`"), "{m}");
        let bad_init = "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"linear\"\nout = 10\nweight_init = { kind = \"uniform\", lo = 1.0, hi = 0.0 }\n";
        assert!(e(bad_init, 10).contains("layer 2: weight_init: uniform needs finite lo <= hi"));
        let unknown: Result<Model, _> =
            toml::from_str("kind = \"sequential\"\n[[layers]]\ntype = \"relu\"\nsize = 3\n");
        assert!(unknown.unwrap_err().to_string().contains("unknown field `size`"));
    }

    #[test]
    fn presets_refuse_a_layer_list() {
        let mut m = seq(LENET);
        m.kind = ModelKind::Mlp;
        m.hidden = vec![10];
        assert!(build(&m, &[784], 10).unwrap_err().contains("takes no `layers`"));
    }
}
