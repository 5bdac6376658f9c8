"""Shared helpers for the emulated-NPU tests.

Activation is process-wide and cannot be undone (PrivateUse1 is renamed, ``torch.npu`` exists,
kernels are registered). Tests that need it in-process request the session fixture ``npu``; every
test using it is moved to the *end* of the pytest session, so tests of other packages (the
rewriter, ``transplant.auto``) never run in an activated process, whatever order pytest collected
them in. Behaviour that must start from a clean interpreter (activation itself, the pure-Python
fallback, the torch_npu stand-in, exit-time aborts) runs in subprocesses via
``emulate_helpers.run_python``.
"""

from __future__ import annotations

from typing import Iterator, List

import pytest

@pytest.hookimpl(trylast=True)  # after any other reordering, so ours has the final say
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: List[pytest.Item]) -> None:
    activated = [item for item in items if "npu" in getattr(item, "fixturenames", ())]
    if activated:
        others = [item for item in items if "npu" not in getattr(item, "fixturenames", ())]
        items[:] = others + activated


@pytest.fixture(scope="session")
def npu():
    """The emulated NPU, activated once in this pytest process (see module docstring)."""
    import torch

    import transplant.emulate as emulate

    emulate.activate()
    return torch.npu


@pytest.fixture
def rng_mode(npu) -> Iterator[object]:
    """Switch the RNG mode inside a test and restore the previous one afterwards."""
    import transplant.emulate as emulate

    previous = emulate.rng_mode()
    yield emulate.set_rng_mode
    emulate.set_rng_mode(previous)
