"""Peer for the LeNet-5 bench: the same LeNet-5 in PyTorch on 2 threads.

Conv2d(1,6,5,padding=2), ReLU, MaxPool2d(2), Conv2d(6,16,5), ReLU, MaxPool2d(2),
Flatten, Linear(400,120), ReLU, Linear(120,84), ReLU, Linear(84,10); PyTorch's
default initialisation, Adam (lr 1e-3), mean cross-entropy, pixels / 255 as
[N,1,28,28] float32 tensors built once before any timing, mini-batches of 64
in a fresh shuffle each epoch (the last one partial, as a DataLoader with
drop_last=False).

Run by hand:  python3 benches/peers/lenet.py
Measures (1) one training epoch over the 60000 training images, the median
of 3 epochs run in sequence on the same model, and (2) inference (no_grad,
eval mode) on the 10000 test images in batches of 1000, the median of 5.
Prints `bench=lenet_epoch impl=pytorch value=<s> unit=s` and
`bench=lenet_infer impl=pytorch value=<s> unit=s`.

With `--accuracy N` it instead trains N epochs and prints the test accuracy
and the seconds of each epoch (`# epoch 1: accuracy 97.10% ...`).
"""
import argparse
import gzip
import os
import statistics
import time

import numpy as np
import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "mnist")
BATCH = 64
INFER_BATCH = 1000


def idx(name):
    with gzip.open(os.path.join(ROOT, name + ".gz"), "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def images(name):
    x = idx(name).reshape(-1, 1, 28, 28).astype(np.float32) / np.float32(255.0)
    return torch.from_numpy(x)


def labels(name):
    return torch.from_numpy(idx(name).astype(np.int64))


def lenet5():
    nn = torch.nn
    return nn.Sequential(
        nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(400, 120), nn.ReLU(),
        nn.Linear(120, 84), nn.ReLU(),
        nn.Linear(84, 10),
    )


def train_epoch(model, opt, x, y, gen):
    model.train()
    order = torch.randperm(x.shape[0], generator=gen)
    for start in range(0, x.shape[0], BATCH):
        i = order[start:start + BATCH]
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x[i]), y[i])
        loss.backward()
        opt.step()


def infer(model, x):
    model.eval()
    with torch.no_grad():
        return torch.cat([model(x[s:s + INFER_BATCH]).argmax(1) for s in range(0, x.shape[0], INFER_BATCH)])


def timed(f):
    t = time.perf_counter()
    out = f()
    return time.perf_counter() - t, out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accuracy", type=int, metavar="EPOCHS",
                        help="train EPOCHS epochs, printing test accuracy after each, instead of timing")
    args = parser.parse_args()

    torch.set_num_threads(2)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x_train, y_train = images("train-images-idx3-ubyte"), labels("train-labels-idx1-ubyte")
    x_test, y_test = images("t10k-images-idx3-ubyte"), labels("t10k-labels-idx1-ubyte")
    model = lenet5()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)

    if args.accuracy:
        for epoch in range(1, args.accuracy + 1):
            secs, _ = timed(lambda: train_epoch(model, opt, x_train, y_train, gen))
            acc = (infer(model, x_test) == y_test).float().mean().item() * 100
            print(f"# epoch {epoch}: accuracy {acc:.2f}% train {secs:.2f} s", flush=True)
        return

    epochs = [timed(lambda: train_epoch(model, opt, x_train, y_train, gen))[0] for _ in range(3)]
    print(f"bench=lenet_epoch impl=pytorch value={statistics.median(epochs):.3f} unit=s", flush=True)
    infer(model, x_test)  # warm-up: oneDNN builds its kernels on first use
    runs = [timed(lambda: infer(model, x_test))[0] for _ in range(5)]
    print(f"bench=lenet_infer impl=pytorch value={statistics.median(runs):.4f} unit=s", flush=True)


if __name__ == "__main__":
    main()
