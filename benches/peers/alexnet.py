"""Peer for `cargo bench --bench alexnet` (one round; the bench runs it several
times, alternating with its own rounds): the same AlexNet (torchvision's
layers, 6 classes, built here so torchvision is not needed) in PyTorch on 2
threads: feature extraction per image at batch 1 and 16, and one SGD step
(momentum 0.9) at batch 32. Prints `bench=alexnet case=.. impl=torch ..`.
"""
import statistics
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
features = torch.nn.Sequential(
    torch.nn.Conv2d(3, 64, 11, 4, 2), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2),
    torch.nn.Conv2d(64, 192, 5, padding=2), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2),
    torch.nn.Conv2d(192, 384, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(384, 256, 3, padding=1), torch.nn.ReLU(),
    torch.nn.Conv2d(256, 256, 3, padding=1), torch.nn.ReLU(), torch.nn.MaxPool2d(3, 2),
)
classifier = torch.nn.Sequential(
    torch.nn.Dropout(), torch.nn.Linear(9216, 4096), torch.nn.ReLU(),
    torch.nn.Dropout(), torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 6),
)


def median_ms(f, runs):
    for _ in range(3):  # warm-up: oneDNN builds its kernels on first use
        f()
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


for batch in (1, 16):
    x = torch.rand(batch, 3, 227, 227) * 2 - 1
    with torch.no_grad():
        ms = median_ms(lambda: features(x), 21 if batch == 1 else 9)
    print(f"bench=alexnet case=features_batch{batch}_per_image impl=torch value={ms / batch:.2f} unit=ms", flush=True)

x = torch.rand(32, 3, 227, 227) * 2 - 1
y = torch.arange(32) % 6
params = list(features.parameters()) + list(classifier.parameters())
opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)


def step():
    opt.zero_grad()
    logits = classifier(torch.flatten(features(x), 1))
    torch.nn.functional.cross_entropy(logits, y).backward()
    opt.step()


print(f"bench=alexnet case=train_step_batch32 impl=torch value={median_ms(step, 3):.1f} unit=ms", flush=True)
