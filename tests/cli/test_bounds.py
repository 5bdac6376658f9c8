"""Every Python file is bounded in time and memory; interrupts end a run at once, at any point.

The 10 MB file is generated (realistic statements, about 0.7 GB of parser memory per MB of source
unbounded): it must be skipped, or migrated, within the bounds, and the run must go on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cli_helpers import PYTHON, REPO, UTILS_PY, write_tree
from test_atomic import assert_whole, temporaries

SMALL = b"import torch\nx = torch.zeros(1).cuda()\n"
ENV = dict(os.environ, PYTHONPATH=str(REPO))


def _generated(size: int) -> bytes:
    lines = ["import torch", ""]
    total, i = 0, 0
    while total < size:
        line = (f"layer_{i} = torch.nn.Linear({i % 97 + 1}, {i % 89 + 1}).cuda()\n"
                f"out_{i} = layer_{i}(torch.randn(2, {i % 97 + 1}, device='cuda'))\n")
        lines.append(line)
        total += len(line)
        i += 1
    return "\n".join(lines).encode()


@pytest.fixture(scope="module")
def huge_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    src = tmp_path_factory.mktemp("huge") / "src"
    return write_tree(src, {"gen/model_zoo.py": _generated(10 << 20), "train.py": SMALL, "utils.py": UTILS_PY,
                            "README.md": b"readme\n"})


# Runs the migration in this process, so that RUSAGE_CHILDREN is the peak of the worker processes alone.
_MEASURE = """
import json, resource, sys
from pathlib import Path
from transplant.migrate import MigrationOptions, migrate
from transplant.workers import Bounds
src, out, memory, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
migration = migrate(MigrationOptions(src=Path(src), out=Path(out), jobs=2, bounds=Bounds(timeout, memory)))
print(json.dumps({"workers_peak_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
                  "results": {r.path: [r.status.value, r.reason] for r in migration.results}}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("memory, timeout", [(400, 120.0), (4000, 3.0)])
def test_ten_megabyte_file_is_bounded(huge_src: Path, tmp_path: Path, memory: int, timeout: float) -> None:
    out = tmp_path / "out"
    started = time.monotonic()
    done = subprocess.run([PYTHON, "-c", _MEASURE, str(huge_src), str(out), str(memory), str(timeout)],
                          capture_output=True, text=True, env=ENV, timeout=300)
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr
    measured = json.loads(done.stdout)
    results = measured["results"]
    status, reason = results["gen/model_zoo.py"]
    if memory < 1000:  # far below what the parser needs: stopped by the memory bound
        assert status == "skipped" and "--max-memory" in reason and f"{memory} MiB" in reason, reason
        assert measured["workers_peak_kib"] < memory * 1024, measured["workers_peak_kib"]
    else:  # memory to spare, little time: stopped by the time bound
        assert status == "skipped" and reason == "took longer than 3 s (--file-timeout); copied unchanged", reason
        assert elapsed < 60
    assert (out / "gen" / "model_zoo.py").read_bytes() == (huge_src / "gen" / "model_zoo.py").read_bytes()
    assert results["train.py"][0] == "changed" and results["utils.py"][0] == "changed"  # the run went on
    assert b".npu()" in (out / "train.py").read_bytes()


def test_bounds_are_options_and_reported(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.py": SMALL})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out, "--file-timeout", "7.5", "--max-memory", "300").exit_code == 0
    options = json.loads((out / "transplant_report.json").read_text())["options"]
    assert (options["file_timeout"], options["max_memory_mib"]) == (7.5, 300)
    for bad in (["--file-timeout", "-1"], ["--max-memory", "lots"]):
        assert invoke("-i", src, "-o", tmp_path / "o2", *bad).exit_code == 2


def _start(args: list[str], cwd: Path) -> subprocess.Popen:
    return subprocess.Popen([PYTHON, "-m", "transplant", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=ENV, cwd=cwd, start_new_session=True)


def _finish(process: subprocess.Popen, signum: int, group: bool) -> tuple[int, bytes, float]:
    sent = time.monotonic()
    if group:  # a terminal's Ctrl-C reaches the whole process group, workers included
        os.killpg(process.pid, signum)
    else:
        process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    return process.returncode, stderr, time.monotonic() - sent


@pytest.mark.slow
@pytest.mark.parametrize("signum, group", [(signal.SIGINT, True), (signal.SIGTERM, False)])
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_interrupt_while_a_worker_is_deep_in_a_file(huge_src: Path, tmp_path: Path, signum: int, group: bool,
                                                    jobs: str) -> None:
    out = tmp_path / "out"
    process = _start(["-i", str(huge_src), "-o", str(out), "-j", jobs, "-q", "--max-memory", "3000",
                      "--file-timeout", "0"], tmp_path)
    deadline = time.monotonic() + 60
    while not (out / "README.md").exists():  # the parent has started the workers and copies
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.01)
    time.sleep(0.5)  # the worker is now parsing the 10 MB file
    code, stderr, took = _finish(process, signum, group)
    assert code == 130, stderr
    assert stderr.decode().splitlines() == ["transplant: error: interrupted; OUT is incomplete (every file in it "
                                            "is whole)"]
    assert took < 2.0, took
    assert temporaries(out) == []
    assert_whole(huge_src, out)
    assert not (out / "gen" / "model_zoo.py").exists()


# Sends the process SIGINT (what Ctrl-C does) at the N-th Python function call of the parent process:
# N sampled over the whole run reaches every phase, from importing click through loading and
# validating the rule sets, walking SRC and copying, to writing the reports. N = 0 only counts.
_INTERRUPT_AT_CALL = """
import os, signal, sys
limit, parent, calls = int(sys.argv[1]), os.getpid(), [0]

def tracer(frame, event, arg):
    if event == "call" and os.getpid() == parent:
        calls[0] += 1
        if calls[0] == limit:
            os.kill(parent, signal.SIGINT)
    return None

from transplant._entry import main

sys.settrace(tracer)
try:
    main(sys.argv[2:])
finally:
    sys.settrace(None)
    if not limit:
        print(calls[0], file=sys.stderr)
"""


@pytest.mark.slow
def test_interrupt_at_any_point_of_a_run(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {f"pkg/m{i}.py": UTILS_PY for i in range(6)} | {"train.py": SMALL,
                                                                                       "data.bin": os.urandom(4096)})

    def run(limit: int, out: Path) -> subprocess.CompletedProcess:
        return subprocess.run([PYTHON, "-c", _INTERRUPT_AT_CALL, str(limit), "-i", str(src), "-o", str(out), "-j",
                               "2", "-q"], capture_output=True, env=ENV, cwd=tmp_path, timeout=300)

    counted = run(0, tmp_path / "counted")
    assert counted.returncode == 0, counted.stderr
    total = int(counted.stderr.decode().split()[-1])
    for fraction in (0.0005, 0.005, 0.02, 0.05, 0.1, 0.2, 0.35, 0.5, 0.65, 0.8, 0.9, 0.97, 0.995):
        out = tmp_path / f"out{fraction}"
        done = run(max(1, int(total * fraction)), out)
        where = f"interrupted at call {int(total * fraction)} of {total}"
        assert done.returncode == 130, (where, done.stderr.decode()[-2000:])
        assert done.stderr.decode().splitlines() == [
            "transplant: error: interrupted; OUT is incomplete (every file in it is whole)"], where
        if out.exists():
            assert temporaries(out) == [], where
            assert_whole(src, out)


@pytest.mark.slow
def test_sigterm_during_start_up_exits_130(tmp_path: Path) -> None:
    # A real signal while the command line loads (after the interpreter itself has started).
    src = write_tree(tmp_path / "src", {"a.py": SMALL})
    probe = subprocess.run([PYTHON, "-c", "pass"], env=ENV, capture_output=True)
    assert probe.returncode == 0
    codes = set()
    for delay in (0.15, 0.3, 0.45, 0.6, 0.8):
        process = _start(["-i", str(src), "-o", str(tmp_path / f"out{delay}"), "-q"], tmp_path)
        time.sleep(delay)
        code, stderr, took = _finish(process, signal.SIGTERM, False)
        codes.add(code)
        if code == 130:
            assert stderr.decode().splitlines() == [
                "transplant: error: interrupted; OUT is incomplete (every file in it is whole)"], stderr
            assert took < 2.0
        else:  # too early (the interpreter's own start: killed by the signal) or too late (done)
            assert code in (0, -signal.SIGTERM), stderr
    assert 1 not in codes
