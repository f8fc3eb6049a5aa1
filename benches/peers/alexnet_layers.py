"""PyTorch's side of a per-layer comparison with `nabla time`: each layer of
AlexNet (torchvision's, 6 classes) alone, on 2 threads, on a random batch of
its input shape, forward and backward (the output's gradient random), the
median of 7 calls after one warm-up. nabla's side is

    cargo run --release -- time pipelines/part10_finetune.toml --batch 32

(its `forward ms` and `backward ms` columns); run the two in turn, a few
times, as the machine's speed drifts. Usage: `python3 alexnet_layers.py
[BATCH]` (default 32). Prints one line per layer and pass:
`bench=alexnet_layer layer=.. pass=forward|backward impl=torch value=.. unit=ms`.
"""
import statistics
import sys
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
BATCH = int(sys.argv[1]) if len(sys.argv) > 1 else 32
nn = torch.nn
# (name as in `nabla time`, layer, input shape without the batch)
LAYERS = [
    ("features.0", nn.Conv2d(3, 64, 11, 4, 2), (3, 227, 227)),
    ("features.2", nn.MaxPool2d(3, 2), (64, 56, 56)),
    ("features.3", nn.Conv2d(64, 192, 5, padding=2), (64, 27, 27)),
    ("features.5", nn.MaxPool2d(3, 2), (192, 27, 27)),
    ("features.6", nn.Conv2d(192, 384, 3, padding=1), (192, 13, 13)),
    ("features.8", nn.Conv2d(384, 256, 3, padding=1), (384, 13, 13)),
    ("features.10", nn.Conv2d(256, 256, 3, padding=1), (256, 13, 13)),
    ("features.12", nn.MaxPool2d(3, 2), (256, 13, 13)),
    ("classifier.1", nn.Linear(9216, 4096), (9216,)),
    ("classifier.4", nn.Linear(4096, 4096), (4096,)),
    ("classifier.6", nn.Linear(4096, 6), (4096,)),
]


def median_ms(f, runs=7):
    f()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


for name, layer, shape in LAYERS:
    # As `nabla time`: the network's first layer computes no input gradient.
    x = torch.randn(BATCH, *shape, requires_grad=name != "features.0")
    with torch.no_grad():
        forward = median_ms(lambda: layer(x))
    g = torch.randn_like(layer(x))

    def step():
        layer.zero_grad(set_to_none=True)
        if x.grad is not None:
            x.grad = None
        layer(x).backward(g)

    backward = max(median_ms(step) - forward, 0.0)
    for pass_, ms in (("forward", forward), ("backward", backward)):
        print(f"bench=alexnet_layer layer={name} pass={pass_} impl=torch value={ms:.3f} unit=ms")
