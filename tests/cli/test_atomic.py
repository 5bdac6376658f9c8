"""An interrupted run leaves whole files and no temporaries in OUT."""

from __future__ import annotations

import ast
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from cli_helpers import PYTHON, REPO, UTILS_PY, write_tree


def temporaries(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.startswith(".transplant-") or p.name.endswith(".tmp")]


def assert_whole(src: Path, out: Path) -> None:
    """Every file in OUT is complete: a byte copy of its source, or a rewrite that parses."""
    for path in out.rglob("*"):
        if path.is_dir() or path.is_symlink():
            continue
        rel = path.relative_to(out)
        if not (src / rel).exists():
            continue  # a report
        if path.suffix == ".py":
            ast.parse(path.read_bytes())
        else:
            assert path.read_bytes() == (src / rel).read_bytes(), rel


def test_exception_mid_copy_leaves_no_partial_file(invoke, tmp_path: Path, monkeypatch) -> None:
    big = os.urandom(3 << 20)
    src = write_tree(tmp_path / "src", {"a.py": UTILS_PY, "blob.bin": big, "z.txt": b"z"})
    real = shutil.copyfileobj

    def half_then_fail(fsrc, fdst, length=0):
        fdst.write(fsrc.read(len(big) // 2))
        raise KeyboardInterrupt  # what Ctrl-C (or SIGTERM, via the CLI) raises mid-write

    def copy(fsrc, fdst, length=0):
        if fsrc.name.endswith("blob.bin"):
            return half_then_fail(fsrc, fdst, length)
        return real(fsrc, fdst, length)

    monkeypatch.setattr(shutil, "copyfileobj", copy)
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out, "-j", "1")
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines() == ["transplant: error: interrupted; OUT is incomplete "
                                                  "(every file in it is whole)"]
    assert not (out / "blob.bin").exists()
    assert temporaries(out) == []
    assert_whole(src, out)


def test_exception_at_rename_leaves_no_temporary(invoke, tmp_path: Path, monkeypatch) -> None:
    src = write_tree(tmp_path / "src", {f"m{i}.py": UTILS_PY for i in range(6)})
    real_replace = os.replace
    calls = {"n": 0}

    def flaky_replace(a, b, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise OSError(28, "No space left on device", str(b))
        return real_replace(a, b, *args, **kwargs)

    monkeypatch.setattr(os, "replace", flaky_replace)
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out, "-j", "1")
    assert result.exit_code == 3  # I/O errors have their own exit code, distinct from --check's 1
    assert result.stderr.strip().splitlines() == [
        f"transplant: error: I/O error: {out / 'm3.py'}: No space left on device; OUT is incomplete "
        "(every file in it is whole)"]
    assert temporaries(out) == []
    assert len(list(out.glob("m*.py"))) == 3
    assert_whole(src, out)


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_killed_run_leaves_whole_files(tmp_path: Path, sig: signal.Signals) -> None:
    files: dict[str, bytes] = {f"pkg{i % 7}/mod{i}.py": UTILS_PY * 20 for i in range(400)}
    files.update({f"data/blob{i}.bin": os.urandom(1 << 20) for i in range(30)})
    src = write_tree(tmp_path / "src", files)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    process = subprocess.Popen([PYTHON, "-m", "transplant", "-i", str(src), "-o", str(out), "-j", "2", "-q"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path,
                               start_new_session=True)
    try:
        deadline = time.monotonic() + 30
        while not (out / "data").exists() or not any((out / "data").iterdir()):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.005)
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == 130, stderr
    assert b"interrupted" in stderr and b"Traceback" not in stderr
    assert temporaries(out) == []
    assert_whole(src, out)
    assert len([p for p in out.rglob("*") if p.is_file()]) < len(files)  # it really was cut short


def test_force_run_deletes_no_file_it_did_not_create(invoke, tmp_path: Path) -> None:
    # Files named like our temporaries may be the user's own (or another run's): never ours to delete.
    src = write_tree(tmp_path / "src", {"pkg/a.py": UTILS_PY})
    mine = {"pkg/.transplant-abc123.tmp": b"half a fi", ".transplant-x.tmp": b"", "pkg/user.tmp": b"not ours"}
    out = write_tree(tmp_path / "out", mine)
    assert invoke("-i", src, "-o", out, "--force").exit_code == 0
    assert sorted(temporaries(out)) == sorted(out / rel for rel in mine)
    assert all((out / rel).read_bytes() == data for rel, data in mine.items())


def test_disk_full_names_the_file_and_exits_3(tmp_path: Path) -> None:
    # A real write error, not a mock: the file-size limit makes the kernel refuse the big copy (EFBIG),
    # as a full disk refuses it with ENOSPC.
    import resource

    src = write_tree(tmp_path / "src", {"a.py": UTILS_PY, "data/big.bin": os.urandom(4 << 20), "z.txt": b"z"})
    out = tmp_path / "out"

    def limit() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([PYTHON, "-m", "transplant", "-i", str(src), "-o", str(out), "-j", "1"],
                          capture_output=True, env=env, cwd=tmp_path, preexec_fn=limit, timeout=120)
    assert done.returncode == 3, done.stderr
    lines = done.stderr.decode().strip().splitlines()
    assert lines == [f"transplant: error: I/O error: {out / 'data' / 'big.bin'}: File too large; OUT is "
                     "incomplete (every file in it is whole)"], done.stderr
    assert temporaries(out) == []
    assert not (out / "data" / "big.bin").exists()
    assert_whole(src, out)


@pytest.mark.slow
def test_concurrent_force_runs_into_one_out(tmp_path: Path) -> None:
    files = {f"pkg{i % 5}/mod{i}.py": UTILS_PY * 30 for i in range(150)}
    files.update({f"data/blob{i}.bin": os.urandom(1 << 18) for i in range(20)})
    src = write_tree(tmp_path / "src", files)
    out = write_tree(tmp_path / "out", {".transplant-mine.tmp": b"the user's"})
    env = dict(os.environ, PYTHONPATH=str(REPO))
    runs = [subprocess.Popen([PYTHON, "-m", "transplant", "-i", str(src), "-o", str(out), "--force", "-j", "1",
                              "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=tmp_path)
            for _ in range(3)]
    outcomes = [(run.wait(timeout=300), run.stderr.read().decode()) for run in runs]
    for run in runs:
        run.stdout.close(), run.stderr.close()
    assert 0 in [code for code, _ in outcomes], outcomes
    for code, stderr in outcomes:
        if code == 0:
            assert stderr == ""
        else:  # refused at once, one line, nothing touched
            assert code == 2, outcomes
            assert stderr == f"transplant: error: another transplant run is writing into OUT: {out} " \
                             "(wait for it to finish)\n"
    assert temporaries(out) == [out / ".transplant-mine.tmp"]
    assert (out / ".transplant-mine.tmp").read_bytes() == b"the user's"
    assert_whole(src, out)
    assert all((out / rel).exists() for rel in files)


def test_run_into_a_locked_out_is_refused(invoke, project: Path, tmp_path: Path) -> None:
    from transplant.outlock import locked_out

    out = tmp_path / "out"
    out.mkdir()
    with locked_out(out):
        result = invoke("-i", project, "-o", out)
    assert result.exit_code == 2
    assert result.stderr == f"transplant: error: another transplant run is writing into OUT: {out} " \
                            "(wait for it to finish)\n"
    assert list(out.iterdir()) == []
    assert invoke("-i", project, "-o", out).exit_code == 0  # released with the block


def test_leftovers_in_src_are_not_copied(invoke, tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.py": UTILS_PY, ".transplant-0123456789abcdef-42-7.tmp": b"junk",
                                        ".transplant-zz.tmp": b"the user's own"})
    out = tmp_path / "out"
    assert invoke("-i", src, "-o", out).exit_code == 0
    assert temporaries(out) == [out / ".transplant-zz.tmp"]  # only a name of ours is never user content


def test_dead_worker_skips_its_file_and_the_run_goes_on(invoke, tmp_path: Path, monkeypatch) -> None:
    import multiprocessing

    import transplant.rewrite

    # The crash is planted through fork inheritance (the default start method on Linux until 3.14).
    fork = multiprocessing.get_context("fork")
    monkeypatch.setattr(multiprocessing, "get_context", lambda method=None: fork)
    real = transplant.rewrite.rewrite_source

    def crash_on_b(source, path, ruleset, **kwargs):
        if path == "b.py":
            os._exit(3)  # what the OOM killer or a segfault in a native parser does to a worker
        return real(source, path, ruleset, **kwargs)

    monkeypatch.setattr(transplant.rewrite, "rewrite_source", crash_on_b)
    src = write_tree(tmp_path / "src", {f"{name}.py": UTILS_PY for name in "abcdef"})
    out = tmp_path / "out"
    result = invoke("-i", src, "-o", out, "-j", "2")
    assert result.exit_code == 0, result.output
    assert temporaries(out) == []
    assert_whole(src, out)
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["skipped"] == [{"file": "b.py", "reason": "the worker process died on this file (exit status 3, "
                                                           "probably over the 2048 MiB bound (--max-memory)); "
                                                           "copied unchanged"}]
    assert (out / "b.py").read_bytes() == UTILS_PY  # copied as it is
    assert all(b'"npu"' in (out / f"{name}.py").read_bytes() for name in "acdef")  # the others migrated
