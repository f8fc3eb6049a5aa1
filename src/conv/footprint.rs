//! The memory a convolution takes besides its input and output, from its
//! shapes alone, for the budget (`nn::footprint`): the buffers
//! `conv2d.rs`, `backward.rs` and `winograd` allocate, sized as they size
//! them. In floats, as f64, so that no shape a pipeline file can declare
//! overflows (the budget refuses those by the sizes computed here).

use super::winograd;

/// Floats of one convolution's buffers beyond its input, output and
/// gradients.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct ConvMemory {
    /// Per thread, kept between calls in `scratch` (padded chunks, wide
    /// products, Winograd's transformed tiles): the largest call's stays.
    pub scratch: f64,
    /// Allocated by the forward pass and freed at its end (packed filters,
    /// offset tables).
    pub forward: f64,
    /// Allocated by the backward pass and freed at its end (partial filter
    /// gradients, packed or flipped filters, the input gradient's own
    /// convolution).
    pub backward: f64,
}

/// One convolution of `n` images `[c, h, w]` by `oc` filters `k x k`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvShape {
    pub n: f64,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub oc: usize,
    pub k: usize,
    pub stride: usize,
    pub padding: usize,
    pub groups: usize,
}

/// Tiles per product of the Winograd path (`F3::TILES`, `F5::TILES`).
fn winograd_tiles(k: usize) -> f64 {
    if k == 3 {
        1024.0
    } else {
        512.0
    }
}

/// Columns a direct product aims at (`conv2d::PRODUCT_COLUMNS`).
const PRODUCT_COLUMNS: f64 = 1024.0;
/// Images per partial filter gradient (`backward::CONV_GROUP_IMAGES`).
const GROUP_IMAGES: f64 = 4.0;

impl ConvShape {
    fn out_side(&self, side: usize) -> f64 {
        let padded = side as f64 + 2.0 * self.padding as f64;
        ((padded - self.k as f64) / self.stride.max(1) as f64).floor().max(0.0) + 1.0
    }

    fn by_winograd(&self) -> bool {
        winograd::applies(self.c, self.oc, self.k, self.k, self.stride, self.padding, self.groups)
            && winograd::fits(self.h, self.w, self.k, self.padding)
    }

    /// `ConvGeom::images_per_product`, in f64.
    fn images_per_product(&self, pix: f64) -> f64 {
        let n = self.n.max(1.0);
        let want = (PRODUCT_COLUMNS / pix.max(1.0)).floor().clamp(1.0, n);
        let mut chunks = (n / want).ceil();
        if chunks > 1.0 {
            chunks = ((chunks / 4.0).ceil() * 4.0).min(n);
        }
        (n / chunks).ceil()
    }

    /// The Winograd path's tiles per image and images per product.
    fn tiles(&self) -> (f64, f64) {
        let tiles = |side: usize| ((side as f64 + 2.0 * self.padding as f64 - self.k as f64 + 1.0) / 2.0).ceil();
        let per_image = tiles(self.h) * tiles(self.w);
        let per = (winograd_tiles(self.k) / per_image.max(1.0)).floor().clamp(1.0, self.n.max(1.0));
        (per_image, per)
    }

    /// The floats of this convolution's buffers; `input_gradient`: whether
    /// its backward pass computes the input's gradient.
    pub(crate) fn memory(&self, input_gradient: bool) -> ConvMemory {
        let (c, oc, k) = (self.c as f64, self.oc as f64, self.k as f64);
        let groups = self.groups.max(1) as f64;
        let (oh, ow) = (self.out_side(self.h), self.out_side(self.w));
        let pix = oh * ow;
        let filters = oc * c / groups * k * k;
        let (mut m, input) = if self.by_winograd() {
            let positions = (k + 1.0) * (k + 1.0);
            let (per_image, per) = self.tiles();
            let cols = per * per_image;
            // The input's and the products' transforms; the filters'
            // transforms, unpacked and packed (and dU for their gradient).
            let tiles = positions * (c + oc) * (cols + 16.0) + 2.0 * (2.0 * positions.sqrt() + 4.0) * per_image;
            let m =
                ConvMemory { scratch: tiles, forward: 2.0 * positions * oc * c, backward: 2.0 * positions * oc * c };
            (m, input_gradient)
        } else {
            let per = self.images_per_product(pix);
            let padded = (self.h as f64 + 2.0 * self.padding as f64) * (self.w as f64 + 2.0 * self.padding as f64);
            let rows = c / groups * k * k;
            let chunks = (self.n / per).ceil();
            let partials = (chunks / (GROUP_IMAGES / per).ceil().max(1.0)).ceil();
            // Padded images of a chunk, the chunk's wide product and output
            // gradient, and (for the input's gradient by col2im) its columns.
            let scratch = per * c * padded + 2.0 * oc / groups * per * pix + rows * per * pix;
            // Packed filters and offset tables; partial filter gradients.
            let m = ConvMemory { scratch, forward: filters + rows + per * pix, backward: (partials + 1.0) * filters };
            (m, input_gradient)
        };
        if input {
            // With stride 1 and 16 channels or more per group, the input's
            // gradient is a convolution of its own, by flipped filters.
            let by_conv = self.stride == 1 && self.padding < self.k && self.c / self.groups.max(1) >= 16;
            if by_conv {
                let back = ConvShape {
                    c: self.oc,
                    h: oh as usize,
                    w: ow as usize,
                    oc: self.c,
                    padding: self.k - 1 - self.padding,
                    ..*self
                };
                let b = back.memory(false);
                m.scratch = m.scratch.max(b.scratch);
                m.backward = m.backward.max(filters + b.forward);
            } else {
                m.backward += filters;
            }
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_and_winograd_buffers_follow_their_sizes() {
        // LeNet's first layer: direct (1 channel), 28 x 28 outputs, one image per product.
        let lenet = ConvShape { n: 64.0, c: 1, h: 28, w: 28, oc: 6, k: 5, stride: 1, padding: 2, groups: 1 };
        let m = lenet.memory(false);
        assert_eq!(lenet.images_per_product(784.0), 1.0);
        assert_eq!(m.scratch, 32.0 * 32.0 + 2.0 * 6.0 * 784.0 + 25.0 * 784.0);
        // 64 chunks in groups of 4 images: 16 partial gradients and the sum.
        assert_eq!(m.backward, 17.0 * 150.0);
        // AlexNet's conv3 takes the Winograd path: its tiles dominate.
        let conv3 = ConvShape { n: 32.0, c: 192, h: 13, w: 13, oc: 384, k: 3, stride: 1, padding: 1, groups: 1 };
        if winograd::enabled() {
            let m = conv3.memory(true);
            let (per_image, per) = conv3.tiles();
            assert_eq!((per_image, per), (49.0, 20.0));
            assert!(m.scratch >= 16.0 * 576.0 * 980.0, "{m:?}");
        }
    }
}
