//! Convolution and pooling on NCHW tensors: the arithmetic behind the tape's
//! `conv2d` and `max_pool2d` (their backward rules are in
//! `autodiff/backward.rs`, like every other).
//!
//! A convolution is a matrix product: `im2col` lays each receptive field of
//! an image out as a column, so that the filters `[out, in * kh * kw]` times
//! those columns `[in * kh * kw, oh * ow]` is the output image. The forward
//! pass never writes the columns out: `fields` gives each row and column of
//! that matrix an offset into the zero-padded image, and the product gathers
//! them as it packs its panels (implicit GEMM). The backward
//! pass is two more products and `col2im`, which adds each column back onto
//! the pixels it came from. Images of a batch run in parallel; a 1x1,
//! stride-1, unpadded convolution needs no columns at all (the image already
//! is its own column matrix).

mod fields;
mod im2col;
mod pool;

pub use fields::{needs_padding, pad_planes, padded_plane, Fields};
pub use im2col::{col2im, im2col};
pub use pool::{max_pool2d, max_pool2d_backward};

use crate::error::{Error, Result};

/// An input of `c` planes of `h x w`, a window, and the `oh x ow` output
/// it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub win: Window,
    pub oh: usize,
    pub ow: usize,
}

/// Geometry of a 2-d convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub padding: usize,
}

impl Window {
    pub fn square(k: usize, stride: usize, padding: usize) -> Window {
        Window { kh: k, kw: k, stride, padding }
    }

    /// Output height and width for an `h x w` input, or an error when the
    /// window does not fit.
    pub fn output(&self, op: &'static str, h: usize, w: usize) -> Result<(usize, usize)> {
        let (ph, pw) = (h + 2 * self.padding, w + 2 * self.padding);
        if self.stride == 0 || self.kh == 0 || self.kw == 0 || ph < self.kh || pw < self.kw {
            return Err(Error::Invalid {
                op,
                message: format!(
                    "a {}x{} window (stride {}, padding {}) does not fit a {h}x{w} input",
                    self.kh, self.kw, self.stride, self.padding
                ),
            });
        }
        Ok(((ph - self.kh) / self.stride + 1, (pw - self.kw) / self.stride + 1))
    }

    /// True when the window is 1x1 with stride 1 and no padding.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.padding == 0
    }
}
