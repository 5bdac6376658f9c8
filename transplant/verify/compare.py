"""Compare the two runs of ``transplant verify``: per-step losses and parameter fingerprints.

With tolerance 0 parity means bit-identical: every recorded loss equal and every parameter
group's SHA-256 equal after every step. With a tolerance REL, losses and the groups' sums, norms
and absolute sums may differ by at most REL relative to their magnitude. The first step (and
parameter group, and tensor) where that fails is the divergence.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

from transplant.verify.runs import RunResult

# Statuses, and whether each is a pass.
PARITY = "parity"
DIVERGED = "diverged"
RUN_FAILED = "run-failed"
NOTHING_TO_COMPARE = "nothing-to-compare"
RANKS_ONLY = "ranks-only"
NOT_ON_NPU = "not-on-npu"


@dataclass
class StepRow:
    """One optimizer step as both runs recorded it."""

    step: int
    original_loss: Optional[float]
    migrated_loss: Optional[float]
    loss_difference: Optional[float]     # relative; None when a side has no scalar loss
    params_equal: Optional[bool]         # bit-identical parameters after the step
    params_difference: Optional[float]   # largest relative difference of the groups' statistics
    ok: bool


@dataclass
class Divergence:
    """Where the runs first disagree."""

    step: int
    what: str                 # "loss", "parameters", "missing step", "extra step", "optimizer"
    detail: str
    group: Optional[int] = None
    tensor: Optional[int] = None


@dataclass
class Comparison:
    """The verdict and everything the report shows."""

    status: str
    passed: bool
    exact: bool
    tolerance: float
    rows: list[StepRow] = field(default_factory=list)
    divergence: Optional[Divergence] = None
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    migrated_only_output: list[str] = field(default_factory=list)
    leftover_cuda: list[str] = field(default_factory=list)
    rank_agreement: Optional[bool] = None


def relative(a: float, b: float) -> float:
    """|a - b| relative to the larger magnitude (0 for equal values, inf for NaN against a number)."""
    if a == b or (math.isnan(a) and math.isnan(b)):
        return 0.0
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return math.inf
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _group_difference(a: dict, b: dict) -> float:
    worst = max(relative(a["norm"], b["norm"]), relative(a["abs_sum"], b["abs_sum"]))
    scale = max(a["abs_sum"], b["abs_sum"], 1e-300)
    if not (math.isnan(a["sum"]) or math.isnan(b["sum"])):
        worst = max(worst, abs(a["sum"] - b["sum"]) / scale)
    return worst


def _loss_difference(a: dict, b: dict) -> tuple[Optional[float], Optional[str]]:
    """Largest relative difference of the step's losses, and a problem when they cannot be compared."""
    la, lb = a.get("losses") or [], b.get("losses") or []
    if len(la) != len(lb):
        return math.inf, f"{len(la)} backward pass(es) in the original but {len(lb)} in the migrated run"
    worst: Optional[float] = None
    for x, y in zip(la, lb):
        if x is None or y is None:
            if (x is None) != (y is None):
                return math.inf, "a scalar loss on one side only"
            continue
        difference = relative(x, y)
        worst = difference if worst is None else max(worst, difference)
    return worst, None


def _first_bad_tensor(a: dict, b: dict, tolerance: float) -> Optional[int]:
    ta, tb = a.get("tensors", []), b.get("tensors", [])
    for index, (x, y) in enumerate(zip(ta, tb)):
        if x["shape"] != y["shape"]:
            return index
        if tolerance == 0:
            if x["sha256"] != y["sha256"]:
                return index
        elif relative(x["norm"], y["norm"]) > tolerance:
            return index
    return None if len(ta) == len(tb) else min(len(ta), len(tb))


def compare_steps(original: list[dict], migrated: list[dict],
                  tolerance: float) -> tuple[list[StepRow], Optional[Divergence], bool]:
    """Rows for every step either run made, the first divergence, and whether all was bit-identical."""
    rows: list[StepRow] = []
    divergence: Optional[Divergence] = None
    exact = True
    for index in range(max(len(original), len(migrated))):
        a = original[index] if index < len(original) else None
        b = migrated[index] if index < len(migrated) else None
        step = index + 1
        if a is None or b is None:
            exact = False
            present = a or b
            assert present is not None
            rows.append(StepRow(step, a and a.get("loss"), b and b.get("loss"), None, None, None, False))
            if divergence is None:
                missing = "migrated" if b is None else "original"
                divergence = Divergence(step, "missing step",
                                        f"the {missing} run made no optimizer step {step} "
                                        f"(original: {len(original)} step(s), migrated: {len(migrated)})")
            continue
        problems = []
        loss_diff, loss_problem = _loss_difference(a, b)
        if loss_problem:
            problems.append(("loss", loss_problem, None, None))
        elif loss_diff is not None and loss_diff > tolerance:
            problems.append(("loss", f"loss {_fmt(a.get('loss'))} vs {_fmt(b.get('loss'))} "
                                     f"(relative difference {loss_diff:.3g} > tolerance {tolerance:g})", None, None))
        ga, gb = a["groups"], b["groups"]
        params_equal = len(ga) == len(gb) and all(x["sha256"] == y["sha256"] for x, y in zip(ga, gb))
        params_diff: Optional[float] = 0.0
        if a.get("optimizer") != b.get("optimizer") or len(ga) != len(gb):
            params_diff = None
            problems.append(("optimizer", f"optimizer #{a.get('optimizer')} ({a.get('optimizer_class')}, "
                                          f"{len(ga)} group(s)) vs #{b.get('optimizer')} "
                                          f"({b.get('optimizer_class')}, {len(gb)} group(s))", None, None))
        else:
            for group, (x, y) in enumerate(zip(ga, gb)):
                difference = 0.0 if x["sha256"] == y["sha256"] else max(_group_difference(x, y), 1e-300)
                if x["numel"] != y["numel"]:
                    difference = math.inf
                params_diff = max(params_diff or 0.0, difference)
                bad = x["sha256"] != y["sha256"] if tolerance == 0 else difference > tolerance
                if bad and not any(p[0] == "parameters" for p in problems):
                    tensor = _first_bad_tensor(x, y, tolerance)
                    where = f"parameter group {group}"
                    if tensor is not None and tensor < len(x.get("tensors", [])):
                        where += f", tensor #{tensor} (shape {x['tensors'][tensor]['shape']})"
                    problems.append(("parameters", f"{where} differs after the step "
                                                   f"(relative difference {difference:.3g}, tolerance "
                                                   f"{tolerance:g}: norm {x['norm']:.10g} vs {y['norm']:.10g})",
                                     group, tensor))
        if not params_equal or (loss_diff not in (None, 0.0)) or loss_problem:
            exact = False
        ok = not problems
        rows.append(StepRow(step, a.get("loss"), b.get("loss"), loss_diff, params_equal, params_diff, ok))
        if not ok and divergence is None:
            what, detail, group, tensor = problems[0]
            divergence = Divergence(step, what, detail, group, tensor)
    return rows, divergence, exact


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.10g}"


_NUMBER = re.compile(r"\d+(\.\d+)?([eE][-+]?\d+)?")
_LEFTOVER = re.compile(r"leftover CUDA usage|LeftoverCuda", re.I)


def _normalise(line: str, roots: list[str]) -> str:
    for root in roots:
        line = line.replace(root, "<project>")
    return _NUMBER.sub("#", line).strip()


def output_difference(original: RunResult, migrated: RunResult) -> tuple[list[str], list[str]]:
    """Lines only the migrated run printed (numbers and project roots ignored), and its leftover-CUDA lines."""
    roots_a = [str(original.spec.cwd)]
    roots_b = [str(migrated.spec.cwd)]
    seen = Counter(_normalise(line, roots_a) for line in (original.stdout + "\n" + original.stderr).splitlines())
    extra = []
    leftover = []
    shown = set(migrated.traceback().splitlines()) if migrated.failed else set()  # the report shows it whole
    for line in (migrated.stdout + "\n" + migrated.stderr).splitlines():
        key = _normalise(line, roots_b)
        if not key:
            continue
        if _LEFTOVER.search(line) and line.strip() not in leftover:
            leftover.append(line.strip())
        if line in shown:
            continue
        if seen[key] > 0:
            seen[key] -= 1
            continue
        extra.append(line.rstrip())
    return extra, leftover


def rank_agreement(result: RunResult) -> tuple[Optional[bool], list[str]]:
    """Whether every rank's parameters matched rank 0's after every step (None with one rank)."""
    ranks = sorted(result.records)
    if len(ranks) < 2:
        return None, []
    problems = []
    base = result.steps(ranks[0])
    for rank in ranks[1:]:
        other = result.steps(rank)
        if len(other) != len(base):
            problems.append(f"{result.spec.label}: rank {rank} made {len(other)} step(s), rank 0 {len(base)}")
            continue
        for a, b in zip(base, other):
            if [g["sha256"] for g in a["groups"]] != [g["sha256"] for g in b["groups"]]:
                problems.append(f"{result.spec.label}: rank {rank}'s parameters differ from rank 0's "
                                f"after step {a['step']}")
                break
    return not problems, problems


def _devices(steps: list[dict]) -> set[str]:
    return {d for s in steps for g in s["groups"] for d in g.get("devices", [])}


def compare(original: RunResult, migrated: RunResult, tolerance: float,
            distributed_reference_failed: bool = False) -> Comparison:
    """The verdict over two finished runs."""
    extra, leftover = output_difference(original, migrated)
    steps_a, steps_b = original.steps(), migrated.steps()
    notes = list(original.notes) + list(migrated.notes)
    agree_a, problems_a = rank_agreement(original)
    agree_b, problems_b = rank_agreement(migrated)
    agreement = None if agree_a is None and agree_b is None else bool((agree_a is not False) and
                                                                       (agree_b is not False))
    base = dict(tolerance=tolerance, migrated_only_output=extra, leftover_cuda=leftover,
                rank_agreement=agreement, notes=notes)

    if distributed_reference_failed and not migrated.failed:
        passed = bool(steps_b) and agree_b is not False
        problems = problems_b + ([] if steps_b else ["the migrated run made no optimizer step"])
        return Comparison(status=RANKS_ONLY, passed=passed, exact=False, problems=problems, **base)

    if original.failed or migrated.failed:
        problems = []
        for run in (original, migrated):
            if run.timed_out:
                problems.append(f"{run.spec.label} timed out after {run.seconds:.0f} s")
            elif run.failed:
                problems.append(f"{run.spec.label} failed with exit code {run.returncode}")
        rows, divergence, _ = compare_steps(steps_a, steps_b, tolerance)
        return Comparison(status=RUN_FAILED, passed=False, exact=False, rows=rows, divergence=divergence,
                          problems=problems, **base)

    if not steps_a and not steps_b:
        return Comparison(status=NOTHING_TO_COMPARE, passed=False, exact=False,
                          problems=["neither run made an optimizer step: nothing to compare"], **base)

    rows, divergence, exact = compare_steps(steps_a, steps_b, tolerance)
    problems = problems_a + problems_b
    devices_b = _devices(steps_b)
    if steps_b and devices_b and not any(d.startswith("npu") for d in devices_b):
        problems.append(f"the migrated run trained on {', '.join(sorted(devices_b))}, not on the NPU "
                        "(a leftover CUDA test such as torch.cuda.is_available() may have chosen the CPU)")
        return Comparison(status=NOT_ON_NPU, passed=False, exact=exact, rows=rows, divergence=divergence,
                          problems=problems, **base)
    if divergence is not None or problems:
        return Comparison(status=DIVERGED, passed=False, exact=False, rows=rows, divergence=divergence,
                          problems=problems, **base)
    return Comparison(status=PARITY, passed=True, exact=exact, rows=rows, **base)
