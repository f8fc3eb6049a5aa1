//! Packing: copy a block of A or B into the order the microkernel reads.
//!
//! Packed panels are contiguous and zero-padded to whole MR / NR, so the
//! kernel never tests for edges and never reads past an operand. Packing also
//! absorbs transposes and leading dimensions: `op(A)` with any strides packs to
//! the same layout, which is why the product never needs a transposed copy.

/// A read-only strided matrix: element `(i, j)` is at `ptr + i * rs + j * cs`.
#[derive(Clone, Copy)]
pub(crate) struct View {
    pub ptr: *const f32,
    pub rs: usize,
    pub cs: usize,
}

// SAFETY: a View is only read, and the caller of `sgemm` lent us the slice for
// the whole call.
unsafe impl Send for View {}
// SAFETY: as for Send: shared use only reads the operands.
unsafe impl Sync for View {}

impl View {
    /// `op(M)` of a row-major matrix at `ptr` with rows `ld` apart: a
    /// transpose is only a swap of strides.
    pub fn of(ptr: *const f32, ld: usize, t: super::Transpose) -> View {
        match t {
            super::Transpose::No => View { ptr, rs: ld, cs: 1 },
            super::Transpose::Yes => View { ptr, rs: 1, cs: ld },
        }
    }

    /// The address of element `(i, j)`. Computing it is safe (wrapping
    /// arithmetic, as the one-past-the-end steps of the loops need);
    /// reading it is what the callers' contracts cover.
    #[inline(always)]
    pub fn at(&self, i: usize, j: usize) -> *const f32 {
        self.ptr.wrapping_add(i.wrapping_mul(self.rs).wrapping_add(j.wrapping_mul(self.cs)))
    }
}

/// A matrix read through two offset tables: element `(i, j)` is at
/// `src + rows[i] + cols[j]`. A convolution's column matrix is one: row
/// `(channel, ky, kx)` and column `(image, oy, ox)` of a zero-padded input
/// each add their own offset, so the columns need never be written out.
#[derive(Clone, Copy)]
pub(crate) struct Gather {
    pub src: *const f32,
    pub rows: *const u32,
    pub cols: *const u32,
}

// SAFETY: as for View.
unsafe impl Send for Gather {}
// SAFETY: as for Send: shared use only reads the operands.
unsafe impl Sync for Gather {}

impl Gather {
    /// The same matrix from element `(i, j)` on (safe to compute, as [`View::at`]).
    pub fn from(&self, i: usize, j: usize) -> Gather {
        Gather { src: self.src, rows: self.rows.wrapping_add(i), cols: self.cols.wrapping_add(j) }
    }
}

/// Pack the `mc x kc` block of A at `a` into MR-row panels: panel `r` holds
/// rows `r*MR..r*MR+MR`, element `(i, p)` at `dst[r*MR*kc + p*MR + i]`.
/// `AVX` says the caller enabled AVX, so 8 x 8 blocks may be transposed
/// in registers (LLVM otherwise turns the scatter into slow gathers).
///
/// # Safety
/// `a` covers the `mc x kc` block (every `a.at(i, p)`, `i < mc`, `p < kc`,
/// is readable) and, with `AVX`, the CPU has AVX. (`dst` is a slice: a short
/// one panics, never overruns.)
#[inline(always)]
pub(crate) unsafe fn pack_a<const MR: usize, const AVX: bool>(dst: &mut [f32], a: View, mc: usize, kc: usize) {
    // SAFETY: every read is `a.at(i, p)` with `i < mc`, `p < kc` (whole panels
    // read MR or 8 neighbours that all lie in the block); the vector
    // transpose runs only with `AVX`; writes go through slices.
    unsafe {
        let full = mc / MR;
        let (body, edge) = dst[..mc.div_ceil(MR) * MR * kc].split_at_mut(full * MR * kc);
        if a.rs == 1 {
            // Columns of op(A) are contiguous (A is a transposed row-major matrix,
            // like X in X^T * D): read each stored row once, in memory order, and
            // deal its MR-float pieces out to the panels.
            for p in 0..kc {
                let src = a.at(0, p);
                for (r, panel) in body.chunks_exact_mut(MR * kc).enumerate() {
                    let piece = std::ptr::read_unaligned(src.add(r * MR) as *const [f32; MR]);
                    panel[p * MR..p * MR + MR].copy_from_slice(&piece);
                }
            }
        } else if a.cs == 1 {
            // Rows contiguous: read 8 floats of each of MR rows and scatter them
            // down the panel (a transpose of MR x 8 blocks).
            for (r, panel) in body.chunks_exact_mut(MR * kc).enumerate() {
                let rows: [*const f32; MR] = std::array::from_fn(|i| a.at(r * MR + i, 0));
                let k8 = kc / 8 * 8;
                #[cfg(target_arch = "x86_64")]
                if AVX && MR.is_multiple_of(8) {
                    for p in (0..k8).step_by(8) {
                        for g in (0..MR).step_by(8) {
                            let out = panel.as_mut_ptr().add(p * MR + g);
                            transpose8x8(std::array::from_fn(|i| rows[g + i].add(p)), out, MR);
                        }
                    }
                    for p in k8..kc {
                        for (i, row) in rows.iter().enumerate() {
                            panel[p * MR + i] = *row.add(p);
                        }
                    }
                    continue;
                }
                for p in (0..k8).step_by(8) {
                    let out = &mut panel[p * MR..(p + 8) * MR];
                    for (i, row) in rows.iter().enumerate() {
                        let v = std::ptr::read_unaligned(row.add(p) as *const [f32; 8]);
                        for (q, x) in v.into_iter().enumerate() {
                            out[q * MR + i] = x;
                        }
                    }
                }
                for p in k8..kc {
                    for (i, row) in rows.iter().enumerate() {
                        panel[p * MR + i] = *row.add(p);
                    }
                }
            }
        } else {
            for (r, panel) in body.chunks_exact_mut(MR * kc).enumerate() {
                pack_a_general::<MR>(panel, a, r * MR, MR, kc);
            }
        }
        if !edge.is_empty() {
            pack_a_general::<MR>(edge, a, full * MR, mc - full * MR, kc);
        }
    }
}

/// One panel of `rows <= MR` rows from row `i0`, any strides, zero-padded.
///
/// # Safety
/// Every `a.at(i0 + i, p)`, `i < rows`, `p < kc`, is readable.
unsafe fn pack_a_general<const MR: usize>(panel: &mut [f32], a: View, i0: usize, rows: usize, kc: usize) {
    // SAFETY: reads only the elements the contract names.
    unsafe {
        for i in 0..MR {
            for p in 0..kc {
                panel[p * MR + i] = if i < rows { *a.at(i0 + i, p) } else { 0.0 };
            }
        }
    }
}

/// Pack the `kc x cols` block of B at `b` into NR-column panels: panel `s`
/// holds columns `s*NR..s*NR+NR`, element `(p, j)` at `dst[s*NR*kc + p*NR + j]`;
/// the last panel is zero-padded. Threads each pack a run of whole panels.
/// `AVX` as for [`pack_a`].
///
/// # Safety
/// `b` covers the `kc x cols` block (every `b.at(p, j)`, `p < kc`,
/// `j < cols`, is readable) and, with `AVX`, the CPU has AVX.
#[inline(always)]
pub(crate) unsafe fn pack_b<const NR: usize, const AVX: bool>(dst: &mut [f32], b: View, cols: usize, kc: usize) {
    // SAFETY: every read is `b.at(p, j)` with `p < kc`, `j < cols` (whole panels
    // only in the body; the ragged edge goes element by element); the vector
    // transpose runs only with `AVX`; writes go through slices.
    unsafe {
        let full = cols / NR;
        let (body, edge) = dst[..cols.div_ceil(NR) * NR * kc].split_at_mut(full * NR * kc);
        #[cfg(target_arch = "x86_64")]
        if AVX && b.rs == 1 && NR.is_multiple_of(8) {
            // Columns of op(B) contiguous (B^T stored row-major, like the image
            // columns in a convolution's weight gradient dY * cols^T): transpose
            // 8 x 8 blocks in registers, as `pack_a` does for its rows.
            let k8 = kc / 8 * 8;
            for (s, panel) in body.chunks_exact_mut(NR * kc).enumerate() {
                let columns: [*const f32; NR] = std::array::from_fn(|j| b.at(0, s * NR + j));
                for p in (0..k8).step_by(8) {
                    for g in (0..NR).step_by(8) {
                        let out = panel.as_mut_ptr().add(p * NR + g);
                        transpose8x8(std::array::from_fn(|i| columns[g + i].add(p)), out, NR);
                    }
                }
                for p in k8..kc {
                    for (j, col) in columns.iter().enumerate() {
                        panel[p * NR + j] = *col.add(p);
                    }
                }
            }
            if !edge.is_empty() {
                pack_b_general::<NR>(edge, b, full * NR, cols - full * NR, kc);
            }
            return;
        }
        if b.cs == 1 {
            // Rows of op(B) contiguous (B row-major, like X in D^T * X): read
            // each stored row once, in memory order, dealing NR-float pieces out.
            for p in 0..kc {
                let src = b.at(p, 0);
                for (s, panel) in body.chunks_exact_mut(NR * kc).enumerate() {
                    let piece = std::ptr::read_unaligned(src.add(s * NR) as *const [f32; NR]);
                    panel[p * NR..p * NR + NR].copy_from_slice(&piece);
                }
            }
        } else {
            for (s, panel) in body.chunks_exact_mut(NR * kc).enumerate() {
                pack_b_general::<NR>(panel, b, s * NR, NR, kc);
            }
        }
        if !edge.is_empty() {
            pack_b_general::<NR>(edge, b, full * NR, cols - full * NR, kc);
        }
    }
}

/// One panel of `cols <= NR` columns from column `j0`, any strides, walking
/// each column in order (contiguous when B is transposed), zero-padded.
///
/// # Safety
/// Every `b.at(p, j0 + j)`, `p < kc`, `j < cols`, is readable.
unsafe fn pack_b_general<const NR: usize>(panel: &mut [f32], b: View, j0: usize, cols: usize, kc: usize) {
    // SAFETY: reads only the elements the contract names.
    unsafe {
        if b.cs == 1 {
            // Rows contiguous: copy the part of each row that exists.
            for (p, out) in panel.chunks_exact_mut(NR).take(kc).enumerate() {
                out[..cols].copy_from_slice(std::slice::from_raw_parts(b.at(p, j0), cols));
                out[cols..].fill(0.0);
            }
            return;
        }
        for j in 0..NR {
            for p in 0..kc {
                panel[p * NR + j] = if j < cols { *b.at(p, j0 + j) } else { 0.0 };
            }
        }
    }
}

/// Write the transpose of the 8 x 8 block whose rows start at `rows` to
/// `out`, one 8-float column every `stride` floats. Needs AVX.
///
/// # Safety
/// The CPU has AVX; each `rows[i]` is readable for 8 floats, and
/// `out + q * stride` writable for 8 floats, `q < 8`.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
unsafe fn transpose8x8(rows: [*const f32; 8], out: *mut f32, stride: usize) {
    // SAFETY: the loads and stores are the 8 x 8 floats the contract names,
    // on a CPU with AVX.
    unsafe {
        use std::arch::x86_64::*;
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(rows[i]));
        // Interleave pairs of rows, then pairs of pairs, then swap 128-bit halves.
        let t: [__m256; 8] = [
            _mm256_unpacklo_ps(r[0], r[1]),
            _mm256_unpackhi_ps(r[0], r[1]),
            _mm256_unpacklo_ps(r[2], r[3]),
            _mm256_unpackhi_ps(r[2], r[3]),
            _mm256_unpacklo_ps(r[4], r[5]),
            _mm256_unpackhi_ps(r[4], r[5]),
            _mm256_unpacklo_ps(r[6], r[7]),
            _mm256_unpackhi_ps(r[6], r[7]),
        ];
        let u: [__m256; 8] = [
            _mm256_shuffle_ps::<0x44>(t[0], t[2]),
            _mm256_shuffle_ps::<0xEE>(t[0], t[2]),
            _mm256_shuffle_ps::<0x44>(t[1], t[3]),
            _mm256_shuffle_ps::<0xEE>(t[1], t[3]),
            _mm256_shuffle_ps::<0x44>(t[4], t[6]),
            _mm256_shuffle_ps::<0xEE>(t[4], t[6]),
            _mm256_shuffle_ps::<0x44>(t[5], t[7]),
            _mm256_shuffle_ps::<0xEE>(t[5], t[7]),
        ];
        for q in 0..4 {
            _mm256_storeu_ps(out.add(q * stride), _mm256_permute2f128_ps::<0x20>(u[q], u[q + 4]));
            _mm256_storeu_ps(out.add((q + 4) * stride), _mm256_permute2f128_ps::<0x31>(u[q], u[q + 4]));
        }
    }
}

/// [`pack_b`] for a gathered B: the same panels, each row of a panel read
/// at NR offsets from that row's start (a gather where the columns jump).
/// `AVX` as for [`pack_a`]: eight offsets at a time go to a gather
/// instruction (LLVM otherwise moves each float on its own). `AVX512`: a
/// panel whose columns form a few runs of consecutive offsets (an output
/// row of a stride-1 convolution is one) copies each run with one masked
/// load and store instead.
///
/// # Safety
/// `b.rows` holds `kc` offsets and `b.cols` `cols`, every column offset
/// below 2^31, and `b.src + rows[p] + cols[j]` is readable for each pair; with
/// `AVX` (`AVX512`) the CPU has AVX2 (AVX-512F).
#[inline(always)]
pub(crate) unsafe fn pack_b_gather<const NR: usize, const AVX: bool, const AVX512: bool>(
    dst: &mut [f32],
    b: Gather,
    cols: usize,
    kc: usize,
) {
    // SAFETY: every read is `src + rows[p] + offs[j]` with `p < kc` and `offs[j]`
    // a column offset (or 0 past the last column), all inside the source by the
    // contract; masked lanes are not read; the vector paths run only with their
    // features.
    unsafe {
        for (s, panel) in dst[..cols.div_ceil(NR) * NR * kc].chunks_exact_mut(NR * kc).enumerate() {
            let (j0, width) = (s * NR, NR.min(cols - s * NR));
            // Past the last column: offset 0 (a valid element), zeroed below.
            let offs: [u32; NR] = std::array::from_fn(|j| if j < width { *b.cols.add(j0 + j) } else { 0 });
            #[cfg(target_arch = "x86_64")]
            if AVX512 {
                use std::arch::x86_64::*;
                // Runs (first column, offset, lane mask) of at most 16 columns.
                let mut runs = [(0usize, 0u32, 0u16); NR];
                let mut count = 0;
                let mut j = 0;
                while j < width {
                    let start = j;
                    j += 1;
                    while j < width && j - start < 16 && offs[j] == offs[j - 1] + 1 {
                        j += 1;
                    }
                    runs[count] = (start, offs[start], ((1u32 << (j - start)) - 1) as u16);
                    count += 1;
                }
                // A strided window gives runs of one: those are left to the gather.
                if count <= NR / 4 {
                    for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                        let row = b.src.add(*b.rows.add(p) as usize);
                        for &(at, off, mask) in &runs[..count] {
                            let v = _mm512_maskz_loadu_ps(mask, row.add(off as usize));
                            _mm512_mask_storeu_ps(out.as_mut_ptr().add(at), mask, v);
                        }
                        out[width..].fill(0.0);
                    }
                    continue;
                }
            }
            #[cfg(target_arch = "x86_64")]
            if AVX && !AVX512 && NR.is_multiple_of(8) && NR <= 64 {
                use std::arch::x86_64::*;
                // As the AVX-512 path, with runs of at most 8: a masked
                // load (lanes past the run read nothing and give zeros) and
                // a whole 8-float store. A store's tail past its run is
                // overwritten by the next run, or is the zeros past the
                // last column; a run ending in the last 8 columns of the
                // row is stored masked, so nothing lands past the row. An
                // 8-float gather costs several times a load on AMD's cores.
                let mut runs = [(0usize, 0u32, _mm256_setzero_si256(), false); NR];
                let mut count = 0;
                let mut j = 0;
                while j < width {
                    let start = j;
                    j += 1;
                    while j < width && j - start < 8 && offs[j] == offs[j - 1] + 1 {
                        j += 1;
                    }
                    let len = (j - start) as i32;
                    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(len), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
                    runs[count] = (start, offs[start], mask, start + 8 > NR);
                    count += 1;
                }
                if count <= NR / 2 {
                    for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                        let row = b.src.add(*b.rows.add(p) as usize);
                        let o = out.as_mut_ptr();
                        for &(at, off, mask, tail) in &runs[..count] {
                            let v = _mm256_maskload_ps(row.add(off as usize), mask);
                            if tail {
                                _mm256_maskstore_ps(o.add(at), mask, v);
                            } else {
                                _mm256_storeu_ps(o.add(at), v);
                            }
                        }
                        // Columns past the last run's store (all of them, when it was masked).
                        let written = runs[..count].last().map_or(0, |r| if r.3 { width } else { (r.0 + 8).min(NR) });
                        out[written.max(width)..].fill(0.0);
                    }
                    continue;
                }
            }
            #[cfg(target_arch = "x86_64")]
            if AVX && NR.is_multiple_of(8) && NR <= 64 {
                use std::arch::x86_64::*;
                // Offsets below 2^31 (checked by the caller), so they are valid i32 indices.
                let idx: [__m256i; 8] = std::array::from_fn(|g| {
                    if g < NR / 8 {
                        _mm256_loadu_si256(offs.as_ptr().add(g * 8) as *const __m256i)
                    } else {
                        _mm256_setzero_si256()
                    }
                });
                for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                    let row = b.src.add(*b.rows.add(p) as usize);
                    for (g, ix) in idx.iter().enumerate().take(NR / 8) {
                        _mm256_storeu_ps(out.as_mut_ptr().add(g * 8), _mm256_i32gather_ps::<4>(row, *ix));
                    }
                    out[width..].fill(0.0);
                }
                continue;
            }
            for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
                let row = b.src.add(*b.rows.add(p) as usize);
                for (o, &off) in out.iter_mut().zip(&offs) {
                    *o = *row.add(off as usize);
                }
                out[width..].fill(0.0);
            }
        }
    }
}
