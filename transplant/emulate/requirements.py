"""What the emulated NPU needs from the environment, checked before ``transplant run`` starts anything.

The emulator patches torch internals (dispatch keys, the Python ``ProcessGroup``, device hooks) that
change between torch releases, and it is validated against exactly one: :data:`REQUIRED_TORCH`. The
``[emulate]`` extra deliberately does not pin torch (installing it must never replace the torch of an
Ascend stack), so the check happens here, at run time, from the installed distribution's metadata
(without importing torch, which costs seconds).

``TRANSPLANT_EMULATE_ANY_TORCH=1`` skips the version check (at your own risk: try another torch).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from importlib import metadata
from typing import Callable, Optional

REQUIRED_TORCH = "2.13.0"
OVERRIDE_VARIABLE = "TRANSPLANT_EMULATE_ANY_TORCH"
INSTALL_HINT = f"pip install torch=={REQUIRED_TORCH} 'transplant-npu[emulate]'"


class EmulatorRequirementError(RuntimeError):
    """The environment cannot run the emulated NPU; the message is one line naming the fix."""


def _installed_version(name: str) -> Optional[str]:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _public(version: str) -> str:
    """``2.13.0+cpu`` -> ``2.13.0``: a local build tag (CPU, CUDA variant) is the same release."""
    return re.split(r"[+]", version, maxsplit=1)[0]


def check_torch(*, version_of: Optional[Callable[[str], Optional[str]]] = None,
                environ: Optional[Mapping[str, str]] = None) -> str:
    """Return the installed torch version, or raise :class:`EmulatorRequirementError` saying what to install."""
    environ = os.environ if environ is None else environ
    version = (version_of or _installed_version)("torch")
    if version is None:
        raise EmulatorRequirementError(
            f"transplant run needs torch {REQUIRED_TORCH}, which is not installed here: {INSTALL_HINT}")
    if _public(version) != REQUIRED_TORCH and environ.get(OVERRIDE_VARIABLE) != "1":
        raise EmulatorRequirementError(
            f"transplant run needs torch {REQUIRED_TORCH} exactly (the emulated NPU patches torch internals "
            f"and is validated against that release only), but torch {version} is installed; use a separate "
            f"environment with {INSTALL_HINT} (or set {OVERRIDE_VARIABLE}=1 to try this torch anyway)")
    return version
