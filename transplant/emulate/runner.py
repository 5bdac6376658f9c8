"""``transplant run``: run a script with the emulated npu active in it and in all its children.

The script runs in a fresh interpreter whose environment carries the emulator everywhere:

* ``PYTHONPATH`` starts with ``_boot/`` (a ``sitecustomize`` that activates the emulator as soon as
  a process imports torch) and ``shim/`` (the ``torch_npu`` stand-in), so torchrun workers,
  ``mp.spawn`` children, spawned DataLoader workers and ``subprocess`` pythons are covered too;
* ``TRANSPLANT_EMULATE=1`` switches the bootstrap on; ``--strict-cuda`` adds
  ``TRANSPLANT_STRICT_CUDA=raise``.

With ``nproc`` the script is launched through ``torch.distributed.run`` on 127.0.0.1 with a free
port, one process per emulated device. The script's exit code is returned (a death by signal N as
128+N, like a shell reports it).

Direct use: ``python -m transplant.emulate.runner [--strict-cuda] [--nproc N] script.py [args...]``.
"""

from __future__ import annotations

import argparse
import importlib.machinery
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Mapping, Optional, Sequence

__all__ = [
    "run", "build_command", "child_environment", "boot_dir", "shim_dir", "real_torch_npu_location", "main",
]

_PACKAGE_DIR = Path(__file__).resolve().parent
_DEFAULT_DEVICE_COUNT = 8


def boot_dir() -> Path:
    """Directory with the ``sitecustomize`` bootstrap (first on the children's PYTHONPATH)."""
    return _PACKAGE_DIR / "_boot"


def shim_dir() -> Path:
    """Directory holding the ``torch_npu`` stand-in package."""
    return _PACKAGE_DIR / "shim"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_environment(
    *, strict_cuda: bool = False, nproc: Optional[int] = None, base: Optional[Mapping[str, str]] = None,
    op_record_dir: Optional[str] = None,
) -> dict[str, str]:
    """Environment that activates the emulator in every Python process started with it.

    ``op_record_dir``: every process records the operators reaching npu tensors into this folder
    (``transplant run --op-report``; see transplant.emulate.oprecord).
    """
    env = dict(os.environ if base is None else base)
    ours = [str(boot_dir()), str(shim_dir())]
    existing = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in ours]
    env["PYTHONPATH"] = os.pathsep.join(ours + existing)
    env["TRANSPLANT_EMULATE"] = "1"
    if strict_cuda:
        env["TRANSPLANT_STRICT_CUDA"] = "raise"
    if op_record_dir is not None:
        env["TRANSPLANT_OP_REPORT_DIR"] = op_record_dir
    if nproc is not None:
        # Every rank needs its own device index (LOCAL_RANK) to exist; the emulator defaults
        # to 8 devices, like an Ascend server.
        current = env.get("TRANSPLANT_NPU_COUNT", "")
        count = int(current) if current.isdigit() else _DEFAULT_DEVICE_COUNT
        if count < nproc:
            env["TRANSPLANT_NPU_COUNT"] = str(nproc)
    return env


def build_command(argv: Sequence[str], *, nproc: Optional[int] = None) -> list[str]:
    """The command line that runs ``argv`` (script and its arguments) under the emulator."""
    if not argv:
        raise ValueError("no script given")
    if nproc is None:
        return [sys.executable, *argv]
    if nproc < 1:
        raise ValueError(f"--nproc must be at least 1, got {nproc}")
    # A tiny wrapper around torch.distributed.run that exits with the failing worker's code.
    return [
        sys.executable,
        "-m",
        "_transplant_torchrun",
        "--nnodes=1",
        f"--nproc_per_node={nproc}",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        *argv,
    ]


def real_torch_npu_location() -> Optional[str]:
    """Where a real torch_npu is importable from (our stand-in excluded), or None.

    The stand-in goes first on the children's path and would hide a real installation, so the
    runner checks before starting anything: on an Ascend host the script should run for real.
    """
    ours = os.path.abspath(shim_dir())
    search = [p for p in sys.path if os.path.abspath(p or os.curdir) != ours]
    spec = importlib.machinery.PathFinder.find_spec("torch_npu", search)
    if spec is None:
        return None
    origin = spec.origin or (list(spec.submodule_search_locations or []) or [None])[0]
    return str(origin)


def _exit_status(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def run(argv: list[str], *, strict_cuda: bool = False, nproc: Optional[int] = None,
        op_record_dir: Optional[str] = None) -> int:
    """Run ``argv[0]`` (a Python script, ``argv[1:]`` its arguments) on the emulated npu.

    The emulator is active in the script's process and in every Python child it starts. With
    ``nproc`` the script is launched by torchrun with that many processes on 127.0.0.1. With
    ``op_record_dir`` each process writes its operator record there at exit. Returns the script's
    exit code (128+N if it was killed by signal N).

    Raises:
        EmulatorRequirementError: torch is missing or not the release the emulator is validated against.
        RuntimeError: the real torch_npu is importable (the emulator must not shadow it).
        ValueError: no script, or ``nproc`` < 1.
    """
    from transplant.emulate.requirements import check_torch

    check_torch()
    real = real_torch_npu_location()
    if real is not None:
        raise RuntimeError(
            f"the real torch_npu is installed ({real}); the emulated NPU only runs where torch_npu is "
            "absent. Run the script directly on the Ascend host, or use an environment without torch_npu."
        )
    command = build_command(argv, nproc=nproc)
    env = child_environment(strict_cuda=strict_cuda, nproc=nproc, op_record_dir=op_record_dir)
    process = subprocess.Popen(command, env=env)

    restore: dict[int, object] = {}
    if threading.current_thread() is threading.main_thread():

        def forward(signum: int, frame: object) -> None:
            if process.poll() is None:
                process.send_signal(signum)

        for signum in (signal.SIGTERM, signal.SIGHUP):
            restore[signum] = signal.signal(signum, forward)
        # Ctrl-C reaches the child directly (same process group); the parent just keeps waiting
        # so the child can shut down cleanly and its exit code is reported.
        restore[signal.SIGINT] = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        returncode = process.wait()
    finally:
        for signum, handler in restore.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]
    return _exit_status(returncode)


def main(args: Optional[Sequence[str]] = None) -> int:
    """Command line entry: ``python -m transplant.emulate.runner [options] script.py [args...]``."""
    parser = argparse.ArgumentParser(
        prog="python -m transplant.emulate.runner",
        description="Run a (migrated) PyTorch script on the emulated Ascend NPU.",
    )
    parser.add_argument(
        "--strict-cuda",
        action="store_true",
        help="turn silent CUDA fallbacks (torch.cuda.is_available(), ...) into errors",
    )
    parser.add_argument(
        "--nproc", type=int, default=None, help="launch N processes with torchrun on 127.0.0.1"
    )
    parser.add_argument("script", help="the Python script to run")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, help="arguments for the script")
    options = parser.parse_args(args)
    try:
        return run(
            [options.script, *options.script_args], strict_cuda=options.strict_cuda, nproc=options.nproc
        )
    except (RuntimeError, ValueError) as error:
        parser.exit(2, f"{parser.prog}: error: {error}\n")


if __name__ == "__main__":
    sys.exit(main())
