"""Process bootstrap for ``transplant verify``: installs the step recorder in every Python process.

``transplant verify`` puts this directory first on ``PYTHONPATH`` of both runs (the original and
the migrated one). With ``TRANSPLANT_VERIFY_DIR`` set, every interpreter started under it

* arms a one-shot import finder, so that right after ``torch`` is imported
  :func:`transplant.verify.hook.install` patches the process (loss and parameter recording,
  seeding, deterministic algorithms, DataLoader worker seeding);
* then runs the ``sitecustomize`` this one shadows (on the migrated side: the emulator's bootstrap,
  which activates the emulated NPU after torch the same way).

The finder is armed *before* the shadowed bootstrap runs, so the emulator's finder lands in front
of it: the emulator's wrapper of torch's loader then calls ours, and both run.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))


def _run_shadowed_sitecustomize() -> None:
    """Execute the next ``sitecustomize`` on sys.path (the one Python would have run)."""
    search = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", search)
    if spec is None or spec.loader is None:
        return
    global _shadowed
    module = importlib.util.module_from_spec(spec)
    _shadowed = module
    # Hidden from the shadowed bootstrap while it runs: it looks for *its* shadowed sitecustomize
    # by skipping only its own folder, and would find this one again (endless recursion).
    saved = list(sys.path)
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]
    try:
        spec.loader.exec_module(module)
    finally:
        sys.path[:] = saved + [p for p in sys.path if p not in saved]


_shadowed = None


def disarm() -> None:
    """Pass a launcher's ``disarm`` (torchrun's parent needs no emulated device) to the shadowed boot."""
    if _shadowed is not None and hasattr(_shadowed, "disarm"):
        _shadowed.disarm()


def _ensure_transplant_importable() -> None:
    # From a source checkout transplant's root is not on a child's path; it is three levels up.
    if importlib.util.find_spec("transplant") is None:
        sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))))


def _install_recorder() -> None:
    from transplant.verify.hook import install

    install()


class _InstallAfterTorch(importlib.abc.MetaPathFinder):
    """One-shot finder: lets torch import normally, then installs the recorder."""

    def find_spec(self, fullname, path=None, target=None):  # type: ignore[no-untyped-def]
        if fullname != "torch":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        plain_exec = loader.exec_module

        def exec_module(module):  # type: ignore[no-untyped-def]
            # An outer wrapper (the emulator's) may already have removed the instance attribute.
            loader.__dict__.pop("exec_module", None)
            plain_exec(module)
            _install_recorder()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def _boot() -> None:
    if os.environ.get("TRANSPLANT_VERIFY_DIR"):
        _ensure_transplant_importable()
        if "torch" in sys.modules:
            _install_recorder()
        else:
            sys.meta_path.insert(0, _InstallAfterTorch())
    try:
        _run_shadowed_sitecustomize()
    except Exception:  # Python itself reports a failing sitecustomize and carries on
        import traceback

        sys.stderr.write("Error in the sitecustomize shadowed by transplant verify's boot hook:\n")
        traceback.print_exc()


_boot()
