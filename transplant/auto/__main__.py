"""``python -m transplant.auto script.py [args...]``: run an unmodified CUDA script on the NPU.

The same as ``import transplant.auto`` as the script's first line: the script and the project modules
it imports are rewritten at import time (unless ``TRANSPLANT_AUTO_REWRITE=0``), torch is patched when
it is imported, and child processes (``TRANSPLANT_AUTO=1`` is set for them) do the same.
``TRANSPLANT_AUTO=1 python script.py`` starts the script through this launcher by itself.
"""

from __future__ import annotations

import os
import sys

from . import _rewrite_hook

_USAGE = "usage: python -m transplant.auto script.py [args...]\n"


def main(argv: list[str]) -> int:
    """Run ``argv[0]`` (a script) with ``argv[1:]`` as its arguments; returns the exit status."""
    if not argv or argv[0] in ("-h", "--help"):
        sys.stderr.write(_USAGE)
        return 0 if argv else 2
    script = argv[0]
    if not os.path.isfile(script):
        sys.stderr.write(f"python -m transplant.auto: error: {script}: no such file\n")
        return 2
    sys.argv[:] = argv
    # What `python script.py` puts first on sys.path: the script's directory.
    sys.path[0] = os.path.dirname(os.path.abspath(script))
    os.environ["TRANSPLANT_AUTO"] = "1"
    _rewrite_hook.install(_rewrite_hook.default_roots(script))
    _rewrite_hook.run_main(script)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
