"""Overhead of ``transplant run --op-report`` (the operator recorder) on the emulated NPU's step time.

Not a test: forward+backward+optimizer-step time of the emulator benchmark's four reference models on the
emulated npu, without and with the recorder (transplant.emulate.oprecord) switched on, alternating rounds,
best of N, one intra-op thread; plus the per-op cost of a 1-element add. Target (issue 13): recording
costs < 2x the emulator's normal step time. The recorder's exit-time write is measured separately.

    .venv/bin/python benchmarks/op_report_overhead.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import torch

import transplant.emulate as emulate

sys.path.insert(0, str(Path(__file__).resolve().parent))
from emulator_overhead import best_of, make_step, models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    torch.set_num_threads(1)
    emulate.activate()
    from transplant.emulate import oprecord, tensor

    folder = tempfile.mkdtemp(prefix="op-report-bench-")
    recorder = oprecord.Recorder(folder)
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(recorder.optimizer_step)

    def timed(fn, on: bool) -> float:
        tensor._record = recorder.record if on else None
        try:
            return best_of(fn, 1, 5)
        finally:
            tensor._record = None

    one, other = torch.ones(1, device="npu"), torch.ones(1, device="npu")
    add = lambda: one + other  # noqa: E731
    off = min(timed(lambda: [add() for _ in range(400)], False) for _ in range(args.rounds)) / 400
    on = min(timed(lambda: [add() for _ in range(400)], True) for _ in range(args.rounds)) / 400
    print(f"1-element add on npu: {off * 1e6:.1f} us, recorded {on * 1e6:.1f} us ({on / off:.2f}x)")
    print("\nforward+backward+step (ms)                     emulator   recorded   ratio")
    worst = 0.0
    for name, make, inputs, optim in models():
        step = make_step(make, inputs, optim, "npu")
        plain, recorded = float("inf"), float("inf")
        for _ in range(args.rounds):
            plain = min(plain, timed(step, False))
            recorded = min(recorded, timed(step, True))
        worst = max(worst, recorded / plain)
        print(f"  {name:<46}{plain * 1e3:8.2f} {recorded * 1e3:10.2f} {recorded / plain:7.2f}x")
    tracemalloc.start()
    start = time.perf_counter()
    snapshot = recorder.snapshot()
    recorder.dump()
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    print(f"\nworst step ratio {worst:.2f}x (target < 2x); exit-time write: {len(snapshot['ops'])} op/site entries "
          f"in {elapsed * 1e3:.1f} ms, peak {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
