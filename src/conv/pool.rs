//! Max pooling, with the position of each maximum kept for the backward pass.

use super::Planes;

/// Max-pool one plane `[h, w]` of `g` into `out [oh, ow]`; `arg` receives the
/// index into the plane of each maximum (the first, on ties). Padding is
/// never chosen (it counts as -infinity).
pub fn max_pool2d(x: &[f32], g: &Planes, out: &mut [f32], arg: &mut [u32]) {
    let Planes { h, w, win, oh, ow, .. } = *g;
    if win.padding == 0 {
        // Every window lies inside the plane: no bounds to test.
        for oy in 0..oh {
            for ox in 0..ow {
                let first = oy * win.stride * w + ox * win.stride;
                let (mut best, mut at) = (x[first], first as u32);
                for i in 0..win.kh {
                    let start = (oy * win.stride + i) * w + ox * win.stride;
                    for (j, &v) in x[start..start + win.kw].iter().enumerate() {
                        // Larger, or NaN (which then sticks, as in PyTorch).
                        if (v > best || v.is_nan()) && !best.is_nan() {
                            best = v;
                            at = (start + j) as u32;
                        }
                    }
                }
                out[oy * ow + ox] = best;
                arg[oy * ow + ox] = at;
            }
        }
        return;
    }
    for oy in 0..oh {
        for ox in 0..ow {
            let (mut best, mut at) = (f32::NEG_INFINITY, u32::MAX);
            for i in 0..win.kh {
                let y = (oy * win.stride + i) as isize - win.padding as isize;
                if y < 0 || y >= h as isize {
                    continue;
                }
                for j in 0..win.kw {
                    let xx = (ox * win.stride + j) as isize - win.padding as isize;
                    if xx < 0 || xx >= w as isize {
                        continue;
                    }
                    let idx = y as usize * w + xx as usize;
                    // `>` keeps the first maximum; NaN propagates like PyTorch.
                    if x[idx] > best || at == u32::MAX || x[idx].is_nan() {
                        best = x[idx];
                        at = idx as u32;
                    }
                }
            }
            out[oy * ow + ox] = best;
            arg[oy * ow + ox] = at;
        }
    }
}

/// Route each output gradient to the input that was the maximum.
pub fn max_pool2d_backward(dy: &[f32], arg: &[u32], dx: &mut [f32]) {
    for (&g, &a) in dy.iter().zip(arg) {
        dx[a as usize] += g;
    }
}
