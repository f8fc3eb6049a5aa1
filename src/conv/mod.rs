//! Convolution and pooling on NCHW tensors: the arithmetic behind the tape's
//! [`conv2d`](crate::autodiff::Tape::conv2d),
//! [`max_pool2d`](crate::autodiff::Tape::max_pool2d) and
//! [`avg_pool2d`](crate::autodiff::Tape::avg_pool2d), forward and backward
//! (the tape's backward rules, in `autodiff/backward.rs` like every other,
//! call the backward passes in `backward.rs` here).
//!
//! # The idea: a convolution is a matrix product
//!
//! Lay each receptive field of an image out as a column ([`im2col`]): row
//! `(channel, ky, kx)`, column `(oy, ox)`. The filters `[out, in * kh * kw]`
//! times those columns `[in * kh * kw, oh * ow]` is the output image, and the
//! GEMM does the work. But the column matrix repeats each pixel `kh * kw`
//! times. In the zero-padded image, the pixel at row `(ci, ky, kx)` and
//! column `(oy, ox)` sits at `offset(ci, ky, kx) + offset(oy, ox)`: one
//! offset per row plus one per column ([`Fields`]). So the forward pass never
//! writes the columns: it pads the input once ([`pad_planes`]) and
//! [`crate::gemm::sgemm_packed_gather`] reads the columns through the two
//! offset tables as it packs its panels (implicit GEMM).
//!
//! The backward pass is two more products: the filters' gradient is the
//! output gradient times the columns transposed, and the input's is the
//! filters transposed times the output gradient, which [`col2im`] adds back
//! onto the pixels each column came from (with stride 1 it is itself a
//! convolution, run through the same implicit GEMM). Images of a batch run
//! in parallel; a 1x1, stride-1, unpadded convolution needs no columns at
//! all (the image already is its own column matrix). Pooling
//! ([`max_pool2d`], [`avg_pool2d`]) is a direct pass over each plane.

mod avg_pool;
mod backward;
mod conv2d;
mod fields;
pub(crate) mod footprint;
mod im2col;
mod pool;
mod prepacked;
pub mod winograd;

pub use avg_pool::{avg_pool2d, avg_pool2d_backward};
pub use fields::{needs_padding, pad_planes, padded_plane, Fields};
pub use im2col::{col2im, im2col};
pub use pool::{max_pool2d, max_pool2d_backward};

pub(crate) use backward::{avg_pool2d_input_gradient, conv2d_backward, max_pool2d_input_gradient, Wanted};
pub(crate) use conv2d::{conv2d_forward, dims4, ConvGeom, ConvInputs};

use crate::error::{Error, Result};

/// An input of `c` planes of `h x w`, a window, and the `oh x ow` output
/// it gives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Planes {
    /// Input planes (channels).
    pub c: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// The window sliding over them.
    pub win: Window,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

/// Geometry of a 2-d convolution or pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Step between windows, both ways.
    pub stride: usize,
    /// Zeros added on every side of the input.
    pub padding: usize,
}

impl Window {
    /// A `k x k` window.
    pub fn square(k: usize, stride: usize, padding: usize) -> Window {
        Window { kh: k, kw: k, stride, padding }
    }

    /// Output height and width for an `h x w` input, or an error when the
    /// window does not fit.
    pub fn output(&self, op: &'static str, h: usize, w: usize) -> Result<(usize, usize)> {
        // Checked: a wrapped `h + 2 * padding` would give a small, wrong output.
        let padded = |x: usize| self.padding.checked_mul(2).and_then(|p| p.checked_add(x));
        let (Some(ph), Some(pw)) = (padded(h), padded(w)) else {
            return Err(Error::Invalid {
                op,
                message: format!("padding {} of a {h}x{w} input is too large to index", self.padding),
            });
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `h + 2 * padding` used to wrap: padding 2^63 "fit" any window and
    /// gave the output size of an unpadded input.
    #[test]
    fn padding_too_large_to_index_is_an_error() {
        let huge = 1usize << (usize::BITS - 1);
        for padding in [huge, usize::MAX / 2 + 1, usize::MAX] {
            let err = Window::square(3, 1, padding).output("conv2d", 5, 5).unwrap_err();
            assert!(err.to_string().contains("too large to index"), "{err}");
        }
        assert_eq!(Window::square(3, 1, 1).output("conv2d", 5, 5).unwrap(), (5, 5));
        // Offsets for images too large for 31 bits, with sizes that wrap usize too.
        let win = Window::square(1, 1, 0);
        let g = Planes { c: 1, h: 1 << 40, w: 1 << 40, win, oh: 1 << 40, ow: 1 << 40 };
        assert!(Fields::new(&g, 1, 1 << 40).is_none());
    }
}
