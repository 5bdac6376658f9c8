"""Same input, same output: every run, any ``-j``, any hash seed, any state of the allocator (issue 9 §1).

The ``--amp fp16`` migration of the ALBERT-style trainer once dropped ``clip_grad_norm_`` (or a whole
``if`` block) in about one run in ten: a block edit recognised "statements to drop" by ``id()`` of nodes
that had been garbage-collected, and a new statement allocated at the same address was dropped too.
The structural guard below makes any such loss a loud failure of the file instead of silent output.
"""

from __future__ import annotations

import gc
import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import libcst as cst
import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rewrite.passes import register_pass
from transplant.rules import load_ruleset

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "fixtures"
TREES = {"albert": FIXTURES / "albert" / "original", "selfmm": FIXTURES / "selfmm" / "original",
         "amp_loops": FIXTURES / "amp_loops"}


def _sources() -> list[tuple[str, bytes]]:
    """The fixture files the mixed-precision passes rewrite (the others never reach a block edit)."""
    out = []
    for name, root in TREES.items():
        for path in sorted(root.rglob("*.py")):
            source = path.read_bytes()
            if b"backward" in source or b"apex" in source:
                out.append((f"{name}/{path.relative_to(root).as_posix()}", source))
    return out


def _churn(rng: random.Random) -> list[object]:
    """Allocate and free objects of the sizes CST nodes have, so freed addresses get reused differently."""
    keep = [cst.Name(f"n{i}") for i in range(rng.randint(0, 3000))]
    keep += [[i] * rng.randint(0, 4) for i in range(rng.randint(0, 3000))]
    rng.shuffle(keep)
    del keep[: len(keep) // 2]
    return keep


@pytest.mark.slow
def test_in_process_runs_with_memory_churn_are_identical() -> None:
    ruleset = load_ruleset(options={"amp": "fp16"})
    sources = _sources()
    reference = None
    for run in range(30):
        rng = random.Random(run)
        order = sources[:]
        rng.shuffle(order)
        outputs = {}
        for path, source in order:
            junk = _churn(rng)
            result = rewrite_source(source, path, ruleset)
            outputs[path] = (result.status, result.new_source, result.changes, result.unsupported, result.reason)
            del junk
            if rng.random() < 0.3:
                gc.collect()
        if reference is None:
            reference = outputs
            assert all(o[0] is not Status.FAILED for o in outputs.values())
        else:
            assert [p for p in outputs if outputs[p] != reference[p]] == [], f"run {run} differs"


def _tree(dest: Path) -> Path:
    """The mixed-precision fixture files plus one plain trainer file (start-up dominates otherwise)."""
    for rel, source in _sources():
        (dest / rel).parent.mkdir(parents=True, exist_ok=True)
        (dest / rel).write_bytes(source)
    (dest / "common.py").write_bytes((TREES["albert"] / "tools" / "common.py").read_bytes())
    return dest


def _snapshot(out: Path) -> dict[str, bytes]:
    snap = {}
    for path in sorted(out.rglob("*")):
        if not path.is_file() or path.name == "transplant.log":
            continue
        data = path.read_bytes()
        if path.name == "transplant_report.json":  # run-specific fields: when and where
            report = json.loads(data)
            for key in ("created", "output", "input", "source", "duration_s", "elapsed_s"):
                report.pop(key, None)
            data = json.dumps(report, sort_keys=True).encode()
        snap[path.relative_to(out).as_posix()] = data
    return snap


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_cli_runs_any_seed_any_jobs_are_identical(tmp_path) -> None:
    src = _tree(tmp_path / "src")
    reference = None
    for run in range(30):
        out = tmp_path / f"out{run}"
        env = dict(os.environ, PYTHONHASHSEED=str(run * 7919 % 4294967296), PYTHONPATH=str(REPO))
        proc = subprocess.run([sys.executable, "-m", "transplant", "-i", str(src), "-o", str(out), "--amp", "fp16",
                               "-j", str(1 + run % 2)], env=env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        snap = _snapshot(out)
        shutil.rmtree(out)
        if reference is None:
            reference = snap
            assert snap["albert/run_classifier.py"].count(b"clip_grad_norm_") == 2
        else:
            assert sorted(k for k in set(snap) | set(reference) if snap.get(k) != reference.get(k)) == [], \
                f"run {run} (-j {1 + run % 2}) differs"


# -- the structural guard ---------------------------------------------------------------------------

GUARDED = b"""import torch


def step(optimizer, loss):
    loss.backward()
    optimizer.step()
    optimizer.zero_grad()
"""


@register_pass("test_sloppy_block_edit")
def _sloppy_block_edit(module: cst.Module, ctx, rules) -> None:
    """Replaces ``optimizer.step()`` and, by mistake, also drops the statement after it."""
    func = next(s for s in module.body if isinstance(s, cst.FunctionDef))
    block = func.body
    target = block.body[1]
    ctx.replace(target, lambda updated: cst.parse_statement("scaler.step(optimizer)\n"))
    ctx.record_change(target, rules[0], "step", before="optimizer.step()", after="scaler.step(optimizer)")

    def drop_last(updated):
        return updated.with_changes(body=list(updated.body)[:-1])

    ctx.replace(block, drop_last)


@register_pass("test_declared_block_edit")
def _declared_block_edit(module: cst.Module, ctx, rules) -> None:
    """Drops the last statement and says so."""
    func = next(s for s in module.body if isinstance(s, cst.FunctionDef))
    block = func.body

    def drop_last(updated):
        ctx.plan_drop(updated.body[-1])
        return updated.with_changes(body=list(updated.body)[:-1])

    ctx.replace(block, drop_last)
    ctx.record_change(block.body[-1], rules[0], "drop")


def _rules(tmp_path: Path, kind: str):
    path = tmp_path / "r.json"
    path.write_text(json.dumps({"name": "t", "rules": [
        {"id": "TP991", "kind": kind, "severity": "review", "message": "m", "triggers": ["optimizer"],
         "needs_torch_npu": False}]}))
    return load_ruleset([path], select=["TP991"])


def test_an_undeclared_statement_loss_fails_the_file_loudly(tmp_path) -> None:
    result = rewrite_source(GUARDED, "g.py", _rules(tmp_path, "test_sloppy_block_edit"))
    assert result.status is Status.FAILED and result.new_source is None
    assert result.reason.startswith("g.py:7: ") and "drop" in result.reason


def test_a_declared_drop_is_emitted(tmp_path) -> None:
    result = rewrite_source(GUARDED, "g.py", _rules(tmp_path, "test_declared_block_edit"))
    assert result.status is Status.CHANGED
    assert result.new_source.decode().endswith("    optimizer.step()\n")
