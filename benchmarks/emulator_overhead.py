"""Overhead of the emulated NPU (transplant.emulate) against plain CPU torch.

Not a test: prints per-op dispatch cost and forward+backward+optimizer-step time for the four
reference models (MLP, small CNN, embedding+LSTM, small transformer encoder), on CPU and on the
emulated npu, with one intra-op thread, best of N rounds (CPU and npu rounds alternate). Targets (issue 3): <= 6 us per small op,
<= 2x CPU for the CNN, <= 5x for the LSTM.

    .venv/bin/python benchmarks/emulator_overhead.py [--rounds 15] [--pure-python]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable, Dict, List, Tuple

import torch
import torch.nn as nn

import transplant.emulate as emulate


def best_of(fn: Callable[[], object], rounds: int, inner: int) -> float:
    """Best mean seconds per call over ``rounds`` rounds of ``inner`` calls."""
    fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        best = min(best, (time.perf_counter() - start) / inner)
    return best


def best_of_pair(cpu: Callable[[], object], npu: Callable[[], object], rounds: int, inner: int) -> Tuple[float, float]:
    """Like best_of for two functions, alternating rounds so load changes hit both alike."""
    cpu_best, npu_best = float("inf"), float("inf")
    for _ in range(rounds):
        cpu_best = min(cpu_best, best_of(cpu, 1, inner))
        npu_best = min(npu_best, best_of(npu, 1, inner))
    return cpu_best, npu_best


def op_cases(device: str) -> Dict[str, Tuple[Callable[[], object], int]]:
    one = torch.ones(1, device=device)
    other = torch.ones(1, device=device)
    big_a = torch.randn(512, 512, device=device)
    big_b = torch.randn(512, 512, device=device)
    return {
        "1-element add": (lambda: one + other, 2000),
        "in-place add_": (lambda: one.add_(other), 2000),
        "view(-1)": (lambda: one.view(-1), 2000),
        "item()": (lambda: one.item(), 2000),
        "zeros(1, device=...)": (lambda: torch.zeros(1, device=device), 2000),
        "512x512 matmul": (lambda: big_a @ big_b, 5),
    }


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 32)
        self.lstm = nn.LSTM(32, 64, batch_first=True)
        self.head = nn.Linear(64, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embedding(tokens))
        return self.head(out[:, -1])


class TransformerNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embedding = nn.Embedding(100, 32)
        layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
        self.encoder = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.head = nn.Linear(32, 4)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.head(self.encoder(self.embedding(tokens)).mean(1))


def models() -> List[Tuple[str, Callable[[], nn.Module], Callable[[], torch.Tensor], str]]:
    return [
        ("MLP 784-256-256-10, batch 64, SGD",
         lambda: nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 256), nn.ReLU(), nn.Linear(256, 10)),
         lambda: torch.randn(64, 784), "SGD"),
        ("CNN 2x(conv+BN)+pool, 32x3x32x32, SGD",
         lambda: nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                               nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                               nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10)),
         lambda: torch.randn(32, 3, 32, 32), "SGD"),
        ("Embedding+LSTM 32->64, seq 20, batch 16, Adam", LSTMNet,
         lambda: torch.randint(0, 100, (16, 20)), "Adam"),
        ("Transformer encoder 2x32d, seq 16, batch 8, AdamW", TransformerNet,
         lambda: torch.randint(0, 100, (8, 16)), "AdamW"),
    ]


def make_step(make: Callable[[], nn.Module], inputs: Callable[[], torch.Tensor], optim: str,
              device: str) -> Callable[[], None]:
    torch.manual_seed(0)
    model = make().to(device)
    optimizer = getattr(torch.optim, optim)(model.parameters(), lr=1e-3)
    x = inputs().to(device)
    with torch.no_grad():
        classes = model(x).shape[-1]
    target = torch.randint(0, classes, (x.shape[0],)).to(device)

    def step() -> None:
        optimizer.zero_grad()
        nn.functional.cross_entropy(model(x), target).backward()
        optimizer.step()

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--pure-python", action="store_true", help="benchmark the pure-Python mode")
    args = parser.parse_args()
    torch.set_num_threads(1)
    emulate.activate(native=False if args.pure_python else None)

    print("per-op cost (us)            CPU      npu")
    cpu_cases, npu_cases = op_cases("cpu"), op_cases("npu")
    for name, (cpu_fn, inner) in cpu_cases.items():
        cpu, npu = best_of_pair(cpu_fn, npu_cases[name][0], args.rounds, inner)
        print(f"  {name:<26}{cpu * 1e6:8.1f} {npu * 1e6:8.1f}")
    print("\nforward+backward+step (ms)                         CPU      npu   ratio")
    for name, make, inputs, optim in models():
        cpu_step, npu_step = make_step(make, inputs, optim, "cpu"), make_step(make, inputs, optim, "npu")
        cpu, npu = best_of_pair(cpu_step, npu_step, args.rounds, 5)
        print(f"  {name:<48}{cpu * 1e3:8.2f} {npu * 1e3:8.2f} {npu / cpu:6.2f}x")


if __name__ == "__main__":
    main()
