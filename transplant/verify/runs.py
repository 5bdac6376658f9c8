"""The two runs of ``transplant verify``: how each is started, and what each left behind.

The reference is the original script on the CPU (or on CUDA when asked and present); the other
side is the migrated script on the emulated NPU (the real one where torch_npu is installed), or the
unmodified original under auto mode. Both get the same arguments, seeds and recorder
(:mod:`transplant.verify.hook`); each runs in its own process group, so a timeout or Ctrl-C ends
torchrun workers too.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from transplant.emulate import runner
from transplant.verify import hook

# Settings of the parent environment that would switch a run's mode behind our back.
_MODE_VARIABLES = (
    "TRANSPLANT_EMULATE", "TRANSPLANT_AUTO", "TRANSPLANT_STRICT_CUDA", "TRANSPLANT_NPU_RNG",
    hook.ENV_DIR, hook.ENV_STEPS, hook.ENV_SEED, hook.ENV_BACKEND_MAP,
)


def boot_dir() -> Path:
    """Directory with the verify ``sitecustomize`` (first on both runs' PYTHONPATH)."""
    return Path(__file__).resolve().parent / "_boot"


@dataclass(frozen=True)
class RunSpec:
    """One side of a verification, ready to start."""

    side: str               # "original" or "migrated"
    label: str              # e.g. "original (cpu)", "migrated (emulated npu)"
    cwd: Path
    command: list[str]
    env: dict[str, str]
    records_dir: Path


@dataclass
class RunResult:
    """What one run did: exit status, output, and the recorder's lines per rank."""

    spec: RunSpec
    returncode: int
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    records: dict[int, list[dict]] = field(default_factory=dict)
    stopped: bool = False           # the recorder ended it after the requested steps
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return self.timed_out or self.returncode != 0

    def steps(self, rank: int = 0) -> list[dict]:
        return [r for r in self.records.get(rank, []) if r.get("kind") == "step"]

    def traceback(self) -> str:
        """The last Python traceback on stderr (or the tail of stderr when there is none)."""
        text = self.stderr
        start = text.rfind("Traceback (most recent call last):")
        if start < 0:
            lines = text.strip().splitlines()
            return "\n".join(lines[-15:])
        lines = text[start:].splitlines()
        # The traceback ends at its first unindented line after the header: the exception itself
        # (what follows, e.g. torchrun's failure summary, is in the run's stderr.log).
        for index, line in enumerate(lines[1:], start=1):
            if line and not line[0].isspace():
                return "\n".join(lines[: index + 1])
        return "\n".join(lines).strip()

    def error_line(self) -> str:
        """The exception line of :meth:`traceback` (or its last line)."""
        lines = [line for line in self.traceback().splitlines() if line.strip()]
        return lines[-1].strip() if lines else f"exit code {self.returncode}"


@dataclass(frozen=True)
class VerifySettings:
    """Everything both runs share."""

    script: str
    args: tuple[str, ...]
    steps: Optional[int]
    seed: int
    nproc: Optional[int]
    strict_cuda: bool
    reference_device: str   # "cpu" or "cuda"
    timeout: float


def _base_environment(work: Path, side: str, settings: VerifySettings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _MODE_VARIABLES}
    records = work / side
    env[hook.ENV_DIR] = str(records)
    if settings.steps is not None:
        env[hook.ENV_STEPS] = str(settings.steps)
    env[hook.ENV_SEED] = str(settings.seed)
    env.setdefault("PYTHONHASHSEED", "0")  # set and dict-of-str orders alike in both runs
    return env


def _prepend_path(env: dict[str, str], *paths: Path) -> None:
    ours = [str(p) for p in paths]
    rest = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p and p not in ours]
    env["PYTHONPATH"] = os.pathsep.join(ours + rest)


def _command(settings: VerifySettings) -> list[str]:
    return runner.build_command([settings.script, *settings.args], nproc=settings.nproc)


def reference_spec(root: Path, work: Path, settings: VerifySettings) -> RunSpec:
    """The original script on the reference device."""
    env = _base_environment(work, "original", settings)
    # The emulator's boot folder holds the torchrun wrapper; without TRANSPLANT_EMULATE it does nothing.
    _prepend_path(env, boot_dir(), runner.boot_dir())
    if settings.reference_device == "cpu":
        env["CUDA_VISIBLE_DEVICES"] = ""  # a CUDA host still gives a CPU reference
        env[hook.ENV_BACKEND_MAP] = "nccl=gloo"
    else:
        env.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    return RunSpec("original", f"original ({settings.reference_device})", root,
                   _command(settings), env, work / "original")


def migrated_spec(root: Path, work: Path, settings: VerifySettings, *, auto: bool) -> RunSpec:
    """The migrated script (or, with ``auto``, the original under auto mode) on the (emulated) NPU."""
    env = _base_environment(work, "migrated", settings)
    emulated = runner.real_torch_npu_location() is None
    if emulated:
        # One emulated device per process, as the reference has one CPU; with --nproc one per rank.
        env["TRANSPLANT_NPU_COUNT"] = str(settings.nproc or 1)
        env = runner.child_environment(strict_cuda=settings.strict_cuda, nproc=settings.nproc, base=env)
        env["TRANSPLANT_NPU_RNG"] = "shared"
        if not settings.strict_cuda:
            env["TRANSPLANT_STRICT_CUDA"] = "warn"
    else:
        _prepend_path(env, runner.boot_dir())
    if auto:
        env["TRANSPLANT_AUTO"] = "1"
    _prepend_path(env, boot_dir())
    device = "emulated npu" if emulated else "npu"
    label = f"auto mode ({device})" if auto else f"migrated ({device})"
    return RunSpec("migrated", label, root, _command(settings), env, work / "migrated")


def read_records(directory: Path) -> tuple[dict[int, list[dict]], list[str]]:
    """The recorder's lines per rank; with several recording processes per rank, the longest."""
    by_rank: dict[int, list[list[dict]]] = {}
    for path in sorted(directory.glob("records.rank*.jsonl")):
        rank_text = path.name[len("records.rank"):].split(".", 1)[0]
        rank = int(rank_text) if rank_text.isdigit() else 0
        lines = []
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:  # a line cut short by a crash
                    break
        by_rank.setdefault(rank, []).append(lines)
    notes = []
    chosen: dict[int, list[dict]] = {}
    for rank, candidates in sorted(by_rank.items()):
        stepping = [c for c in candidates if any(r.get("kind") == "step" for r in c)]
        if len(stepping) > 1:
            notes.append(f"rank {rank}: {len(stepping)} processes made optimizer steps; "
                         "the one with the most steps is compared")
        chosen[rank] = max(candidates, key=lambda c: sum(r.get("kind") == "step" for r in c))
    return chosen, notes


def execute(spec: RunSpec, timeout: float) -> RunResult:
    """Run one side to the end (or its timeout) and collect its output and records."""
    spec.records_dir.mkdir(parents=True, exist_ok=True)
    out_path = spec.records_dir / "stdout.log"
    err_path = spec.records_dir / "stderr.log"
    started = time.monotonic()
    timed_out = False
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(spec.command, cwd=str(spec.cwd), env=spec.env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
            _kill_group(process)
            returncode = process.wait()
        except BaseException:  # Ctrl-C / SIGTERM: leave no worker behind
            _kill_group(process)
            process.wait()
            raise
        finally:
            _kill_group(process)  # torchrun workers or stray children of the script
    records, notes = read_records(spec.records_dir)
    result = RunResult(
        spec=spec,
        returncode=128 - returncode if returncode < 0 else returncode,
        stdout=out_path.read_text(encoding="utf-8", errors="replace"),
        stderr=err_path.read_text(encoding="utf-8", errors="replace"),
        seconds=time.monotonic() - started,
        timed_out=timed_out,
        records=records,
        notes=notes,
    )
    result.stopped = any(r.get("kind") == "stop" for r in records.get(0, []))
    return result


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def python_executable() -> str:
    """The interpreter both runs use (the one running transplant)."""
    return sys.executable
