"""Helpers of the end-to-end tests: running scripts, golden-tree comparison, the CUDA-construct checklist.

Every script runs in a subprocess (the emulator patches torch process-wide; the test process stays
clean) in its own new session, so a timeout kills the whole process group, torchrun workers included.
"""

from __future__ import annotations

import csv
import difflib
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "fixtures"
SELFMM = FIXTURES / "selfmm"
ALBERT = FIXTURES / "albert"
PYTHON = sys.executable

# A scripted run longer than this is a hang, not a slow machine (the slowest run takes ~20 s).
RUN_TIMEOUT = 300

# Single-device runs: one emulated NPU (ALBERT wraps the model in DataParallel when it sees more
# than one device, exactly as it would on an 8-NPU host), and dropout drawn from the CPU generator
# so Self-MM (dropout 0.1) is comparable step by step with the CPU reference. ALBERT has no dropout.
EMULATOR_ENV = {"TRANSPLANT_NPU_COUNT": "1", "TRANSPLANT_NPU_RNG": "shared"}

# Environment variables that switch the emulator or auto mode on or change how they behave.
_RUN_MODE_VARIABLES = {
    "TRANSPLANT_EMULATE", "TRANSPLANT_AUTO", "TRANSPLANT_AUTO_QUIET", "TRANSPLANT_AUTO_REPORT",
    "TRANSPLANT_STRICT_CUDA", "TRANSPLANT_NPU_COUNT", "TRANSPLANT_NPU_RNG",
}

SELFMM_EPOCHS = 5
ALBERT_STEPS = 20


@dataclass
class Run:
    """One finished script run: its output and the records of its ``--loss_log``."""

    args: list[str]
    returncode: int
    stdout: str
    stderr: str
    records: list[dict]

    @property
    def losses(self) -> list[float]:
        return [r["loss"] for r in self.records if "loss" in r]

    def field(self, key: str) -> list:
        return [r[key] for r in self.records if key in r]

    def describe(self) -> str:
        return (
            f"command: {' '.join(self.args)}\nexit code: {self.returncode}\n"
            f"--- stdout (tail) ---\n{self.stdout[-3000:]}\n--- stderr (tail) ---\n{self.stderr[-6000:]}"
        )


def run_process(
    args: Sequence[str],
    *,
    cwd: Path,
    env: Optional[dict] = None,
    loss_log: Optional[Path] = None,
    timeout: float = RUN_TIMEOUT,
) -> Run:
    """Run a command in a new session; on timeout kill its whole process group and fail."""
    # the caller decides what is emulated: no such setting leaks in from the test process
    full_env = {k: v for k, v in os.environ.items() if k not in _RUN_MODE_VARIABLES}
    # one intra-op thread: the runs share two cores with each other and with the test process
    full_env.setdefault("OMP_NUM_THREADS", "1")
    # the originals run inside fixtures/: leave no __pycache__ there (it would be mirrored by migrations)
    full_env.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    full_env.update(env or {})
    proc = subprocess.Popen(
        list(args),
        cwd=str(cwd),
        env=full_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        stdout, stderr = proc.communicate()
        pytest.fail(f"timed out after {timeout}s: {' '.join(args)}\n{stderr[-4000:]}")
    finally:
        # torchrun workers live in the same group; none may outlive the test
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    records = read_records(loss_log) if loss_log is not None and loss_log.exists() else []
    return Run(list(args), proc.returncode, stdout, stderr, records)


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def transplant_run(script_and_args: Sequence[str], *, cwd: Path, env: dict, loss_log: Path,
                   strict_cuda: bool = False) -> Run:
    """``transplant run [--strict-cuda] script.py args...``: the script on the emulated NPU."""
    command = [PYTHON, "-m", "transplant", "run"]
    if strict_cuda:
        command.append("--strict-cuda")
    return run_process([*command, *script_and_args], cwd=cwd, env=env, loss_log=loss_log)


def migrate(src: Path, out: Path, *options: str) -> subprocess.CompletedProcess:
    """``transplant -i SRC -o OUT [options]`` as a user runs it."""
    return subprocess.run(
        [PYTHON, "-m", "transplant", "-i", str(src), "-o", str(out), "--quiet", *options],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        cwd=str(ROOT),
    )


def assert_finite(losses: Sequence[float]) -> None:
    assert losses, "no loss was logged"
    assert all(math.isfinite(x) for x in losses), losses


def relative_difference(a: Sequence[float], b: Sequence[float]) -> float:
    assert len(a) == len(b), (len(a), len(b))
    return max(abs(x - y) / max(abs(x), abs(y), 1e-12) for x, y in zip(a, b))



def selfmm_args(work: Path, tag: str) -> tuple[list[str], Path]:
    """Arguments of run.py for one run (own output folders per run), and its loss log."""
    loss_log = work / f"loss-{tag}.jsonl"
    args = [
        "run.py",
        "--data_dir", str(work / "data"),
        "--model_save_dir", str(work / tag / "models"),
        "--res_save_dir", str(work / tag / "results"),
        "--log_dir", str(work / tag / "logs"),
        "--gpu_ids", "0",
        "--max_epochs", str(SELFMM_EPOCHS),
        "--loss_log", str(loss_log),
    ]
    return args, loss_log


def albert_args(work: Path, tag: str, *extra: str) -> tuple[list[str], Path]:
    """Arguments of run_classifier.py for one run (own output and data-cache folders), and its loss log."""
    loss_log = work / f"loss-{tag}.jsonl"
    model_dir = work / "fake" / "prev_trained_model" / "albert_tiny"
    args = [
        "run_classifier.py",
        "--model_type", "albert",
        "--model_name_or_path", str(model_dir),
        "--vocab_file", str(model_dir / "vocab.txt"),
        "--task_name", "sst-2",
        "--do_train",
        "--do_eval",
        "--do_lower_case",
        "--data_dir", str(work / "fake" / "dataset" / "sst-2"),
        "--max_seq_length", "32",
        "--per_gpu_train_batch_size", "8",
        "--per_gpu_eval_batch_size", "8",
        "--learning_rate", "2e-2",
        "--max_steps", str(ALBERT_STEPS),
        "--logging_steps", "0",
        "--save_steps", "10",
        "--output_dir", str(work / tag) + "/",
        "--overwrite_output_dir",
        "--seed", "42",
        "--loss_log", str(loss_log),
        *extra,
    ]
    return args, loss_log


# Written by every run but not part of the reviewed golden output: the log carries timings, the
# JSON report repeats the CSV rows (compared through the CSVs) plus run-specific paths and times.
NOT_GOLDEN = {"transplant.log", "transplant_report.json"}


def golden_files(root: Path) -> dict[str, bytes]:
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            rel = path.relative_to(root).as_posix()
            if rel not in NOT_GOLDEN:
                files[rel] = path.read_bytes()
    return files


def compare_or_update_golden(out: Path, expected: Path, update: bool) -> None:
    """Fail with a readable diff unless ``out`` equals ``expected`` file for file, byte for byte.

    With ``update`` (pytest --update-golden) ``expected`` is replaced by ``out`` instead.
    """
    actual = golden_files(out)
    if update:
        if expected.exists():
            shutil.rmtree(expected)
        for rel, data in actual.items():
            target = expected / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            if (out / rel).stat().st_mode & 0o111:
                target.chmod(0o755)
        return
    assert expected.is_dir(), f"no golden output at {expected}: run pytest --update-golden and review it"
    wanted = golden_files(expected)
    problems = []
    for rel in sorted(set(actual) - set(wanted)):
        problems.append(f"unexpected file in the migration: {rel}")
    for rel in sorted(set(wanted) - set(actual)):
        problems.append(f"file missing from the migration: {rel}")
    for rel in sorted(set(actual) & set(wanted)):
        if actual[rel] != wanted[rel]:
            diff = difflib.unified_diff(
                wanted[rel].decode("utf-8", "replace").splitlines(),
                actual[rel].decode("utf-8", "replace").splitlines(),
                f"expected/{rel}", f"actual/{rel}", lineterm="", n=1,
            )
            problems.append("\n".join(list(diff)[:60]))
    assert not problems, "migration differs from the golden output:\n" + "\n".join(problems)


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


@dataclass(frozen=True)
class Construct:
    """One CUDA construct of an original trainer and what the migration must do with it.

    ``text`` is found on one or more lines of ``file`` (every occurrence is checked). ``expect``:
    * ``"migrated"``: each line has a change_list.csv row, the output no longer contains ``text``,
      and it contains ``result`` (a regex) at least as often as ``text`` occurred;
    * ``"reported"``: each line has an unsupported_api.csv row whose OP contains ``op``;
    * ``"migrated_or_reported"``: either of the two.
    """

    file: str
    text: str
    expect: str
    result: str = ""
    op: str = ""
    why: str = ""

    @property
    def id(self) -> str:
        return f"{self.file}:{self.text}"


@dataclass(frozen=True)
class Untouched:
    """Text that must come through the migration unchanged (identifiers, flags, help, CPU code)."""

    file: str
    text: str
    why: str = ""


def _rows_for(rows: list[dict[str, str]], file: str, line: int) -> list[dict[str, str]]:
    found = []
    for row in rows:
        name = row["File"].replace("\\", "/")
        if name != file and not name.endswith("/" + file):
            continue
        start = int(row["Start Line"])
        end = int(row["End Line"] or start)
        if start <= line <= end:
            found.append(row)
    return found


def check_construct(item: Construct, src: Path, out: Path) -> list[str]:
    """Problems with one checklist item (empty when the migration handled it as expected)."""
    original = (src / item.file).read_text(encoding="utf-8")
    migrated = (out / item.file).read_text(encoding="utf-8")
    lines = [n for n, line in enumerate(original.splitlines(), start=1) if item.text in line]
    if not lines:
        return [f"{item.file}: the original no longer contains {item.text!r}: fix the checklist"]
    changes = read_rows(out / "change_list.csv")
    unsupported = read_rows(out / "unsupported_api.csv")

    def migrated_problems() -> list[str]:
        problems = []
        for line in lines:
            if not _rows_for(changes, item.file, line):
                problems.append(f"{item.file}:{line}: no change_list.csv row for {item.text!r}")
        if item.text in migrated:
            problems.append(f"{item.file}: {item.text!r} is still in the migrated file")
        found = len(re.findall(item.result, migrated))
        if found < len(lines):
            problems.append(
                f"{item.file}: expected {len(lines)} x /{item.result}/ in the migrated file, found {found}"
            )
        return problems

    def reported_problems() -> list[str]:
        problems = []
        for line in lines:
            rows = [r for r in _rows_for(unsupported, item.file, line) if item.op in r["OP"]]
            if not rows:
                problems.append(f"{item.file}:{line}: no unsupported_api.csv row with OP ~ {item.op!r}")
            elif not all(r["Tips"].strip() for r in rows):
                problems.append(f"{item.file}:{line}: unsupported_api.csv row without a tip")
        return problems

    if item.expect == "migrated":
        return migrated_problems()
    if item.expect == "reported":
        return reported_problems()
    if item.expect == "migrated_or_reported":
        as_migrated, as_reported = migrated_problems(), reported_problems()
        if not as_migrated or not as_reported:
            return []
        return ["neither migrated nor reported:"] + as_migrated + as_reported
    raise ValueError(item.expect)


def check_untouched(item: Untouched, src: Path, out: Path) -> list[str]:
    before = (src / item.file).read_text(encoding="utf-8").count(item.text)
    after = (out / item.file).read_text(encoding="utf-8").count(item.text)
    if before == 0:
        return [f"{item.file}: the original no longer contains {item.text!r}: fix the checklist"]
    if after != before:
        return [f"{item.file}: {item.text!r} occurs {before}x in the original but {after}x after migration"]
    return []
