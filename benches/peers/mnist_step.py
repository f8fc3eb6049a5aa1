"""Peers for `cargo bench --bench mnist_step`: one full-batch training
iteration of the report's softmax regression (parts 4-5) on all 60000 MNIST
images, vectorised, in numpy (float32 and float64) and, if installed, PyTorch.

Run by hand:  python3 benches/peers/mnist_step.py
(the Rust bench runs it itself when numpy is importable). For numpy's fastest
OpenBLAS kernels here, unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE for this
command; the bench does. Prints `bench=mnist_step impl=... value=... unit=ms`.
"""
import gzip
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist")


def idx(name):
    with gzip.open(os.path.join(ROOT, name + ".gz"), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def median_ms(step, runs=15):
    step()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def numpy_step(dtype):
    x = (idx("train-images-idx3-ubyte").reshape(60000, 784) / 255.0).astype(dtype)
    labels = idx("train-labels-idx1-ubyte")
    y = np.zeros((60000, 10), dtype=dtype)
    y[np.arange(60000), labels] = 1
    rng = np.random.default_rng(0)
    w = rng.random((784, 10)).astype(dtype)
    b = rng.random(10).astype(dtype)
    lr = dtype(1e-5)

    def step():
        nonlocal w, b
        z = x @ w + b
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        d = p - y
        w -= lr * (x.T @ d)
        b -= lr * d.sum(axis=0)

    return step


def torch_step():
    import torch

    torch.set_num_threads(2)
    x = torch.from_numpy((idx("train-images-idx3-ubyte").reshape(60000, 784) / 255.0).astype(np.float32))
    labels = torch.from_numpy(idx("train-labels-idx1-ubyte").astype(np.int64))
    g = torch.Generator().manual_seed(0)
    w = torch.rand(784, 10, generator=g, requires_grad=True)
    b = torch.rand(10, generator=g, requires_grad=True)
    opt = torch.optim.SGD([w, b], lr=1e-5)

    def step():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(x @ w + b, labels, reduction="sum")
        loss.backward()
        opt.step()

    return step


def main():
    for name, make in [("numpy-f32", lambda: numpy_step(np.float32)), ("numpy-f64", lambda: numpy_step(np.float64))]:
        print(f"bench=mnist_step impl={name} value={median_ms(make()):.2f} unit=ms", flush=True)
    try:
        step = torch_step()
    except ImportError:
        print("# torch not installed: skipped", file=sys.stderr)
        return
    print(f"bench=mnist_step impl=torch value={median_ms(step):.2f} unit=ms", flush=True)


if __name__ == "__main__":
    main()
