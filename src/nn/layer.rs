//! One layer of a feed-forward network as data: what it computes, the shape
//! it gives for the shape it takes, the parameters it owns and the work it
//! does. Shapes here are one example's (no batch dimension), as PyTorch's
//! `torchinfo` prints them; the batch is added when the layer runs.

use crate::error::Error;

/// A convolution's or a pooling window's geometry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    /// Side of the square window.
    pub kernel: usize,
    /// Step between windows.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub padding: usize,
}

/// One layer of a [`Sequential`](super::Sequential) network.
#[derive(Clone, Debug, PartialEq)]
pub enum Layer {
    /// `out` filters of `kernel x kernel` over `[c, h, w]`, in `groups`
    /// groups (PyTorch's `Conv2d`).
    Conv2d {
        /// Output channels.
        out: usize,
        /// Window geometry.
        win: Window2d,
        /// Channel groups (1: every filter sees every input channel).
        groups: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
    /// Largest value in each window (PyTorch's `MaxPool2d`).
    MaxPool2d(Window2d),
    /// Average over the window, padding counted as zeros in the divisor
    /// (PyTorch's default `count_include_pad = True`).
    AvgPool2d(Window2d),
    /// `max(x, 0)`.
    Relu,
    /// `tanh(x)`.
    Tanh,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// Zero each value with probability `p` while training.
    Dropout {
        /// Probability of zeroing a value.
        p: f32,
    },
    /// `[c, h, w]` (or any shape) to `[c * h * w]`.
    Flatten,
    /// `[in]` to `[out]`: `x W^T + b`, weight `[out, in]`.
    Linear {
        /// Output features.
        out: usize,
        /// Whether the layer has a bias.
        bias: bool,
    },
}

/// A parameter a layer owns: `weight` or `bias`, its shape and fan-in.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamShape {
    /// `"weight"` or `"bias"`.
    pub suffix: &'static str,
    /// The tensor's shape.
    pub shape: Vec<usize>,
    /// Inputs per output, for [`Init::FanIn`](super::Init::FanIn).
    pub fan_in: usize,
}

/// The largest size of any one dimension: larger is a typo, and the checked
/// products below stay far from overflow.
const MAX_DIM: usize = 1 << 24;

fn dims(s: &[usize]) -> String {
    format!("{s:?}")
}

impl Layer {
    /// The `type` a pipeline file gives this layer.
    pub fn type_name(&self) -> &'static str {
        match self {
            Layer::Conv2d { .. } => "conv2d",
            Layer::MaxPool2d(_) => "max_pool2d",
            Layer::AvgPool2d(_) => "avg_pool2d",
            Layer::Relu => "relu",
            Layer::Tanh => "tanh",
            Layer::Sigmoid => "sigmoid",
            Layer::Dropout { .. } => "dropout",
            Layer::Flatten => "flatten",
            Layer::Linear { .. } => "linear",
        }
    }

    /// The shape this layer gives for one example of shape `input`, or why
    /// it cannot take that input: an [`Error::Invalid`] whose `op` is the
    /// layer's [`type_name`](Layer::type_name), e.g. `linear: takes a flat
    /// input [features]; its input is [4, 2, 2]: put a flatten layer before it`.
    pub fn output(&self, input: &[usize]) -> crate::error::Result<Vec<usize>> {
        self.why_not(input).map_err(|message| Error::Invalid { op: self.type_name(), message })
    }

    /// [`Layer::output`], its error the reason alone (`Sequential` puts the
    /// layer's position and name before it).
    pub(super) fn why_not(&self, input: &[usize]) -> Result<Vec<usize>, String> {
        let image = || -> Result<[usize; 3], String> {
            match *input {
                [c, h, w] if c > 0 && h > 0 && w > 0 => Ok([c, h, w]),
                [_, _, _] => Err(format!("its input {} has a zero dimension", dims(input))),
                _ => Err(format!("takes an image [channels, height, width]; its input is {}", dims(input))),
            }
        };
        let window = |win: &Window2d, h: usize, w: usize| -> Result<(usize, usize), String> {
            if win.kernel == 0 || win.stride == 0 {
                return Err(format!("kernel {} and stride {} must be at least 1", win.kernel, win.stride));
            }
            if win.kernel > MAX_DIM || win.stride > MAX_DIM || win.padding > MAX_DIM {
                return Err(format!("kernel, stride and padding must be at most {MAX_DIM}"));
            }
            let (ph, pw) = (h + 2 * win.padding, w + 2 * win.padding);
            if win.kernel > ph || win.kernel > pw {
                return Err(format!(
                    "its {k}x{k} kernel is larger than its input {} padded by {} ({ph}x{pw})",
                    dims(input),
                    win.padding,
                    k = win.kernel
                ));
            }
            Ok(((ph - win.kernel) / win.stride + 1, (pw - win.kernel) / win.stride + 1))
        };
        // A weight whose size does not fit a usize would wrap the parameter
        // count (and every budget computed from it).
        let weight = |shape: &[usize]| -> Result<(), String> {
            numel(shape)
                .map(|_| ())
                .map_err(|_| format!("its weight {} has more elements than memory can hold", dims(shape)))
        };
        let out = match self {
            Layer::Conv2d { out, win, groups, .. } => {
                let [c, h, w] = image()?;
                if *out == 0 || *out > MAX_DIM {
                    return Err(format!("out = {out} channels: must be between 1 and {MAX_DIM}"));
                }
                if *groups == 0 || c % groups != 0 || out % groups != 0 {
                    return Err(format!(
                        "groups = {groups} must divide both its {c} input channels and its {out} output channels"
                    ));
                }
                let (oh, ow) = window(win, h, w)?;
                weight(&[*out, c / groups, win.kernel, win.kernel])?;
                vec![*out, oh, ow]
            }
            Layer::MaxPool2d(win) | Layer::AvgPool2d(win) => {
                let [c, h, w] = image()?;
                if win.padding > win.kernel / 2 {
                    return Err(format!(
                        "padding {} is more than half its {k}x{k} window (PyTorch refuses it too)",
                        win.padding,
                        k = win.kernel
                    ));
                }
                let (oh, ow) = window(win, h, w)?;
                vec![c, oh, ow]
            }
            Layer::Relu | Layer::Tanh | Layer::Sigmoid => input.to_vec(),
            Layer::Dropout { p } => {
                if !(0.0..1.0).contains(p) {
                    return Err(format!("p = {p} is not in [0, 1)"));
                }
                input.to_vec()
            }
            Layer::Flatten => vec![numel(input).map_err(|e| e.to_string())?],
            Layer::Linear { out, .. } => {
                if *out == 0 || *out > MAX_DIM {
                    return Err(format!("out = {out}: must be between 1 and {MAX_DIM}"));
                }
                match input {
                    [n] if *n > 0 => {
                        weight(&[*out, *n])?;
                        vec![*out]
                    }
                    [_] => return Err("its input has no features".into()),
                    _ => {
                        return Err(format!(
                            "takes a flat input [features]; its input is {}: put a flatten layer before it",
                            dims(input)
                        ))
                    }
                }
            }
        };
        numel(&out).map_err(|_| format!("its output {} has more elements than memory can hold", dims(&out)))?;
        Ok(out)
    }

    /// The parameters this layer owns for an input of shape `input` (whose
    /// `output` is known to succeed).
    pub fn params(&self, input: &[usize]) -> Vec<ParamShape> {
        match self {
            Layer::Conv2d { out, win, groups, bias } => {
                let fan_in = input[0] / groups * win.kernel * win.kernel;
                let mut p = vec![ParamShape {
                    suffix: "weight",
                    shape: vec![*out, input[0] / groups, win.kernel, win.kernel],
                    fan_in,
                }];
                if *bias {
                    p.push(ParamShape { suffix: "bias", shape: vec![*out], fan_in });
                }
                p
            }
            Layer::Linear { out, bias } => {
                let fan_in = input[0];
                let mut p = vec![ParamShape { suffix: "weight", shape: vec![*out, fan_in], fan_in }];
                if *bias {
                    p.push(ParamShape { suffix: "bias", shape: vec![*out], fan_in });
                }
                p
            }
            _ => vec![],
        }
    }

    /// Floating-point operations of the forward pass for one example (a
    /// multiply-add counts two), from its input and output shapes.
    pub fn flops(&self, input: &[usize], output: &[usize]) -> f64 {
        let out: f64 = output.iter().map(|&d| d as f64).product();
        match self {
            Layer::Conv2d { win, groups, bias, .. } => {
                let per_output = (input[0] / groups * win.kernel * win.kernel) as f64;
                out * (2.0 * per_output + f64::from(u8::from(*bias)))
            }
            Layer::Linear { bias, .. } => out * (2.0 * input[0] as f64 + f64::from(u8::from(*bias))),
            Layer::MaxPool2d(win) | Layer::AvgPool2d(win) => out * (win.kernel * win.kernel) as f64,
            Layer::Relu | Layer::Dropout { .. } => out,
            // exp, add, divide (and, for tanh, a little more): a few operations each.
            Layer::Tanh | Layer::Sigmoid => 4.0 * out,
            Layer::Flatten => 0.0,
        }
    }
}

/// Elements of a shape, or an error ([`Error::Message`]: `[..] is too
/// large`) when they do not fit a `usize`.
pub fn numel(shape: &[usize]) -> crate::error::Result<usize> {
    shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| Error::Message(format!("{shape:?} is too large")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn win(kernel: usize, stride: usize, padding: usize) -> Window2d {
        Window2d { kernel, stride, padding }
    }

    #[test]
    fn lenet_shapes() {
        let conv = |out, k, p| Layer::Conv2d { out, win: win(k, 1, p), groups: 1, bias: true };
        let mut s = vec![1, 28, 28];
        for (layer, want) in [
            (conv(6, 5, 2), vec![6, 28, 28]),
            (Layer::MaxPool2d(win(2, 2, 0)), vec![6, 14, 14]),
            (conv(16, 5, 0), vec![16, 10, 10]),
            (Layer::AvgPool2d(win(2, 2, 0)), vec![16, 5, 5]),
            (Layer::Flatten, vec![400]),
            (Layer::Linear { out: 120, bias: true }, vec![120]),
        ] {
            s = layer.output(&s).unwrap();
            assert_eq!(s, want, "{layer:?}");
        }
        let c = conv(6, 5, 2);
        assert_eq!(c.params(&[1, 28, 28])[0].shape, vec![6, 1, 5, 5]);
        assert_eq!(c.flops(&[1, 28, 28], &[6, 28, 28]), 6.0 * 784.0 * 51.0);
    }

    #[test]
    fn shape_errors_say_what_is_wrong() {
        let conv = Layer::Conv2d { out: 4, win: win(7, 1, 0), groups: 1, bias: true };
        let err = conv.output(&[1, 5, 5]).unwrap_err();
        assert!(matches!(err, Error::Invalid { op: "conv2d", .. }), "{err:?}");
        assert_eq!(err.to_string(), "conv2d: its 7x7 kernel is larger than its input [1, 5, 5] padded by 0 (5x5)");
        assert!(conv
            .output(&[1, 5, 5])
            .unwrap_err()
            .to_string()
            .contains("7x7 kernel is larger than its input [1, 5, 5]"));
        assert!(conv.output(&[784]).unwrap_err().to_string().contains("takes an image"));
        assert!(conv.output(&[0, 5, 5]).unwrap_err().to_string().contains("zero dimension"));
        let grouped = Layer::Conv2d { out: 4, win: win(1, 1, 0), groups: 3, bias: true };
        assert!(grouped.output(&[6, 5, 5]).unwrap_err().to_string().contains("groups = 3"));
        let lin = Layer::Linear { out: 10, bias: true };
        assert!(lin.output(&[16, 5, 5]).unwrap_err().to_string().contains("put a flatten layer before it"));
        assert!(Layer::Linear { out: 0, bias: true }.output(&[3]).is_err());
        assert!(Layer::MaxPool2d(win(2, 2, 2)).output(&[1, 8, 8]).unwrap_err().to_string().contains("more than half"));
        assert!(Layer::MaxPool2d(win(2, 0, 0)).output(&[1, 8, 8]).is_err());
        assert!(Layer::Dropout { p: 1.0 }.output(&[3]).is_err());
        assert!(Layer::Dropout { p: f32::NAN }.output(&[3]).is_err());
        let huge = Layer::Conv2d { out: MAX_DIM, win: win(1, 1, MAX_DIM), groups: 1, bias: true };
        assert!(huge.output(&[1, MAX_DIM, MAX_DIM]).unwrap_err().to_string().contains("more elements than memory"));
        let wide = Layer::Conv2d { out: 1 << 16, win: win(MAX_DIM, 1, MAX_DIM / 2), groups: 1, bias: true };
        let err = wide.output(&[1, 28, 28]).unwrap_err().to_string();
        assert!(err.contains("its weight [65536, 1, 16777216, 16777216] has more elements than memory"), "{err}");
    }
}
