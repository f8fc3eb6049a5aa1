"""Peer for `cargo bench --bench face_mlp`: the same part-8 training in
PyTorch (1024-25-6 ReLU MLP, Adam lr 1e-3, mean cross-entropy, 30000 steps on
six 65-row mini-batches), 2 threads. Run: python3 benches/peers/face_mlp.py
Prints `bench=face_mlp impl=torch case=one_seed_30000_steps value=.. unit=s`.
"""
import time

import torch

torch.set_num_threads(2)
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(1024, 25), torch.nn.ReLU(), torch.nn.Linear(25, 6))
for p in model.parameters():
    torch.nn.init.normal_(p)
batches = [(torch.rand(65, 1024), torch.arange(65) % 6) for _ in range(6)]
opt = torch.optim.Adam(model.parameters(), lr=1e-3)


def step(i):
    x, y = batches[(i // 1000) % 6]
    opt.zero_grad()
    torch.nn.functional.cross_entropy(model(x), y).backward()
    opt.step()


for i in range(100):
    step(i)
t = time.perf_counter()
for i in range(30000):
    step(i)
print(f"bench=face_mlp impl=torch case=one_seed_30000_steps value={time.perf_counter() - t:.3f} unit=s")
