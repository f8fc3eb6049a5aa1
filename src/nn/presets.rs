//! The networks the report uses, as layer lists: softmax regression, the
//! MLPs, and torchvision's AlexNet (with torchvision's parameter names, so
//! its checkpoints load as they are).

use super::layer::{Layer, Window2d};
use super::sequential::LayerSpec;
use super::Activation;

fn activation(a: Activation) -> Layer {
    match a {
        Activation::Relu => Layer::Relu,
        Activation::Tanh => Layer::Tanh,
        Activation::Sigmoid => Layer::Sigmoid,
    }
}

/// Linear layers `fc1`, `fc2`, ... of the given widths (the last is the
/// classes), with `act` between them: `[]` is softmax regression.
pub fn mlp(hidden: &[usize], classes: usize, act: Activation) -> Vec<LayerSpec> {
    let mut layers = Vec::new();
    for (i, &out) in hidden.iter().chain([&classes]).enumerate() {
        if i > 0 {
            layers.push(LayerSpec::new(activation(act)));
        }
        layers.push(LayerSpec::named(Layer::Linear { out, bias: true }, &format!("fc{}", i + 1)));
    }
    layers
}

/// LeNet-5 for `[1, 28, 28]` digits, as PyTorch tutorials write it: conv
/// 6@5x5 (padding 2), ReLU, max-pool 2, conv 16@5x5, ReLU, max-pool 2,
/// flatten, 120, ReLU, 84, ReLU, 10, named `layers.<i>`.
pub fn lenet5() -> Vec<LayerSpec> {
    let conv =
        |out, padding| Layer::Conv2d { out, win: Window2d { kernel: 5, stride: 1, padding }, groups: 1, bias: true };
    let pool = || Layer::MaxPool2d(Window2d { kernel: 2, stride: 2, padding: 0 });
    let linear = |out| Layer::Linear { out, bias: true };
    [conv(6, 2), Layer::Relu, pool(), conv(16, 0), Layer::Relu, pool(), Layer::Flatten]
        .into_iter()
        .chain([linear(120), Layer::Relu, linear(84), Layer::Relu, linear(10)])
        .map(LayerSpec::new)
        .collect()
}

/// torchvision's AlexNet feature extractor: five convolutions with ReLU and
/// three max-pools, `[3, 227, 227]` to `[256, 6, 6]`, named `features.<i>`.
pub fn alexnet_features() -> Vec<LayerSpec> {
    let conv = |out, kernel, stride, padding| Layer::Conv2d {
        out,
        win: Window2d { kernel, stride, padding },
        groups: 1,
        bias: true,
    };
    let pool = || Layer::MaxPool2d(Window2d { kernel: 3, stride: 2, padding: 0 });
    let layers = [
        conv(64, 11, 4, 2),
        Layer::Relu,
        pool(),
        conv(192, 5, 1, 2),
        Layer::Relu,
        pool(),
        conv(384, 3, 1, 1),
        Layer::Relu,
        conv(256, 3, 1, 1),
        Layer::Relu,
        conv(256, 3, 1, 1),
        Layer::Relu,
        pool(),
    ];
    layers.into_iter().enumerate().map(|(i, l)| LayerSpec::named(l, &format!("features.{i}"))).collect()
}

/// torchvision's AlexNet with `classes` outputs: the features, then dropout,
/// 9216 -> 4096, ReLU, dropout, 4096 -> 4096, ReLU, 4096 -> classes, named
/// `classifier.<i>`. (torchvision's adaptive average pool to 6 x 6 is the
/// identity for 227 x 227 images, and is left out.)
pub fn alexnet(classes: usize) -> Vec<LayerSpec> {
    let mut layers = alexnet_features();
    layers.push(LayerSpec::named(Layer::Flatten, "flatten"));
    let head = [
        Layer::Dropout { p: 0.5 },
        Layer::Linear { out: 4096, bias: true },
        Layer::Relu,
        Layer::Dropout { p: 0.5 },
        Layer::Linear { out: 4096, bias: true },
        Layer::Relu,
        Layer::Linear { out: classes, bias: true },
    ];
    layers.extend(head.into_iter().enumerate().map(|(i, l)| LayerSpec::named(l, &format!("classifier.{i}"))));
    layers
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::alexnet::AlexNet;
    use crate::nn::sequential::Sequential;

    #[test]
    fn alexnet_preset_has_torchvisions_names_and_shapes() {
        let net = Sequential::new(&[3, 227, 227], &alexnet(6)).unwrap();
        assert_eq!(net.param_shapes(), AlexNet::torchvision(6).shapes());
        let features = Sequential::new(&[3, 227, 227], &alexnet_features()).unwrap();
        assert_eq!(features.output(), &[256, 6, 6]);
    }

    #[test]
    fn mlp_preset_keeps_the_fc_names() {
        let net = Sequential::new(&[784], &mlp(&[25], 10, Activation::Tanh)).unwrap();
        let names: Vec<String> = net.param_shapes().into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]);
        assert_eq!(Sequential::new(&[784], &mlp(&[], 10, Activation::Relu)).unwrap().param_count(), 7850);
    }
}
