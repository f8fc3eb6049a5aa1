//! SIMD lanes: the handful of vector operations a GEMM microkernel needs.
//!
//! The microkernel in `kernel.rs` is written once, generic over [`Lane`], and
//! instantiated for each instruction set. Why not `wide` everywhere? `wide`
//! chooses its implementation with compile-time `cfg(target_feature)`, so inside
//! a function enabled at *run time* with `#[target_feature]` it would still emit
//! baseline SSE code and a separate multiply and add. The fast lanes therefore
//! speak `core::arch` directly; the portable lane is `wide::f32x8`, which is what
//! a build without AVX (or on another architecture) runs.

/// A vector of `WIDTH` f32 values. All methods are `unsafe` because the fast
/// implementations require CPU features that the caller must have checked.
///
/// # Safety
/// Every method: the CPU has the lane's features (AVX2 and FMA for `Avx2`,
/// AVX-512F for `Avx512`, none for the portable lane). `load` and `store`
/// also need `WIDTH` readable (writable) floats at `p`, any alignment.
pub(crate) trait Lane: Copy {
    const WIDTH: usize;
    unsafe fn zero() -> Self;
    unsafe fn splat(x: f32) -> Self;
    /// Unaligned load of `WIDTH` values.
    unsafe fn load(p: *const f32) -> Self;
    /// Unaligned store of `WIDTH` values.
    unsafe fn store(self, p: *mut f32);
    /// Store of `WIDTH` values that bypasses the caches (a non-temporal
    /// store) where the lane has one, for output that will not be read again
    /// soon: no read of the line before it is written, no eviction of what
    /// the caches hold. `p` must be aligned to the vector's size (`WIDTH * 4`
    /// bytes; a streamed tile's rows start on 64 bytes). The stores are weakly
    /// ordered: [`fence`] before another thread may read them.
    #[inline(always)]
    unsafe fn stream(self, p: *mut f32) {
        // SAFETY: forwarded (an aligned pointer is a valid unaligned one).
        unsafe { self.store(p) }
    }
    /// `self + a * b`, fused where the hardware can.
    unsafe fn fma(self, a: Self, b: Self) -> Self;
    unsafe fn mul(self, b: Self) -> Self;
    /// Sum of the lanes.
    unsafe fn reduce_sum(self) -> f32;
    /// Hint that the cache line at `p` will be read and written soon.
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        prefetch(p)
    }
}

/// Hint that the cache line holding `p` will be read or written soon.
#[inline(always)]
pub(crate) fn prefetch(p: *const f32) {
    // SAFETY: a prefetch is only a hint: it never faults, whatever the
    // address, and SSE (which it needs) is in every x86_64 CPU.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_prefetch(p as *const i8, std::arch::x86_64::_MM_HINT_T0)
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// [`prefetch`] every cache line of the `len` floats from `p` on, in memory
/// order (nothing when `len` is 0).
#[inline(always)]
pub(crate) fn prefetch_run(p: *const f32, len: usize) {
    if len == 0 {
        return;
    }
    for i in (0..len).step_by(16).chain([len - 1]) {
        prefetch(p.wrapping_add(i));
    }
}

/// Order the [`Lane::stream`] stores made so far before any later store, so
/// that a thread that synchronises with this one afterwards sees them.
#[inline(always)]
pub(crate) fn fence() {
    // SAFETY: SFENCE is SSE, which every x86_64 CPU has; it touches no memory.
    #[cfg(target_arch = "x86_64")]
    unsafe {
        std::arch::x86_64::_mm_sfence()
    }
}

/// Portable lane: `wide::f32x8`.
impl Lane for wide::f32x8 {
    const WIDTH: usize = 8;
    #[inline(always)]
    unsafe fn zero() -> Self {
        wide::f32x8::ZERO
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> Self {
        wide::f32x8::splat(x)
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> Self {
        // SAFETY: the caller vouches for 8 readable floats at `p`.
        unsafe { wide::f32x8::from(std::ptr::read_unaligned(p as *const [f32; 8])) }
    }
    #[inline(always)]
    unsafe fn store(self, p: *mut f32) {
        // SAFETY: the caller vouches for 8 writable floats at `p`.
        unsafe { std::ptr::write_unaligned(p as *mut [f32; 8], self.to_array()) }
    }
    #[inline(always)]
    unsafe fn fma(self, a: Self, b: Self) -> Self {
        a.mul_add(b, self)
    }
    #[inline(always)]
    unsafe fn mul(self, b: Self) -> Self {
        self * b
    }
    #[inline(always)]
    unsafe fn reduce_sum(self) -> f32 {
        self.to_array().iter().sum()
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Lane;
    use std::arch::x86_64::*;

    /// 8 lanes of AVX2 with FMA3. Only used inside `#[target_feature(enable =
    /// "avx2,fma")]` functions, into which these `inline(always)` bodies fold.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256);

    impl Lane for Avx2 {
        const WIDTH: usize = 8;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller has AVX2 and FMA (the trait's contract).
            unsafe { Avx2(_mm256_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the caller has AVX2 and FMA (the trait's contract).
            unsafe { Avx2(_mm256_set1_ps(x)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller has AVX2 and FMA and WIDTH readable floats at `p` (the trait's contract).
            unsafe { Avx2(_mm256_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller has AVX2 and FMA and WIDTH writable floats at `p` (the trait's contract).
            unsafe { _mm256_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut f32) {
            // SAFETY: the caller has AVX2 and 8 writable floats at `p`, aligned to 32 bytes (the trait's contract).
            unsafe { _mm256_stream_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            // SAFETY: the caller has AVX2 and FMA (the trait's contract).
            unsafe { Avx2(_mm256_fmadd_ps(a.0, b.0, self.0)) }
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            // SAFETY: the caller has AVX2 and FMA (the trait's contract).
            unsafe { Avx2(_mm256_mul_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn reduce_sum(self) -> f32 {
            // SAFETY: the caller has AVX2 and FMA (the trait's contract).
            unsafe {
                let s = _mm_add_ps(_mm256_castps256_ps128(self.0), _mm256_extractf128_ps::<1>(self.0));
                let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
                _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
            }
        }
    }

    /// 16 lanes of AVX-512F. Only used inside `#[target_feature(enable =
    /// "avx512f")]` functions.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512);

    impl Lane for Avx512 {
        const WIDTH: usize = 16;
        #[inline(always)]
        unsafe fn zero() -> Self {
            // SAFETY: the caller has AVX-512F (the trait's contract).
            unsafe { Avx512(_mm512_setzero_ps()) }
        }
        #[inline(always)]
        unsafe fn splat(x: f32) -> Self {
            // SAFETY: the caller has AVX-512F (the trait's contract).
            unsafe { Avx512(_mm512_set1_ps(x)) }
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            // SAFETY: the caller has AVX-512F and WIDTH readable floats at `p` (the trait's contract).
            unsafe { Avx512(_mm512_loadu_ps(p)) }
        }
        #[inline(always)]
        unsafe fn store(self, p: *mut f32) {
            // SAFETY: the caller has AVX-512F and WIDTH writable floats at `p` (the trait's contract).
            unsafe { _mm512_storeu_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn stream(self, p: *mut f32) {
            // SAFETY: the caller has AVX-512F and 16 writable floats at `p`, aligned to 64 bytes (the trait's contract).
            unsafe { _mm512_stream_ps(p, self.0) }
        }
        #[inline(always)]
        unsafe fn fma(self, a: Self, b: Self) -> Self {
            // SAFETY: the caller has AVX-512F (the trait's contract).
            unsafe { Avx512(_mm512_fmadd_ps(a.0, b.0, self.0)) }
        }
        #[inline(always)]
        unsafe fn mul(self, b: Self) -> Self {
            // SAFETY: the caller has AVX-512F (the trait's contract).
            unsafe { Avx512(_mm512_mul_ps(self.0, b.0)) }
        }
        #[inline(always)]
        unsafe fn reduce_sum(self) -> f32 {
            // SAFETY: the caller has AVX-512F (the trait's contract).
            unsafe { _mm512_reduce_add_ps(self.0) }
        }
    }
}
