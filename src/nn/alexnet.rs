//! AlexNet as torchvision builds it (Krizhevsky 2014's "one weird trick"
//! variant): five convolutions with ReLU and three max-pools make the
//! features (256 x 6 x 6 = 9216 from a 227 x 227 image), then a classifier
//! of dropout, 9216 -> 4096, ReLU, dropout, 4096 -> 4096, ReLU, 4096 ->
//! classes. Parameters carry torchvision's names (`features.0.weight` ...
//! `classifier.6.bias`), so its checkpoints load as they are. The channel
//! counts and hidden width are fields, so tests can run the same shape of
//! network small.

use super::{Init, Params};
use crate::autodiff::{Tape, Var};
use crate::error::{Error, Result};
use crate::gemm::Transpose;
use crate::tensor::Rng;

/// One convolution of the features: (torchvision index, kernel, stride, padding).
const CONVS: [(usize, usize, usize, usize); 5] =
    [(0, 11, 4, 2), (3, 5, 1, 2), (6, 3, 1, 1), (8, 3, 1, 1), (10, 3, 1, 1)];
/// Max-pool (3 x 3, stride 2) after these convolutions.
const POOL_AFTER: [usize; 3] = [0, 1, 4];
/// Linear layers of the classifier: torchvision indices.
const LINEARS: [usize; 3] = [1, 4, 6];

/// AlexNet's shape (see the [module docs](self)); [`AlexNet::torchvision`]
/// is the standard one. It holds no weights: they are a [`Params`] with
/// torchvision's names, from [`AlexNet::init`] or a weights file
/// ([`crate::weights::read`]), checked by [`AlexNet::check`].
#[derive(Clone, Debug, PartialEq)]
pub struct AlexNet {
    /// Output channels of the five convolutions (torchvision: 64, 192, 384, 256, 256).
    pub channels: [usize; 5],
    /// Width of the two hidden classifier layers (torchvision: 4096).
    pub hidden: usize,
    /// Outputs of the last layer.
    pub classes: usize,
    /// Dropout probability of the classifier (torchvision: 0.5).
    pub dropout: f32,
}

impl AlexNet {
    /// torchvision's AlexNet with `classes` outputs.
    pub fn torchvision(classes: usize) -> AlexNet {
        AlexNet { channels: [64, 192, 384, 256, 256], hidden: 4096, classes, dropout: 0.5 }
    }

    /// Feature count for a 227 x 227 input: last channels x 6 x 6.
    pub fn feature_len(&self) -> usize {
        self.channels[4] * 36
    }

    /// Every parameter's name and shape, in torchvision's order.
    pub fn shapes(&self) -> Vec<(String, Vec<usize>)> {
        let mut out = Vec::new();
        let mut inputs = 3;
        for (&(idx, k, _, _), &ch) in CONVS.iter().zip(&self.channels) {
            out.push((format!("features.{idx}.weight"), vec![ch, inputs, k, k]));
            out.push((format!("features.{idx}.bias"), vec![ch]));
            inputs = ch;
        }
        let widths = [self.feature_len(), self.hidden, self.hidden, self.classes];
        for (i, &idx) in LINEARS.iter().enumerate() {
            out.push((format!("classifier.{idx}.weight"), vec![widths[i + 1], widths[i]]));
            out.push((format!("classifier.{idx}.bias"), vec![widths[i + 1]]));
        }
        out
    }

    /// Seeded initial parameters (PyTorch's default fan-in uniform).
    pub fn init(&self, rng: &mut Rng) -> Params {
        let mut p = Params::new();
        for (name, shape) in self.shapes() {
            let fan_in = if shape.len() > 1 { shape[1..].iter().product() } else { 1 };
            let fan_in = if name.ends_with("bias") {
                self.shapes()
                    .iter()
                    .find(|(n, _)| *n == name.replace("bias", "weight"))
                    .map_or(1, |(_, s)| s[1..].iter().product())
            } else {
                fan_in
            };
            p.insert(&name, Init::FanIn.tensor(&shape, fan_in, rng));
        }
        p
    }

    /// Check that `params` has exactly this network's tensors and shapes,
    /// listing every difference.
    pub fn check(&self, params: &Params) -> Result<()> {
        self.check_part(params, "")
    }

    /// [`AlexNet::check`] for the tensors whose names start with `prefix`
    /// (`"features."`: the convolutional part alone, as a backbone uses it).
    pub fn check_part(&self, params: &Params, prefix: &str) -> Result<()> {
        let shapes: Vec<(String, Vec<usize>)> =
            self.shapes().into_iter().filter(|(n, _)| n.starts_with(prefix)).collect();
        let mut problems = Vec::new();
        for (name, shape) in &shapes {
            match params.get(name) {
                Err(_) => problems.push(format!("missing tensor '{name}' {shape:?}")),
                Ok(t) if t.shape() != shape.as_slice() => {
                    problems.push(format!("tensor '{name}' has shape {:?}, expected {shape:?}", t.shape()))
                }
                Ok(_) => {}
            }
        }
        problems.extend(
            params
                .iter()
                .filter(|(n, _)| n.starts_with(prefix) && !shapes.iter().any(|(m, _)| m == n))
                .map(|(n, _)| format!("unexpected tensor '{n}'")),
        );
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Invalid { op: "alexnet", message: problems.join("; ") })
        }
    }

    /// The features of `x [n, 3, 227, 227]`: `[n, channels[4], 6, 6]`.
    pub fn features(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let mut h = x.clone();
        for (i, &(idx, _, stride, padding)) in CONVS.iter().enumerate() {
            let w = params.var(tape, &format!("features.{idx}.weight"))?;
            let b = params.var(tape, &format!("features.{idx}.bias"))?;
            h = tape.conv2d_relu(&h, &w, Some(&b), stride, padding, 1)?;
            if POOL_AFTER.contains(&i) {
                h = tape.max_pool2d(&h, 3, 2, 0)?;
            }
        }
        Ok(h)
    }

    /// Logits from features `[n, c, 6, 6]`; dropout only when `train`.
    pub fn classify(&self, tape: &Tape, params: &Params, features: &Var, train: bool, rng: &mut Rng) -> Result<Var> {
        let n = features.shape()[0];
        let mut h = tape.reshape(features, &[n, features.value().numel() / n.max(1)])?;
        for (i, &idx) in LINEARS.iter().enumerate() {
            if i < 2 {
                h = tape.dropout(&h, self.dropout, train, rng)?;
            }
            let w = params.var(tape, &format!("classifier.{idx}.weight"))?;
            let b = params.var(tape, &format!("classifier.{idx}.bias"))?;
            h = tape.add(&tape.matmul_t(&h, Transpose::No, &w, Transpose::Yes)?, &b)?;
            if i < 2 {
                h = tape.relu(&h);
            }
        }
        Ok(h)
    }

    /// Logits of `x` (eval mode: no dropout).
    pub fn forward(&self, tape: &Tape, params: &Params, x: &Var) -> Result<Var> {
        let f = self.features(tape, params, x)?;
        self.classify(tape, params, &f, false, &mut Rng::new(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::Tensor;

    #[test]
    fn torchvision_shapes_and_feature_count() {
        let net = AlexNet::torchvision(6);
        let shapes = net.shapes();
        assert_eq!(shapes[0], ("features.0.weight".to_string(), vec![64, 3, 11, 11]));
        assert_eq!(shapes.last().unwrap(), &("classifier.6.bias".to_string(), vec![6]));
        assert_eq!(net.feature_len(), 9216);
        let total: usize = shapes.iter().map(|(_, s)| s.iter().product::<usize>()).sum();
        assert_eq!(total, 57_028_422); // torchvision's 61.1 M with 1000 classes, minus 4096 x 994 + 994
    }

    #[test]
    fn full_size_features_are_256_by_6_by_6() {
        let net = AlexNet::torchvision(6);
        let params = net.init(&mut Rng::new(1));
        net.check(&params).unwrap();
        let x = Var::constant(Tensor::uniform(&[1, 3, 227, 227], -1.0, 1.0, &mut Rng::new(2)));
        let tape = Tape::inference();
        let f = net.features(&tape, &params, &x).unwrap();
        assert_eq!(f.shape(), &[1, 256, 6, 6]);
        assert_eq!(net.forward(&tape, &params, &x).unwrap().shape(), &[1, 6]);
    }

    #[test]
    fn strict_checking_lists_every_problem() {
        let net = AlexNet { channels: [2, 2, 2, 2, 2], hidden: 4, classes: 3, dropout: 0.5 };
        let mut params = net.init(&mut Rng::new(0));
        params.insert("features.0.weight", Tensor::zeros(&[2, 3, 5, 5]));
        params.insert("extra", Tensor::zeros(&[1]));
        let mut missing = Params::new();
        for (n, t) in params.iter().filter(|(n, _)| *n != "classifier.6.bias") {
            missing.insert(n, t.clone());
        }
        let err = net.check(&missing).unwrap_err().to_string();
        assert!(err.contains("tensor 'features.0.weight' has shape [2, 3, 5, 5], expected [2, 3, 11, 11]"), "{err}");
        assert!(err.contains("missing tensor 'classifier.6.bias'"), "{err}");
        assert!(err.contains("unexpected tensor 'extra'"), "{err}");
    }
}
