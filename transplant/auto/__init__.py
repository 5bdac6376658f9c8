"""Auto mode: ``import transplant.auto`` makes an unmodified CUDA training script run on the NPU.

Put ``import transplant.auto`` at the top of the entry script, or set ``TRANSPLANT_AUTO=1`` in the
environment (every Python process, children included, then imports this module at start-up).
The patches are applied as soon as torch is imported (immediately, if it already is); torch_npu is
imported first. See docs/auto.md for what is patched, the ``torch.cuda.is_available()`` policy and
the ``TRANSPLANT_AUTO_*`` settings.

The project's own modules (the entry script included) are rewritten with the offline rules as they
are imported (``_rewrite_hook``; ``TRANSPLANT_AUTO_REWRITE=0`` turns that off): ``device.type == 'cuda'``
branches and ``from apex import amp`` then work as after ``transplant -i``, with the original line numbers.

This module imports only the standard library until torch is imported (the rewriter itself only when
a project module misses its cache), so arming it in every process costs little for processes that
never use torch.
"""

from __future__ import annotations

import sys

from ._hooks import FINDER

__all__ = ["install", "uninstall", "is_installed", "patched_names", "hits", "write_report", "Config"]


def install(config=None) -> bool:
    """Import torch and torch_npu, then patch torch. Idempotent: False if already installed.

    ``config`` is a :class:`transplant.auto.Config`; by default it is read from the
    ``TRANSPLANT_AUTO_*`` environment variables.
    """
    FINDER.discard(_install_after_torch_import)
    with _gc_paused():
        from . import _core

        return _core.install(config)


class _gc_paused:
    """Installing allocates a few thousand small objects; with torch's large heap loaded, the cyclic
    collections they trigger cost ~10x the install itself, so they wait until it is done."""

    def __enter__(self):
        import gc

        self._was_enabled = gc.isenabled()
        gc.disable()

    def __exit__(self, *exc):
        import gc

        if self._was_enabled:
            gc.enable()
        return False


def uninstall() -> bool:
    """Undo every patch (torch is exactly as before :func:`install`). False if not installed."""
    FINDER.discard(_install_after_torch_import)
    if "transplant.auto._core" not in sys.modules:
        return False
    from . import _core

    return _core.uninstall()


def is_installed() -> bool:
    """Whether the patches are currently applied."""
    core = sys.modules.get("transplant.auto._core")
    return bool(core is not None and core.STATE.patcher is not None)


def patched_names() -> dict:
    """Qualified names currently patched -> a short note on what the patch does."""
    core = sys.modules.get("transplant.auto._core")
    return core.patched_names() if core is not None else {}


def hits() -> list:
    """The runtime change log so far (one :class:`transplant.auto._record.Hit` per distinct change)."""
    from . import _record

    return list(_record.HITS.values())


def write_report(path) -> object:
    """Write the runtime change log now (``TRANSPLANT_AUTO_REPORT`` does this at exit)."""
    from . import _record
    from ._rules import rule_index

    return _record.write_report(path, rule_index())


def __getattr__(name: str):
    if name == "Config":
        from ._policy import Config

        return Config
    if name == "TransplantAutoWarning":
        from ._core import TransplantAutoWarning

        return TransplantAutoWarning
    raise AttributeError(name)


def _install_after_torch_import(_module) -> None:
    try:
        install()
    except ImportError as error:
        # Armed by TRANSPLANT_AUTO=1: `import torch` must keep working, unpatched, with one clear line.
        import logging

        logging.getLogger("transplant.auto").warning("transplant.auto: not active: %s", error)


def _arm() -> None:
    # Importing the hook and installing it allocate enough to trigger a full collection of torch's
    # heap (~0.1 s) when torch is loaded: the collector waits, as it does for install().
    with _gc_paused():
        from . import _rewrite_hook

        rewriting = _rewrite_hook.install(_rewrite_hook.default_roots())
    if rewriting and _armed_by_environment():
        command = _rewrite_hook.relaunch_target()
        if command is not None:
            _rewrite_hook.relaunch(command)  # does not return
    torch = sys.modules.get("torch")
    if torch is not None and hasattr(torch, "cuda"):
        install()
    else:
        FINDER.register("torch", _install_after_torch_import)
    if rewriting:
        _take_over_entry_script(_rewrite_hook)


def _armed_by_environment() -> bool:
    import os

    return os.environ.get("TRANSPLANT_AUTO") == "1"


def _importer_frame():
    """The frame executing ``import transplant.auto`` (importlib's frames skipped)."""
    frame = sys._getframe(1)
    while frame is not None and (frame.f_code.co_filename.startswith("<frozen") or frame.f_globals is globals()):
        frame = frame.f_back
    return frame


def _take_over_entry_script(hook) -> None:
    # `import transplant.auto` at the top of the entry script: the rest of the script runs rewritten
    # (hook.rerun_entry_script), then the process ends as the script would have ended.
    frame = _importer_frame()
    if frame is None or frame.f_code.co_name != "<module>" or sys.flags.interactive:
        return
    main = sys.modules.get("__main__")
    if main is None or frame.f_globals is not vars(main) or frame.f_globals.get("__name__") != "__main__":
        return
    if hook.rerun_entry_script(frame):
        raise SystemExit(0)


_arm()
