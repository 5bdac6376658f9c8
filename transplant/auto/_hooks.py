"""Run a callback right after a module finishes importing (standard library only).

``TRANSPLANT_AUTO=1`` imports :mod:`transplant.auto` at interpreter start-up, long before the
script imports torch. Importing torch there would cost every Python process a second, so the
patching waits until torch itself is imported; optional torch submodules that are expensive
to import (FSDP, pipelining) are patched the same way, when the program imports them.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
import threading
from typing import Callable

_log = logging.getLogger("transplant.auto")


class _NotifyingLoader(importlib.abc.Loader):
    """Delegates to the real loader, then runs the callbacks registered for the module."""

    def __init__(self, loader: importlib.abc.Loader, finder: "PostImportFinder", name: str) -> None:
        self._loader = loader
        self._finder = finder
        self._name = name

    def create_module(self, spec):  # noqa: D401 - loader protocol
        return self._loader.create_module(spec)

    def exec_module(self, module) -> None:
        # Put the real loader back first: code that inspects __loader__/__spec__ must not see us.
        if getattr(module, "__spec__", None) is not None:
            module.__spec__.loader = self._loader
        if getattr(module, "__loader__", None) is self:
            module.__loader__ = self._loader
        self._loader.exec_module(module)
        self._finder.fire(self._name, module)

    def __getattr__(self, name: str):
        return getattr(self._loader, name)


class PostImportFinder(importlib.abc.MetaPathFinder):
    """A meta-path finder that only intervenes for module names with pending callbacks."""

    def __init__(self) -> None:
        self._callbacks: dict[str, list[Callable]] = {}
        self._local = threading.local()

    def register(self, name: str, callback: Callable) -> None:
        """Call ``callback(module)`` once ``name`` is imported (now, if it already is)."""
        module = sys.modules.get(name)
        if module is not None and not _initialising(module):
            _safe_call(callback, module)
            return
        self._callbacks.setdefault(name, []).append(callback)
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def discard(self, callback: Callable) -> None:
        """Forget ``callback`` wherever it is still pending."""
        for name in list(self._callbacks):
            remaining = [cb for cb in self._callbacks[name] if cb != callback]
            if remaining:
                self._callbacks[name] = remaining
            else:
                del self._callbacks[name]

    def fire(self, name: str, module) -> None:
        for callback in self._callbacks.pop(name, []):
            _safe_call(callback, module)

    def find_spec(self, fullname, path, target=None):
        if fullname not in self._callbacks or getattr(self._local, "busy", False):
            return None
        # Ask the other finders for the real spec; the flag keeps us out of our own recursion.
        self._local.busy = True
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._local.busy = False
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _NotifyingLoader(spec.loader, self, fullname)
        return spec


def _initialising(module) -> bool:
    spec = getattr(module, "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


def _safe_call(callback: Callable, module) -> None:
    # A failing patch must never turn the user's `import torch` into an exception.
    try:
        callback(module)
    except Exception:  # noqa: BLE001 - reported, then the import carries on unpatched
        _log.warning("transplant.auto: patching after import of %s failed", module.__name__, exc_info=True)


FINDER = PostImportFinder()
