"""``python -m _transplant_torchrun ...``: torchrun that exits with the failing worker's code.

Plain torchrun exits with 1 whatever its workers did; ``transplant run --nproc`` promises the
script's own exit code, so the first failure's code (128+N for a death by signal N) is used.
"""

from __future__ import annotations

import sys


def main(argv: list[str]) -> int:
    # The launcher only starts and watches workers: it needs no emulated device of its own.
    boot = sys.modules.get("sitecustomize")
    if boot is not None and hasattr(boot, "disarm"):
        boot.disarm()

    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(argv)
    except ChildFailedError as error:
        _, failure = error.get_first_failure()
        sys.stderr.write(f"{error}\n")
        code = failure.exitcode
        return 128 - code if code < 0 else (code or 1)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
