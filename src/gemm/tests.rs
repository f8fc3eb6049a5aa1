//! GEMM against the naive triple loop, for every kernel this CPU runs.

use super::reference::sgemm_naive;
use super::{sgemm, sgemm_with, GemmError, KernelChoice, Transpose};
use proptest::prelude::*;

fn filled(len: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Run one product with every kernel and compare with the naive loop.
/// Extra padding `pad` goes into each leading dimension.
#[allow(clippy::too_many_arguments)]
fn check(ta: Transpose, tb: Transpose, m: usize, n: usize, k: usize, alpha: f32, beta: f32, pad: usize, seed: u64) {
    let (ar, ac) = if ta == Transpose::No { (m, k) } else { (k, m) };
    let (br, bc) = if tb == Transpose::No { (k, n) } else { (n, k) };
    let (lda, ldb, ldc) = (ac + pad, bc + pad, n + pad);
    let a = filled(ar * lda, seed);
    let b = filled(br * ldb, seed + 1);
    let c0 = if beta == 0.0 { vec![f32::NAN; m * ldc] } else { filled(m * ldc, seed + 2) };
    let mut want = c0.clone();
    sgemm_naive(ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut want, ldc);
    for kernel in KernelChoice::available() {
        let mut got = c0.clone();
        sgemm_with(kernel, ta, tb, m, n, k, alpha, &a, lda, &b, ldb, beta, &mut got, ldc).unwrap();
        for i in 0..m {
            for j in 0..n {
                let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                let tol = 1e-5 * (k as f32 + 1.0) * (alpha.abs() + beta.abs() + 1.0);
                assert!(
                    (g - w).abs() <= tol,
                    "{kernel:?} {ta:?}{tb:?} m={m} n={n} k={k} alpha={alpha} beta={beta} pad={pad}: C[{i},{j}] = {g}, want {w}"
                );
            }
            // Padding between rows of C is never written.
            for j in n..ldc.min(n + pad) {
                let (g, w) = (got[i * ldc + j], c0[i * ldc + j]);
                assert!(g.to_bits() == w.to_bits(), "{kernel:?} wrote C padding at [{i},{j}]");
            }
        }
    }
}

fn transpose() -> impl Strategy<Value = Transpose> {
    prop_oneof![Just(Transpose::No), Just(Transpose::Yes)]
}

/// Sizes that hit 0, 1, every MR and NR (4, 6, 8, 12, 16, 24, 32) plus or
/// minus one, and values past KC / MC blocks.
fn size() -> impl Strategy<Value = usize> {
    prop_oneof![0usize..=3, prop::sample::select(vec![5, 7, 9, 11, 13, 15, 17, 23, 25, 31, 33, 47, 49]), 1usize..80,]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn matches_naive_loop(
        ta in transpose(), tb in transpose(),
        m in size(), n in size(), k in size(),
        alpha in prop::sample::select(vec![1.0f32, -0.5, 2.0]),
        beta in prop::sample::select(vec![0.0f32, 1.0, 0.5]),
        pad in 0usize..3, seed in any::<u64>(),
    ) {
        check(ta, tb, m, n, k, alpha, beta, pad, seed);
    }
}

#[test]
fn every_small_size_and_layout() {
    for m in 0..14 {
        for n in 0..18 {
            for k in [0, 1, 7] {
                for (ta, tb) in [(Transpose::No, Transpose::No), (Transpose::Yes, Transpose::Yes)] {
                    check(ta, tb, m, n, k, 1.0, 0.0, 1, (m * 100 + n) as u64);
                }
            }
        }
    }
}

#[test]
fn large_blocks_cross_every_cache_boundary() {
    // Past KC (512), MC and NR blocks, parallel path, both transposes.
    check(Transpose::No, Transpose::No, 301, 133, 1037, 1.0, 0.5, 3, 1);
    check(Transpose::Yes, Transpose::Yes, 97, 70, 600, -1.0, 0.0, 0, 2);
    // Narrow n with a long k: the k-split and streaming paths.
    check(Transpose::Yes, Transpose::No, 50, 10, 5000, 1.0, 0.0, 0, 3);
    check(Transpose::No, Transpose::No, 3000, 10, 300, 1.0, 1.0, 0, 4);
}

/// A C of more than 4 Mi floats a thread made in one KC block is written by
/// non-temporal stores (`driver::streams`), after a product of its own for
/// the columns before the first cache line boundary: C starting at each of
/// the offsets within a line, both layouts of A, every kernel; the
/// padding between rows stays untouched.
#[test]
fn a_large_c_written_once_goes_around_the_caches() {
    let (m, n, k, ldc) = (4203, 2048, 9, 2064);
    for (offset, ta) in [(0, Transpose::No), (1, Transpose::Yes), (5, Transpose::No), (15, Transpose::Yes)] {
        let (lda, ldb) = (if ta == Transpose::No { k } else { m }, n);
        let (a, b) = (filled(m * k, offset as u64), filled(k * n, 99));
        let mut want = vec![f32::NAN; m * ldc];
        sgemm_naive(ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, ldb, 0.0, &mut want, ldc);
        for kernel in KernelChoice::available() {
            let mut buf = vec![f32::NAN; m * ldc + 32];
            // `offset` floats past a 64-byte boundary.
            let at = buf.as_ptr().align_offset(64) + offset;
            let got = &mut buf[at..at + m * ldc];
            // On the threads (each streams its share) and on one (one share).
            for serial in [false, true] {
                got.fill(f32::NAN);
                crate::parallel::serial_if(serial, || {
                    sgemm_with(kernel, ta, Transpose::No, m, n, k, 1.0, &a, lda, &b, ldb, 0.0, got, ldc)
                })
                .unwrap();
                for i in 0..m {
                    for j in 0..ldc {
                        let (g, w) = (got[i * ldc + j], want[i * ldc + j]);
                        let ok = if j < n { (g - w).abs() <= 1e-5 * (k as f32 + 1.0) } else { g.is_nan() };
                        assert!(ok, "{kernel:?} {ta:?} offset {offset} serial {serial}: C[{i},{j}] = {g}, want {w}");
                    }
                }
            }
        }
    }
}

/// Where C sits in memory does not change its bits: the columns a streamed
/// C's first cache line holds are summed as the rest are, here with a
/// transposed A whose narrow products would be blocked in k differently.
#[test]
fn the_bits_of_c_do_not_depend_on_its_address() {
    let (m, n, k, ldc) = (65536, 64, 128, 64);
    let (a, b) = (filled(m * k, 5), filled(k * n, 6));
    for kernel in KernelChoice::available() {
        let mut runs = Vec::new();
        for offset in [0, 1, 4, 12] {
            let mut buf = vec![f32::NAN; m * ldc + 32];
            let at = buf.as_ptr().align_offset(64) + offset;
            sgemm_with(
                kernel,
                Transpose::Yes,
                Transpose::No,
                m,
                n,
                k,
                1.0,
                &a,
                m,
                &b,
                n,
                0.0,
                &mut buf[at..at + m * ldc],
                ldc,
            )
            .unwrap();
            runs.push(buf[at..at + m * ldc].to_vec());
        }
        for (r, run) in runs.iter().enumerate().skip(1) {
            let same = run.iter().zip(&runs[0]).all(|(x, y)| x.to_bits() == y.to_bits());
            assert!(same, "{kernel:?}: C at offset run {r} differs from C on a cache line");
        }
    }
}

/// `sgemm_new` (no zero fill) gives the bits of `sgemm` with beta 0 into a
/// NaN-filled C, on every route: empty, k = 0, the skinny kernels, the
/// blocked driver with edge tiles, and a streamed C.
#[test]
fn a_new_product_is_the_product_into_a_filled_c() {
    let (no, yes) = (Transpose::No, Transpose::Yes);
    for (ta, tb, m, n, k) in [
        (no, no, 0, 3, 4),
        (no, yes, 3, 4, 0),
        (no, yes, 300, 10, 784),
        (yes, no, 10, 200, 300),
        (no, no, 301, 133, 1037),
        (yes, yes, 77, 45, 33),
        (yes, no, 4203, 2048, 9),
    ] {
        let (lda, ldb) = (if ta == no { k } else { m }, if tb == no { n } else { k });
        let (a, b) = (filled(m * k, 3), filled(k * n, 4));
        let mut want = vec![f32::NAN; m * n];
        sgemm(ta, tb, m, n, k, 1.0, &a, lda.max(1), &b, ldb.max(1), 0.0, &mut want, n.max(1)).unwrap();
        let got = super::sgemm_new(ta, tb, m, n, k, &a, lda.max(1), &b, ldb.max(1)).unwrap();
        assert_eq!(got.len(), m * n);
        assert!(got.iter().zip(&want).all(|(g, w)| g.to_bits() == w.to_bits()), "{ta:?}{tb:?} {m}x{n}x{k}");
    }
    assert!(super::sgemm_new(Transpose::No, Transpose::No, 2, 2, 3, &[0.0; 5], 3, &[0.0; 6], 2).is_err());
}

#[test]
fn agrees_with_matrixmultiply() {
    let (m, k, n) = (257, 300, 129);
    let a = filled(m * k, 7);
    let b = filled(k * n, 8);
    let mut ours = vec![0.0; m * n];
    let mut theirs = vec![0.0; m * n];
    sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut ours, n).unwrap();
    // SAFETY: a, b and theirs hold m x k, k x n and m x n floats, row-major.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k as isize,
            1,
            b.as_ptr(),
            n as isize,
            1,
            0.0,
            theirs.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    for (x, y) in ours.iter().zip(&theirs) {
        assert!((x - y).abs() < 1e-3, "{x} vs {y}");
    }
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let a = vec![0.0; 6];
    let mut c = vec![0.0; 4];
    let err = sgemm(Transpose::No, Transpose::No, 2, 2, 3, 1.0, &a, 3, &a[..5], 2, 0.0, &mut c, 2).unwrap_err();
    assert!(matches!(err, GemmError::TooShort { operand: "B", needed: 6, len: 5, .. }), "{err}");
    let err = sgemm(Transpose::No, Transpose::No, 2, 2, 3, 1.0, &a, 2, &a, 2, 0.0, &mut c, 2).unwrap_err();
    assert!(matches!(err, GemmError::LeadingDimension { operand: "A", .. }), "{err}");
    assert!(err.to_string().contains("leading dimension of A is 2"));
}

/// The same product gives the same bits on one thread and on two, also when
/// k is split (k >> m, n) and when the rows or columns are shared out.
#[test]
fn one_and_two_threads_give_the_same_bits() {
    let mut r = crate::rng::Rng::new(21);
    for (m, n, k) in [(30, 40, 9000), (300, 500, 700), (64, 3136, 363)] {
        let a: Vec<f32> = (0..m * k).map(|_| r.normal()).collect();
        let b: Vec<f32> = (0..k * n).map(|_| r.normal()).collect();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            let mut c = vec![0.0f32; m * n];
            pool.install(|| sgemm(Transpose::No, Transpose::No, m, n, k, 1.0, &a, k, &b, n, 0.0, &mut c, n)).unwrap();
            c
        };
        assert!(on(1) == on(2), "{m}x{n}x{k}: 1 and 2 threads differ");
    }
}

/// Operand extents that overflow usize: the check must say so, not wrap to a
/// small number and let the loops read far outside the slices. (Each of
/// these passed the unchecked `(rows - 1) * ld + cols` test, which wrapped.)
#[test]
fn overflowing_extents_are_errors() {
    let big = usize::MAX;
    let half = (1usize << (usize::BITS - 1)) + 1;
    let (a, b) = (vec![1.0f32; 8], vec![1.0f32; 8]);
    let mut c = vec![0.0f32; 8];
    let no = Transpose::No;
    let yes = Transpose::Yes;
    // (ta, tb, m, n, k, lda, ldb, ldc, the operand at fault)
    let cases = [
        (no, no, 3, 1, 2, big, 1, 1, "A"),          // 2 * MAX + 2 wraps to 0
        (yes, no, 2, 1, 3, big, 1, 1, "A"),         // A stored k x m
        (no, no, 1, 1, 3, 3, big, 1, "B"),          // B stored k x n
        (no, yes, 1, 3, 1, 1, big, 3, "B"),         // B stored n x k
        (no, no, 3, 1, 1, 1, 1, big, "C"),          // C rows MAX apart
        (no, no, 2, 1, half, half, 2, 1, "A"),      // a huge depth: A and B both wrap
        (no, yes, 2, 9, 1, 1, big / 8 + 1, 9, "B"), // n = 9 > the skinny limit
    ];
    for (ta, tb, m, n, k, lda, ldb, ldc, operand) in cases {
        for kernel in KernelChoice::available() {
            let err = sgemm_with(kernel, ta, tb, m, n, k, 1.0, &a, lda, &b, ldb, 0.0, &mut c, ldc).unwrap_err();
            assert!(
                matches!(err, GemmError::Overflow { operand: o, .. } if o == operand),
                "{kernel:?} {m}x{n}x{k}: {err}"
            );
            assert!(err.to_string().contains(&format!("{operand} is stored as")), "{err}");
        }
    }
    // The pre-packed and gathered products check the same way.
    use super::{sgemm_packed, sgemm_packed_gather, PackedA};
    let err = PackedA::new(no, 3, 2, &a, big).err().expect("A's extent overflows");
    assert!(matches!(err, GemmError::Overflow { operand: "A", .. }), "{err}");
    let err = PackedA::new(yes, 2, 3, &a, big).err().expect("A's extent overflows");
    assert!(matches!(err, GemmError::Overflow { operand: "A", .. }), "{err}");
    let packed = PackedA::new(no, 3, 2, &a, 2).unwrap();
    let err = sgemm_packed(&packed, no, 1, 1.0, &b, big, 0.0, &mut c, 1).unwrap_err();
    assert!(matches!(err, GemmError::Overflow { operand: "B", .. }), "{err}");
    let err = sgemm_packed(&packed, no, 1, 1.0, &b, 1, 0.0, &mut c, big).unwrap_err();
    assert!(matches!(err, GemmError::Overflow { operand: "C", .. }), "{err}");
    let err = sgemm_packed_gather(&packed, 1.0, &b, &[0, 1], &[0], 0.0, &mut c, big).unwrap_err();
    assert!(matches!(err, GemmError::Overflow { operand: "C", .. }), "{err}");
    let err = sgemm_packed_gather(&packed, 1.0, &b, &[0, u32::MAX], &[u32::MAX], 0.0, &mut c, 1).unwrap_err();
    assert!(matches!(err, GemmError::GatherRange { .. }), "{err}");
    // A row stride that cannot be stepped is fine when there is one row.
    let mut one = [f32::NAN; 2];
    sgemm(no, no, 1, 2, 3, 1.0, &a[..3], big, &b[..6], 2, 0.0, &mut one, big).unwrap();
    assert_eq!(one, [3.0, 3.0]);
    sgemm(yes, no, 2, 1, 1, 1.0, &a[..2], 2, &b[..1], big, 0.0, &mut one, 1).unwrap();
    assert_eq!(one, [1.0, 1.0]);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]
    /// The operand check agrees with exact (128-bit) arithmetic for any
    /// extents, the huge ones included.
    #[test]
    fn the_operand_check_is_exact(
        rows in prop_oneof![0usize..4, Just(usize::MAX), any::<usize>()],
        cols in prop_oneof![0usize..4, any::<usize>()],
        ld in prop_oneof![0usize..6, Just(usize::MAX), any::<usize>()],
        len in prop_oneof![0usize..16, any::<usize>()],
    ) {
        let got = super::check_operand("A", rows, cols, ld, len);
        let fits = rows == 0 || cols == 0
            || (ld >= cols && (rows as u128 - 1) * ld as u128 + cols as u128 <= len as u128);
        prop_assert_eq!(got.is_ok(), fits, "{:?}", got);
    }
}
