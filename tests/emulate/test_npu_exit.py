"""No abort at interpreter exit after backward passes (emulator.md pitfall 4).

Without the fixes, about one run in eight (native mode) died at exit with "terminate called
without an active exception" (exit code 134). Twenty tiny runs, two at a time, must all exit 0.
"""

from __future__ import annotations

import textwrap

import pytest

from emulate_helpers import finish, start_python

pytest.importorskip("torch")

SCRIPT = textwrap.dedent("""
    import torch
    import transplant.emulate as emulate
    emulate.activate()
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Dropout(0.1), torch.nn.Linear(4, 1)).npu()
    for _ in range(2):  # no torch.optim: its first use imports torch._dynamo (seconds per run)
        # saved-tensor hooks are what checkpoint(use_reentrant=False) installs (without importing
        # torch._dynamo, which checkpoint does and which costs seconds per run)
        with torch.autograd.graph.saved_tensors_hooks(lambda t: t, lambda t: t):
            loss = model(torch.randn(3, 4, device="npu")).sum()
        loss.backward()
        with torch.no_grad():
            for p in model.parameters():
                p -= 0.1 * p.grad
    print("done")
""")


@pytest.mark.slow
def test_no_abort_at_exit_over_20_runs() -> None:
    failures = []
    for _ in range(10):
        pair = [start_python(SCRIPT), start_python(SCRIPT)]
        for proc in pair:
            result = finish(proc)
            if result.returncode != 0 or result.stdout.strip() != "done":
                failures.append((result.returncode, result.stderr[-500:]))
    assert failures == []
