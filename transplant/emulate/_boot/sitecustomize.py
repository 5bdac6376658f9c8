"""Process bootstrap for ``transplant run``: activates the emulated npu in every Python process.

``transplant run`` puts this directory first on ``PYTHONPATH``, so every interpreter started under
it (the script, torchrun and its workers, ``mp.spawn`` children, spawned DataLoader workers, plain
``subprocess`` pythons) imports this module at startup. It then

* runs the ``sitecustomize`` this one shadows, if there is one;
* with ``TRANSPLANT_EMULATE=1``, activates the emulator right after ``torch`` is first imported
  (processes that never import torch pay nothing);
* with ``TRANSPLANT_AUTO=1``, imports ``transplant.auto`` when that module exists.
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
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)


def _ensure_transplant_importable() -> None:
    # When transplant runs from a source checkout rather than an installed package, its root is
    # not on a child's path; it sits three levels above this file.
    if importlib.util.find_spec("transplant") is None:
        sys.path.append(os.path.dirname(os.path.dirname(os.path.dirname(_HERE))))


def _activate_emulator() -> None:
    # Like the real torch_npu, which torch auto-loads on import: the npu device and the hccl
    # backend exist as soon as torch does.
    from transplant.emulate import activate

    activate()
    import transplant.emulate.distributed  # noqa: F401


class _ActivateAfterTorch(importlib.abc.MetaPathFinder):
    """One-shot finder: lets torch import normally, then activates the emulator."""

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
            # Restore the loader first so torch's own __loader__ is untouched afterwards.
            del loader.exec_module
            plain_exec(module)
            _activate_emulator()

        # Loader instances are per module, so this only affects torch.
        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def disarm() -> None:
    """Do not activate the emulator in this process (for launchers such as torchrun's parent)."""
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _ActivateAfterTorch)]


def _boot() -> None:
    try:
        _run_shadowed_sitecustomize()
    except Exception:  # Python itself reports a failing sitecustomize and carries on
        import traceback

        sys.stderr.write("Error in the sitecustomize shadowed by transplant's boot hook:\n")
        traceback.print_exc()
    if os.environ.get("TRANSPLANT_EMULATE") == "1" or os.environ.get("TRANSPLANT_AUTO") == "1":
        _ensure_transplant_importable()
    if os.environ.get("TRANSPLANT_EMULATE") == "1":
        if "torch" in sys.modules:
            _activate_emulator()
        else:
            sys.meta_path.insert(0, _ActivateAfterTorch())
    if os.environ.get("TRANSPLANT_AUTO") == "1":
        if importlib.util.find_spec("transplant.auto") is not None:
            import transplant.auto  # noqa: F401


_boot()
