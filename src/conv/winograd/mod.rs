//! Winograd's minimal filtering, F(2x2, 3x3) and F(2x2, 5x5) (Lavin and
//! Gray, "Fast Algorithms for Convolutional Neural Networks", 2016), for
//! 3 x 3 and 5 x 5 stride-1 convolutions.
//!
//! A 2 x 2 block of outputs of an r x r filter needs an a x a patch `d` of
//! the input (a = r + 1). Direct convolution spends 2 * 2 * r * r
//! multiplications on it per filter and channel; Winograd spends a * a:
//!
//! ```text
//! Y = Aᵀ [ Σ_c (G g_c Gᵀ) ⊙ (Bᵀ d_c B) ] A
//! ```
//!
//! where `G g Gᵀ` (a x a) is computed once per filter, `Bᵀ d B` once per
//! patch and channel, and `A`, `B`, `G` are small constant matrices (below:
//! for 3 x 3 they hold only 0, ±1 and ±1/2, so the transforms are additions).
//! The sum over channels at each of the a * a positions is a matrix product:
//! `M[ξ] (out x tiles) = U[ξ] (out x in) · V[ξ] (in x tiles)`, run by our
//! SGEMM. For AlexNet's 13 x 13 layers (7 x 7 tiles cover 14 x 14 outputs)
//! F(2x2, 3x3) makes 784 products per filter and channel instead of 1521
//! (1.94x fewer); for its 27 x 27 5 x 5 layer F(2x2, 5x5) makes 7056 instead
//! of 18225 (2.58x fewer).
//!
//! The price is rounding: the transforms add and subtract values before the
//! products, so the error is a few times that of the direct sum (measured
//! in the tests below against the direct convolution in f64; larger for
//! 5 x 5, whose transforms hold larger numbers).

use crate::error::Result;
use crate::gemm::{prefetch_run, sgemm_packed, PackedA, Transpose};
use rayon::prelude::*;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

/// One algorithm F(2x2, r x r) on a x a tiles (`A = R + 1`): its three
/// transforms as constants, so that each use compiles to the few additions
/// and multiplications its nonzero entries ask for.
trait Minimal<const R: usize, const A: usize> {
    /// Bᵀ: the input transform (a x a).
    const BT: [[f32; A]; A];
    /// G: the filter transform (a x r).
    const G: [[f32; R]; A];
    /// Aᵀ: the output transform (2 x a).
    const AT: [[f32; A]; 2];
    /// Tiles per product, about: enough columns for full panels, few enough
    /// that the transformed inputs and products (a^2 matrices each) stay
    /// near the caches.
    const TILES: usize;
    /// The columns of Aᵀ and of G: the filters' gradient runs the output and
    /// filter transforms backwards, with their transposes.
    const A_COLUMNS: [[f32; 2]; A] = transpose(Self::AT);
    const G_COLUMNS: [[f32; A]; R] = transpose(Self::G);
}

/// The transpose of an `M x N` matrix (for the constants above).
const fn transpose<const M: usize, const N: usize>(m: [[f32; N]; M]) -> [[f32; M]; N] {
    let mut t = [[0.0; M]; N];
    let mut i = 0;
    while i < M {
        let mut j = 0;
        while j < N {
            t[j][i] = m[i][j];
            j += 1;
        }
        i += 1;
    }
    t
}

/// F(2x2, 3x3) at the points 0, 1, -1 and infinity.
struct F3;

impl Minimal<3, 4> for F3 {
    const BT: [[f32; 4]; 4] =
        [[1.0, 0.0, -1.0, 0.0], [0.0, 1.0, 1.0, 0.0], [0.0, -1.0, 1.0, 0.0], [0.0, 1.0, 0.0, -1.0]];
    const G: [[f32; 3]; 4] = [[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]];
    const AT: [[f32; 4]; 2] = [[1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, -1.0]];
    const TILES: usize = 1024;
}

/// F(2x2, 5x5) at the points 0, 1, -1, 1/2, -1/2 and infinity. Halves
/// rather than ±2: in f32 over 64 channels the error relative to the
/// largest output has about the same median (1.7e-6 against 1.6e-6) and a
/// smaller worst case over 30 draws (7.3e-6 against 1.8e-5); the matrices
/// and the figures come from `tests/fixtures/winograd.py`.
struct F5;

const T: f32 = 2.0 / 3.0;

impl Minimal<5, 6> for F5 {
    const BT: [[f32; 6]; 6] = [
        [0.25, 0.0, -1.25, 0.0, 1.0, 0.0],
        [0.0, -0.25, -0.25, 1.0, 1.0, 0.0],
        [0.0, 0.25, -0.25, -1.0, 1.0, 0.0],
        [0.0, -0.5, -1.0, 0.5, 1.0, 0.0],
        [0.0, 0.5, -1.0, -0.5, 1.0, 0.0],
        [0.0, 0.25, 0.0, -1.25, 0.0, 1.0],
    ];
    const G: [[f32; 5]; 6] = [
        [4.0, 0.0, 0.0, 0.0, 0.0],
        [T, T, T, T, T],
        [T, -T, T, -T, T],
        [-4.0 * T, -2.0 * T, -T, -0.5 * T, -0.25 * T],
        [-4.0 * T, 2.0 * T, -T, 0.5 * T, -0.25 * T],
        [0.0, 0.0, 0.0, 0.0, 1.0],
    ];
    const AT: [[f32; 6]; 2] = [[1.0, 1.0, 1.0, 1.0, 1.0, 0.0], [0.0, 1.0, -1.0, 0.5, -0.5, 1.0]];
    /// Fewer than for 3 x 3: 36 matrices instead of 16. On conv2's shape
    /// (Zen 3, alternating with the direct path) 256 and 512 gave 1.43-1.50x
    /// the direct forward, 1024 1.16x.
    const TILES: usize = 512;
}

/// `Σ_k row[k] * v(k)` over the nonzero `row[k]`: with `row` a constant the
/// zero terms vanish at compile time, and a start of -0.0 folds away too
/// (-0.0 + x is x for every x, which 0.0 + x is not).
#[inline(always)]
fn dot<const N: usize>(row: &[f32; N], v: impl Fn(usize) -> f32) -> f32 {
    let mut s = -0.0;
    for (k, &c) in row.iter().enumerate() {
        if c != 0.0 {
            s += c * v(k);
        }
    }
    s
}

/// Positions of a transformed tile (a x a) for `k x k` filters.
pub fn positions(k: usize) -> usize {
    (k + 1) * (k + 1)
}

/// Whether a convolution takes this path: 3 x 3 or 5 x 5 filters, stride
/// 1, one group, padding below the filter's size, and channels enough (in
/// and out) that the products are real products. `NABLA_CONV=direct` in the
/// environment, or [`set_enabled`]`(false)`, turns it off, to compare.
pub fn applies(c: usize, oc: usize, kh: usize, kw: usize, stride: usize, padding: usize, groups: usize) -> bool {
    enabled()
        && (kh == 3 || kh == 5)
        && kw == kh
        && stride == 1
        && padding < kh
        && groups == 1
        && c >= MIN_CHANNELS
        && oc >= MIN_CHANNELS
}

/// Whether `h x w` images, padded by `padding`, fit this path for `k x k`
/// filters: not empty, padded rows of at most about a thousand pixels, and few enough
/// tiles that one image's a^2 transformed matrices stay a bounded multiple
/// of its size (they are made for a whole image at once; larger images go
/// the direct way, which gathers its columns as it needs them).
pub fn fits(h: usize, w: usize, k: usize, padding: usize) -> bool {
    let padded = |n: usize| n.saturating_add(padding.saturating_mul(2));
    let tiles = |n: usize| padded(n).saturating_sub(k.saturating_sub(1)).div_ceil(2);
    h > 0 && w > 0 && padded(w).saturating_add(k) <= MAX_ROW && tiles(h).saturating_mul(tiles(w)) <= MAX_IMAGE_TILES
}

/// Tiles of one image beyond which the direct path is taken: 128 x 128
/// (a 256 x 256 output).
const MAX_IMAGE_TILES: usize = 128 * 128;

/// 0: not decided yet (the environment decides), 1: on, 2: off.
static ENABLED: AtomicU8 = AtomicU8::new(0);

/// Whether 3 x 3 and 5 x 5 convolutions may take this path.
pub fn enabled() -> bool {
    match ENABLED.load(Ordering::Relaxed) {
        0 => {
            let on = std::env::var("NABLA_CONV").map_or(true, |v| v != "direct");
            ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
            on
        }
        v => v == 1,
    }
}

/// Turn the path on or off for the whole process (benches compare both).
pub fn set_enabled(on: bool) {
    ENABLED.store(if on { 1 } else { 2 }, Ordering::Relaxed);
}

/// Fewer input or output channels than this go the direct way.
const MIN_CHANNELS: usize = 32;

/// The filter size's algorithm, as a call of `$f::<R, A, F>($args)`;
/// `Err` for sizes without one.
macro_rules! by_size {
    ($k:expr, $f:ident($($arg:expr),*)) => {
        match $k {
            3 => Ok($f::<3, 4, F3>($($arg),*)),
            5 => Ok($f::<5, 6, F5>($($arg),*)),
            k => Err(crate::Error::Invalid { op: "conv2d (Winograd)", message: format!("no algorithm for {k}x{k} filters") }),
        }
    };
}

mod filter_gradient;
pub use filter_gradient::filter_gradient;

/// `U = G g Gᵀ` of every `k x k` filter of `w [oc, c, k, k]`: `(k + 1)^2`
/// values per filter, filter-major (`[oc * c][positions]`, so each filter's
/// are written together; [`pack_filters`] regroups them by position).
pub fn transform_filters(w: &[f32], oc: usize, c: usize, k: usize) -> Result<Vec<f32>> {
    by_size!(k, filters_by(w, oc, c))
}

fn filters_by<const R: usize, const A: usize, F: Minimal<R, A>>(w: &[f32], oc: usize, c: usize) -> Vec<f32> {
    let mut u = vec![0.0f32; A * A * oc * c];
    u.par_chunks_mut(A * A * c).zip(w.par_chunks(R * R * c)).for_each(|(us, gs)| {
        for (out, g) in us.chunks_exact_mut(A * A).zip(gs.chunks_exact(R * R)) {
            // G g: a x r.
            let mut t = [[0.0f32; R]; A];
            for (i, ti) in t.iter_mut().enumerate() {
                for (j, v) in ti.iter_mut().enumerate() {
                    *v = dot(&F::G[i], |k| g[k * R + j]);
                }
            }
            // (G g) Gᵀ: a x a.
            for (i, ti) in t.iter().enumerate() {
                for j in 0..A {
                    out[i * A + j] = dot(&F::G[j], |k| ti[k]);
                }
            }
        }
    });
    u
}

/// The `(k + 1)^2` matrices `oc x c` of transformed filters (from
/// [`transform_filters`]), one per position, packed for the products.
pub fn pack_filters(u: &[f32], oc: usize, c: usize, k: usize) -> Result<Vec<Arc<PackedA>>> {
    let positions = positions(k);
    (0..positions)
        .into_par_iter()
        .map(|xi| {
            let m: Vec<f32> = u.iter().skip(xi).step_by(positions).copied().collect();
            Ok(Arc::new(PackedA::new(Transpose::No, oc, c, &m, c)?))
        })
        .collect()
}

/// Geometry of one call: images of `c x h x w` padded by `padding`, giving
/// `oh x ow` outputs in `th x tw` tiles of 2 x 2.
#[derive(Clone, Copy, Debug)]
struct Tiles {
    c: usize,
    h: usize,
    w: usize,
    padding: usize,
    oh: usize,
    ow: usize,
    th: usize,
    tw: usize,
}

impl Tiles {
    /// The tiles of `c x h x w` images padded by `padding` for `k x k`
    /// filters, or an error if this path does not take them.
    fn new(c: usize, h: usize, w: usize, k: usize, padding: usize) -> Result<Tiles> {
        // padding < k first: the sums below then stay small, and once w + 2
        // padding >= k, `fits` bounds h too.
        if padding >= k
            || w.saturating_add(2 * padding) < k
            || h.saturating_add(2 * padding) < k
            || !fits(h, w, k, padding)
        {
            return Err(invalid(format!(
                "a {h}x{w} input with padding {padding} is outside what the {k}x{k} path takes"
            )));
        }
        let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
        Ok(Tiles { c, h, w, padding, oh, ow, th: oh.div_ceil(2), tw: ow.div_ceil(2) })
    }

    fn per_image(&self) -> usize {
        self.th * self.tw
    }
}

fn invalid(message: String) -> crate::Error {
    crate::Error::Invalid { op: "conv2d (Winograd)", message }
}

/// The convolution of `x [n, c, h, w]` (zero padding `padding`) by the
/// `k x k` filters whose packed transforms are `u` (from [`pack_filters`],
/// `oc` filters), plus `bias`, then ReLU if `relu`: `[n, oc, oh, ow]`.
#[allow(clippy::too_many_arguments)]
pub fn convolve(
    x: &[f32],
    [n, c, h, w]: [usize; 4],
    k: usize,
    padding: usize,
    u: &[Arc<PackedA>],
    oc: usize,
    bias: Option<&[f32]>,
    relu: bool,
) -> Result<Vec<f32>> {
    let g = Tiles::new(c, h, w, k, padding)?;
    if u.len() != positions(k) {
        return Err(invalid(format!("{} transformed filter matrices for {k}x{k} filters", u.len())));
    }
    by_size!(k, convolve_by(x, n, &g, u, oc, bias, relu))?
}

fn convolve_by<const R: usize, const A: usize, F: Minimal<R, A>>(
    x: &[f32],
    n: usize,
    g: &Tiles,
    u: &[Arc<PackedA>],
    oc: usize,
    bias: Option<&[f32]>,
    relu: bool,
) -> Result<Vec<f32>> {
    let positions = A * A;
    let c = g.c;
    let per = (F::TILES / g.per_image().max(1)).clamp(1, n.max(1));
    let mut y = vec![0.0f32; n * oc * g.oh * g.ow];
    let (image_in, image_out) = (c * g.h * g.w, oc * g.oh * g.ow);
    crate::scratch::with_vec(|v| {
        crate::scratch::with_vec(|m| {
            for (chunk, ys) in y.chunks_mut(per * image_out).enumerate() {
                let count = ys.len() / image_out;
                let xs = &x[chunk * per * image_in..(chunk * per + count) * image_in];
                let cols = count * g.per_image();
                let (vs, ms) = (c * cols + SKEW, oc * cols + SKEW);
                // Every element used is written before it is read: grow without clearing.
                if v.len() < positions * vs {
                    v.resize(positions * vs, 0.0);
                }
                if m.len() < positions * ms {
                    m.resize(positions * ms, 0.0);
                }
                transform_inputs::<R, A, F>(xs, count, g, &mut v[..positions * vs], vs);
                // The products, side by side on the threads.
                m[..positions * ms]
                    .par_chunks_mut(ms)
                    .zip(v[..positions * vs].par_chunks(vs))
                    .zip(u.par_iter())
                    .try_for_each(|((mx, vx), ux)| -> Result<()> {
                        sgemm_packed(
                            ux,
                            Transpose::No,
                            cols,
                            1.0,
                            &vx[..c * cols],
                            cols,
                            0.0,
                            &mut mx[..oc * cols],
                            cols,
                        )?;
                        Ok(())
                    })?;
                transform_outputs::<R, A, F>(&m[..positions * ms], ms, count, oc, g, ys, bias, relu);
            }
            Ok::<(), crate::Error>(())
        })
    })?;
    Ok(y)
}

/// The widest padded row this path takes (images up to about a thousand
/// pixels wide; wider ones go the direct way): with [`MAX_IMAGE_TILES`], a
/// bound on one image's transformed matrices.
const MAX_ROW: usize = 1024;

/// Floats between consecutive positions' matrices beyond their size: the
/// matrices of one tile are read and written together, and at a stride
/// that is a multiple of 4 KiB they would all fall in one set of the L1
/// cache and evict each other.
const SKEW: usize = 16;

/// `out[x] = Σ_r c[r] * rows[r][x]` for every `x < out.len()`: one row of
/// a transform for a whole row of tiles at once, so that it runs in vectors
/// (with `c` a constant, a few adds or FMAs per element).
#[inline(always)]
fn combine<const N: usize>(c: &[f32; N], rows: [&[f32]; N], out: &mut [f32]) {
    let n = out.len();
    let rows: [&[f32]; N] = std::array::from_fn(|r| &rows[r][..n]);
    for (x, o) in out.iter_mut().enumerate() {
        *o = dot(c, |r| rows[r][x]);
    }
}

/// [`combine`] with row `r` of the constant matrix `m`. One arm per row, so
/// that each call sees its coefficients as constants: called with a row
/// chosen at run time, `combine` kept a loop over the coefficients, tested
/// each for zero, and ran in scalar instructions (96 % of the output
/// transform's time was in them).
#[inline(always)]
fn combine_row<const N: usize, const ROWS: usize>(m: &[[f32; N]; ROWS], r: usize, rows: [&[f32]; N], out: &mut [f32]) {
    macro_rules! arms {
        ($($i:literal)*) => {
            match r {
                $($i if $i < ROWS => combine(&m[$i], rows, out),)*
                _ => unreachable!("a transform matrix has at most 6 rows"),
            }
        };
    }
    arms!(0 1 2 3 4 5)
}

/// Deal `row` out by parity: `row[2 i]` to `even[i]`, `row[2 i + 1]` to
/// `odd[i]`. In pairs, so that it runs in vectors (one value at a time, with
/// the parity tested per value, it did not).
#[inline(always)]
fn deal(row: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let mut pairs = row.chunks_exact(2);
    for ((pair, e), o) in (&mut pairs).zip(even.iter_mut()).zip(odd.iter_mut()) {
        *e = pair[0];
        *o = pair[1];
    }
    if let [val] = pairs.remainder() {
        even[row.len() / 2] = *val;
    }
}

/// A thread's scratch for [`transform_inputs`]: the padded plane split in
/// four by the parity of row and column, the rows after `Bᵀ d` (a of them
/// for each column parity), and one run of `V` before it is stored.
#[derive(Default)]
struct Work {
    quarters: Vec<f32>,
    t: Vec<f32>,
    run: Vec<f32>,
}

/// `V = Bᵀ d B` of every a x a patch: `a^2` matrices `c x (count * tiles)`.
///
/// Tile (ty, tx) reads padded rows 2 ty .. 2 ty + a and columns 2 tx ..
/// 2 tx + a. With the plane split by parity, row 2 ty + r is row ty + r / 2
/// of the quarter of parity r % 2, so each transform row is a sum of a
/// shifted whole quarters: long runs that go in vectors. Runs are `half`
/// wide, of which the first `tw` are tiles (the rest is not stored).
fn transform_inputs<const R: usize, const A: usize, F: Minimal<R, A>>(
    xs: &[f32],
    count: usize,
    g: &Tiles,
    v: &mut [f32],
    stride: usize,
) {
    let cols = count * g.per_image();
    let plane = g.h * g.w;
    // One (image, channel) plane at a time, on the threads; each writes its own
    // row segment of each of the matrices.
    let rows: Vec<(usize, usize)> = (0..count).flat_map(|j| (0..g.c).map(move |ch| (j, ch))).collect();
    let v_ptr = SendPtr(v.as_mut_ptr());
    let avx2 = avx2();
    rows.par_iter().for_each_init(Work::default, |work: &mut Work, &(j, ch)| {
        let src = &xs[(j * g.c + ch) * plane..(j * g.c + ch + 1) * plane];
        let at = Segment { dst: v_ptr, stride, first: ch * cols + j * g.per_image() };
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `avx2()` saw the CPU's AVX2; the segment as below.
            return unsafe { input_plane_avx2::<R, A, F>(src, g, work, at) };
        }
        // SAFETY: the segment is this task's own (image, channel) part of row
        // `ch` of every matrix, inside `v` (see `input_plane`).
        unsafe { input_plane::<R, A, F>(src, g, work, at) }
    });
}

/// Where one plane's transformed tiles go: matrix `ξ`'s run starts at
/// `dst + ξ * stride + first`.
#[derive(Clone, Copy)]
struct Segment {
    dst: SendPtr,
    stride: usize,
    first: usize,
}

/// [`input_plane`] compiled with AVX2, whose vectors are twice SSE2's.
///
/// # Safety
/// As [`input_plane`]; the CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn input_plane_avx2<const R: usize, const A: usize, F: Minimal<R, A>>(
    src: &[f32],
    g: &Tiles,
    work: &mut Work,
    at: Segment,
) {
    // SAFETY: forwarded.
    unsafe { input_plane::<R, A, F>(src, g, work, at) }
}

/// `V` of the tiles of one padded plane `src` (see [`transform_inputs`]).
///
/// # Safety
/// For every matrix `ξ < a^2` and tile row `ty`, the `tw` floats at
/// `at.dst + ξ * at.stride + at.first + ty * tw` are writable and written by
/// no one else meanwhile.
#[inline(always)]
unsafe fn input_plane<const R: usize, const A: usize, F: Minimal<R, A>>(
    src: &[f32],
    g: &Tiles,
    work: &mut Work,
    at: Segment,
) {
    // The padded plane: (2 th + r - 1) x (2 tw + r - 1), zeros around; its
    // quarters are `hh` x `half`.
    let (th, tw) = (g.th, g.tw);
    let (ph, pw) = (2 * th + R - 1, 2 * tw + R - 1);
    let (hh, half) = (ph.div_ceil(2), pw.div_ceil(2));
    let (q_len, t_len) = (hh * half, th * half);
    // Horizontal runs stop a / 2 - 1 short, so that their shifted reads stay in `t`.
    let run_len = t_len + 1 - A / 2;
    let Work { quarters, t, run } = work;
    // This plane's tiles go last into a run of `th * tw` floats in each of the
    // a^2 matrices: runs far apart, in matrices far larger than L2, so each
    // store would wait for its line. Asked for now, the lines arrive while
    // the plane is dealt and transformed (conv4's forward at batch 32 on the
    // Intel Xeon, alternating: median 39.4 -> 28.8 ms).
    for xi in 0..A * A {
        prefetch_run(at.dst.get().wrapping_add(xi * at.stride + at.first), th * tw);
    }
    quarters.clear();
    quarters.resize(4 * q_len, 0.0);
    // The tiles cover the whole padded image (ph >= h + 2 padding, pw
    // likewise): every pixel has its place. Column px goes to quarter
    // px % 2 at px / 2; with odd padding the row's first pixel is odd.
    let odd_first = g.padding % 2;
    let first_even = (g.padding + odd_first) / 2;
    for (y, row) in src.chunks_exact(g.w).enumerate() {
        let py = y + g.padding;
        let (even, odd) = quarters[(py % 2) * 2 * q_len..][..2 * q_len].split_at_mut(q_len);
        let at = (py / 2) * half;
        let (lead, rest) = row.split_at(odd_first.min(row.len()));
        if let [val] = lead {
            odd[at + g.padding / 2] = *val;
        }
        deal(rest, &mut even[at + first_even..], &mut odd[at + first_even..]);
    }
    // Bᵀ d, per column parity: t[(cp, i)] = Σ_r Bᵀ[i][r] rows 2 ty + r.
    t.resize(2 * A * t_len, 0.0);
    for (ci, ti) in t.chunks_exact_mut(t_len).enumerate() {
        let (cp, i) = (ci / A, ci % A);
        let d: [&[f32]; A] = std::array::from_fn(|r| &quarters[((r % 2) * 2 + cp) * q_len + (r / 2) * half..]);
        combine_row(&F::BT, i, d, ti);
    }
    // (Bᵀ d) B: V[i a + jj] = Σ_r Bᵀ[jj][r] columns 2 tx + r.
    run.resize(run_len, 0.0);
    for i in 0..A {
        let q: [&[f32]; A] = std::array::from_fn(|r| &t[((r % 2) * A + i) * t_len + r / 2..]);
        for jj in 0..A {
            combine_row(&F::BT, jj, q, run);
            for ty in 0..th {
                // SAFETY: the caller's; `ty half + tw <= run_len`.
                unsafe {
                    std::ptr::copy_nonoverlapping(
                        run[ty * half..ty * half + tw].as_ptr(),
                        at.dst.get().add((i * A + jj) * at.stride + at.first + ty * tw),
                        tw,
                    )
                };
            }
        }
    }
}

/// Whether the CPU has AVX2 (the transforms then run in its vectors).
fn avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    return is_x86_feature_detected!("avx2");
    #[cfg(not(target_arch = "x86_64"))]
    false
}

/// `Y = Aᵀ m A` of every tile of the products into `ys [count, oc, oh, ow]`,
/// with the bias and ReLU. An output plane's tiles are contiguous in each
/// product, so the transform runs over all of them at once.
#[allow(clippy::too_many_arguments)]
fn transform_outputs<const R: usize, const A: usize, F: Minimal<R, A>>(
    m: &[f32],
    stride: usize,
    count: usize,
    oc: usize,
    g: &Tiles,
    ys: &mut [f32],
    bias: Option<&[f32]>,
    relu: bool,
) {
    let (cols, tiles) = (count * g.per_image(), g.per_image());
    let out_plane = g.oh * g.ow;
    let avx2 = avx2();
    ys.par_chunks_mut(out_plane).enumerate().for_each_init(Vec::new, |s: &mut Vec<f32>, (plane, y)| {
        let (j, k) = (plane / oc, plane % oc);
        let b = bias.map_or(0.0, |b| b[k]);
        // The plane's tiles in product `ξ`: `m[ξ * stride + first..][..tiles]`.
        let m = &m[k * cols + j * tiles..];
        // The next plane's tiles, a run in each of the a^2 products (the
        // hardware follows fewer streams): asked for while this one is
        // transformed (conv3 and conv4 forward, alternating: 4-5 % faster).
        for xi in 0..A * A {
            prefetch_run(m.as_ptr().wrapping_add(cols + xi * stride), tiles);
        }
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: `avx2()` saw the CPU's AVX2.
            return unsafe { output_plane_avx2::<R, A, F>(m, stride, g, s, y, (b, relu)) };
        }
        output_plane::<R, A, F>(m, stride, g, s, y, (b, relu))
    });
}

/// [`output_plane`] compiled with AVX2.
///
/// # Safety
/// The CPU has AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn output_plane_avx2<const R: usize, const A: usize, F: Minimal<R, A>>(
    m: &[f32],
    stride: usize,
    g: &Tiles,
    s: &mut Vec<f32>,
    y: &mut [f32],
    finish: (f32, bool),
) {
    output_plane::<R, A, F>(m, stride, g, s, y, finish)
}

/// One output plane `y` of [`transform_outputs`] from its tiles' values in
/// the products (`m[ξ * stride..][..tiles]`), plus the bias `finish.0`,
/// then ReLU if `finish.1`; `s` is scratch.
#[inline(always)]
fn output_plane<const R: usize, const A: usize, F: Minimal<R, A>>(
    m: &[f32],
    stride: usize,
    g: &Tiles,
    s: &mut Vec<f32>,
    y: &mut [f32],
    (b, relu): (f32, bool),
) {
    let (tiles, tw) = (g.per_image(), g.tw);
    // `Aᵀ m` (2 a runs of `tiles`), then each output row parity's even and
    // odd pixels (4 runs).
    s.resize((2 * A + 4) * tiles, 0.0);
    let (s, pairs) = s.split_at_mut(2 * A * tiles);
    for (rq, run) in s.chunks_exact_mut(tiles).enumerate() {
        let (r, q) = (rq / A, rq % A);
        let at: [&[f32]; A] = std::array::from_fn(|i| &m[(i * A + q) * stride..][..tiles]);
        combine_row(&F::AT, r, at, run);
    }
    for (rc, run) in pairs.chunks_exact_mut(tiles).enumerate() {
        let (r, c) = (rc / 2, rc % 2);
        let sr: [&[f32]; A] = std::array::from_fn(|q| &s[(r * A + q) * tiles..(r * A + q + 1) * tiles]);
        combine_row(&F::AT, c, sr, run);
    }
    for (oy, out) in y.chunks_exact_mut(g.ow).enumerate() {
        let (ty, r) = (oy / 2, oy % 2);
        let (even, odd) = (&pairs[2 * r * tiles + ty * tw..], &pairs[(2 * r + 1) * tiles + ty * tw..]);
        let finish = |v: f32| if relu { (v + b).max(0.0) } else { v + b };
        // Pairs of pixels from the two runs, so the interleaving runs in vectors.
        let mut pixels = out.chunks_exact_mut(2);
        for ((o, &e), &d) in (&mut pixels).zip(even).zip(odd) {
            o[0] = finish(e);
            o[1] = finish(d);
        }
        if let [last] = pixels.into_remainder() {
            *last = finish(even[g.ow / 2]);
        }
    }
}

/// A pointer the threads may share, each writing only its own elements.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);

impl SendPtr {
    /// The pointer (a method, so closures capture the whole `SendPtr`).
    fn get(self) -> *mut f32 {
        self.0
    }
}
// SAFETY: used only by the transforms whose tasks write disjoint elements
// (`transform_inputs`, `filter_gradient::transform_gradients`).
unsafe impl Send for SendPtr {}
// SAFETY: as above.
unsafe impl Sync for SendPtr {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Direct convolution (correlation, as CNNs define it) by `k x k` filters, in f64.
    #[allow(clippy::too_many_arguments)]
    fn direct(
        x: &[f32],
        [n, c, h, w]: [usize; 4],
        wt: &[f32],
        oc: usize,
        k: usize,
        padding: usize,
        bias: &[f32],
    ) -> Vec<f64> {
        let (oh, ow) = (h + 2 * padding + 1 - k, w + 2 * padding + 1 - k);
        let mut y = vec![0.0f64; n * oc * oh * ow];
        for j in 0..n {
            for o in 0..oc {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut s = bias[o] as f64;
                        for ch in 0..c {
                            for dy in 0..k {
                                for dx in 0..k {
                                    let (iy, ix) =
                                        ((oy + dy) as isize - padding as isize, (ox + dx) as isize - padding as isize);
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w {
                                        s += x[((j * c + ch) * h + iy as usize) * w + ix as usize] as f64
                                            * wt[((o * c + ch) * k + dy) * k + dx] as f64;
                                    }
                                }
                            }
                        }
                        y[((j * oc + o) * oh + oy) * ow + ox] = s;
                    }
                }
            }
        }
        y
    }

    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut r = crate::tensor::Rng::new(seed);
        (0..len).map(|_| r.uniform() * 2.0 - 1.0).collect()
    }

    /// Shapes `[n, c, oc, h, w, k, padding]`.
    fn check(shape: [usize; 7], seed: u64) -> std::result::Result<(), String> {
        let [n, c, oc, h, w, k, padding] = shape;
        let x = values(n * c * h * w, seed);
        let wt = values(oc * c * k * k, seed + 1);
        let bias = values(oc, seed + 2);
        let u = pack_filters(&transform_filters(&wt, oc, c, k).unwrap(), oc, c, k).unwrap();
        let got = convolve(&x, [n, c, h, w], k, padding, &u, oc, Some(&bias), false).unwrap();
        let want = direct(&x, [n, c, h, w], &wt, oc, k, padding, &bias);
        // Each output sums k^2 c products of values in [-1, 1]: scale the
        // tolerance by sqrt(k^2 c), as rounding errors add up like a random
        // walk, and by 4 for the transforms' extra roundings.
        let tol = 2e-6 * ((k * k * c) as f64).sqrt() * 4.0;
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            if (*g as f64 - w).abs() > tol * (1.0 + w.abs()) {
                return Err(format!("output {i}: winograd {g}, direct {w} (tolerance {tol:.2e})"));
            }
        }
        Ok(())
    }

    #[test]
    fn matches_the_direct_convolution_on_alexnet_like_shapes() {
        // AlexNet's conv3-5 shapes, narrowed: 13 x 13, padding 1, odd size (a half tile).
        check([2, 40, 36, 13, 13, 3, 1], 7).unwrap();
        check([1, 33, 32, 8, 6, 3, 0], 9).unwrap();
        check([3, 32, 40, 5, 7, 3, 2], 11).unwrap();
        // conv2's: 27 x 27, 5 x 5, padding 2, narrowed; and the other paddings.
        check([2, 48, 40, 27, 27, 5, 2], 13).unwrap();
        check([1, 32, 33, 9, 6, 5, 0], 15).unwrap();
        check([1, 33, 32, 4, 5, 5, 4], 17).unwrap();
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        #[test]
        fn matches_the_direct_convolution(n in 1usize..3, c in 1usize..12, oc in 1usize..10, h in 1usize..12,
                                          w in 1usize..12, five in any::<bool>(), padding in 0usize..5,
                                          seed in 0u64..1000) {
            let k = if five { 5 } else { 3 };
            prop_assume!(padding < k && h + 2 * padding >= k && w + 2 * padding >= k);
            let shape = [n, c, oc, h, w, k, padding];
            prop_assert!(check(shape, seed).is_ok(), "{}", check(shape, seed).unwrap_err());
        }
    }

    #[test]
    fn relu_and_the_switch() {
        let (c, oc) = (32, 32);
        let x = values(c * 36, 3);
        for k in [3, 5] {
            let wt = values(oc * c * k * k, 4);
            let u = pack_filters(&transform_filters(&wt, oc, c, k).unwrap(), oc, c, k).unwrap();
            let plain = convolve(&x, [1, c, 6, 6], k, 1, &u, oc, None, false).unwrap();
            let relu = convolve(&x, [1, c, 6, 6], k, 1, &u, oc, None, true).unwrap();
            assert!(plain.iter().any(|v| *v < 0.0));
            assert!(plain.iter().zip(&relu).all(|(p, r)| *r == p.max(0.0)));
        }
        assert_eq!(applies(32, 32, 3, 3, 1, 1, 1), enabled());
        assert_eq!(applies(32, 32, 5, 5, 1, 2, 1), enabled());
        assert!(!applies(32, 32, 3, 3, 2, 1, 1) && !applies(32, 32, 7, 7, 1, 3, 1) && !applies(32, 32, 3, 3, 1, 1, 2));
        assert!(!applies(32, 32, 5, 3, 1, 1, 1) && !applies(32, 32, 3, 3, 1, 3, 1), "non-square, padding >= k");
        assert!(!applies(3, 64, 3, 3, 1, 1, 1), "too few channels");
        assert!(transform_filters(&[0.0; 49], 1, 1, 7).is_err());
        assert!(fits(256, 256, 3, 1) && fits(13, 1000, 5, 2));
        assert!(!fits(4, 0, 3, 2) && !fits(0, 4, 3, 2), "an empty image");
        assert!(!fits(258, 258, 3, 1) && !fits(13, 1020, 5, 2), "too many tiles, too wide a row");
    }
}
