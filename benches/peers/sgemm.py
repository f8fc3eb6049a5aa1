"""Peer for `cargo bench --bench sgemm`: OpenBLAS's SGEMM through numpy.

    python3 benches/peers/sgemm.py M K N TA RUNS

times C = op(A) B in float32 (op(A) = A, or A^T read in place when TA is
"T": numpy hands the transposed view to OpenBLAS without a copy) and prints
`seconds=<median of RUNS after one warm-up>`. The bench runs it in
alternating rounds with its own measurements and sets OPENBLAS_NUM_THREADS
and, for the Haswell (AVX2) kernel, OPENBLAS_CORETYPE.
"""
import statistics
import sys
import time

import numpy as np

m, k, n = (int(v) for v in sys.argv[1:4])
ta, runs = sys.argv[4], int(sys.argv[5])
rng = np.random.default_rng(1)
a = rng.uniform(-1, 1, (k, m) if ta == "T" else (m, k)).astype(np.float32)
b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
c = np.empty((m, n), dtype=np.float32)
op_a = a.T if ta == "T" else a
np.matmul(op_a, b, out=c)
times = []
for _ in range(runs):
    t = time.perf_counter()
    np.matmul(op_a, b, out=c)
    times.append(time.perf_counter() - t)
print(f"seconds={statistics.median(times)}")
