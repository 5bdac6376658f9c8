"""What ``transplant verify`` shows and writes: the step table, the summary, verify_report.json, the plot.

Functions here return text (lines) or write files; the CLI prints. The plot is a PNG when
matplotlib is importable (the ``plot`` extra), otherwise an ASCII chart (text file and lines).
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Optional

from transplant.atomic import atomic_path
from transplant.verify.compare import Comparison, StepRow
from transplant.verify.runs import RunResult

REPORT_NAME = "verify_report.json"
PNG_NAME = "verify_loss.png"
ASCII_NAME = "verify_loss.txt"


def _loss(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.10f}"


def _diff(row: StepRow) -> str:
    if row.loss_difference is None:
        return "-"
    if row.loss_difference == 0:
        return "0"
    return "inf" if math.isinf(row.loss_difference) else f"{row.loss_difference:.2e}"


def _params(row: StepRow) -> str:
    if row.params_equal is None:
        return "-"
    if row.params_equal:
        return "identical"
    diff = row.params_difference
    return "differ" if diff is None else f"rel {diff:.2e}"


def table_lines(comparison: Comparison, original: RunResult, migrated: RunResult) -> list[str]:
    """The side-by-side step table (loss per side, relative difference, parameters)."""
    left, right = f"loss: {original.spec.label}", f"loss: {migrated.spec.label}"
    width = max(18, len(left), len(right))
    lines = [f"{'step':>4}  {left:<{width}}  {right:<{width}}  {'rel diff':>8}  params"]
    for row in comparison.rows:
        mark = "" if row.ok else "   <-- differs"
        lines.append(f"{row.step:>4}  {_loss(row.original_loss):<{width}}  {_loss(row.migrated_loss):<{width}}  "
                     f"{_diff(row):>8}  {_params(row)}{mark}")
    return lines


def summary_lines(comparison: Comparison, original: RunResult, migrated: RunResult) -> list[str]:
    """The verdict in a few lines, and why it is what it is."""
    steps = len(comparison.rows)
    lines = []
    if comparison.status == "parity":
        how = ("bit-identical losses and parameters" if comparison.exact
               else f"losses and parameters within relative tolerance {comparison.tolerance:g}")
        lines.append(f"PASS: {steps} optimizer step(s) compared: {how}.")
    elif comparison.status == "nothing-to-compare":
        lines.append("NOTHING TO COMPARE: neither run made an optimizer step (this is not a pass).")
    elif comparison.status == "ranks-only":
        verdict = "ranks agree" if comparison.passed else "ranks DISAGREE"
        lines.append(f"{'PASS' if comparison.passed else 'FAIL'} (rank agreement only): {verdict}; the "
                     "original could not run distributed here, so the runs were not compared.")
    else:
        lines.append(f"FAIL ({comparison.status}).")
    if comparison.divergence is not None:
        d = comparison.divergence
        lines.append(f"First divergence at step {d.step} ({d.what}): {d.detail}")
    for problem in comparison.problems:
        lines.append(f"  - {problem}")
    if comparison.rank_agreement is not None and comparison.status != "ranks-only":
        lines.append("Ranks agree: every rank's parameters equal rank 0's after every step."
                     if comparison.rank_agreement else "Ranks do not agree (see above).")
    for note in comparison.notes:
        lines.append(f"Note: {note}")
    for run in (original, migrated):
        if run.failed:
            lines.append(f"--- {run.spec.label}: exit code {run.returncode}"
                         f"{' (timed out)' if run.timed_out else ''}; its traceback:")
            lines.extend("    " + line for line in run.traceback().splitlines())
        elif any(r.failed for r in (original, migrated)):
            lines.append(f"--- {run.spec.label}: finished (exit code 0)")
    if comparison.leftover_cuda:
        lines.append("Leftover CUDA in the migrated run (fails on an Ascend host or silently falls back):")
        lines.extend(f"    {line}" for line in comparison.leftover_cuda[:20])
    others = [line for line in comparison.migrated_only_output if line.strip() not in comparison.leftover_cuda]
    if others:
        lines.append(f"Printed by the migrated run only ({len(others)} line(s); numbers and paths ignored):")
        lines.extend(f"    {line}" for line in others[:15])
        if len(others) > 15:
            lines.append(f"    ... {len(others) - 15} more in the report")
    return lines


def write_json(path: Path, comparison: Comparison, original: RunResult, migrated: RunResult,
               settings: dict, plot: Optional[Path]) -> None:
    """verify_report.json: settings, verdict, every row, both runs' facts (written atomically)."""

    def run_facts(run: RunResult) -> dict:
        return {
            "label": run.spec.label,
            "cwd": str(run.spec.cwd),
            "command": run.spec.command,
            "exit_code": run.returncode,
            "timed_out": run.timed_out,
            "stopped_after_steps": run.stopped,
            "seconds": round(run.seconds, 3),
            "steps": len(run.steps()),
            "ranks": sorted(run.records),
            "traceback": run.traceback() if run.failed else None,
            "log_dir": str(run.spec.records_dir),
        }

    data = {
        "status": comparison.status,
        "passed": comparison.passed,
        "bit_identical": comparison.exact,
        "tolerance": comparison.tolerance,
        "settings": settings,
        "divergence": dataclasses.asdict(comparison.divergence) if comparison.divergence else None,
        "problems": comparison.problems,
        "notes": comparison.notes,
        "rank_agreement": comparison.rank_agreement,
        "leftover_cuda": comparison.leftover_cuda,
        "migrated_only_output": comparison.migrated_only_output[:200],
        "rows": [_json_row(row) for row in comparison.rows],
        "original": run_facts(original),
        "migrated": run_facts(migrated),
        "plot": str(plot) if plot else None,
    }
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=True, allow_nan=False, default=str) + "\n",
                       encoding="utf-8")


def _json_row(row: StepRow) -> dict:
    out = dataclasses.asdict(row)
    for key, value in out.items():  # JSON has no inf/nan
        if isinstance(value, float) and not math.isfinite(value):
            out[key] = str(value)
    return out


def ascii_chart(comparison: Comparison, width: int = 50) -> list[str]:
    """Both loss curves as text, one line per step: o = original, m = migrated, * = both."""
    values = [v for row in comparison.rows for v in (row.original_loss, row.migrated_loss)
              if v is not None and math.isfinite(v)]
    if not values:
        return ["(no loss to plot)"]
    low, high = min(values), max(values)
    span = (high - low) or 1.0
    lines = [f"loss {low:.4f} {'-' * (width - 12)} {high:.4f}   (o original, m migrated, * both)"]

    def column(value: Optional[float]) -> Optional[int]:
        if value is None or not math.isfinite(value):
            return None
        return round((value - low) / span * (width - 1))

    for row in comparison.rows:
        cells = [" "] * width
        a, b = column(row.original_loss), column(row.migrated_loss)
        if a is not None:
            cells[a] = "o"
        if b is not None:
            cells[b] = "*" if b == a else "m"
        lines.append(f"{row.step:>4} |{''.join(cells)}|")
    return lines


def write_plot(directory: Path, comparison: Comparison, original: RunResult, migrated: RunResult,
               *, png: Optional[bool] = None) -> tuple[Path, list[str]]:
    """The loss plot: a PNG with matplotlib (``png=None``: when importable), else an ASCII chart.

    Returns the written file and the chart's lines (empty for a PNG).
    """
    if png is None:
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            png = False
        else:
            png = True
    if png:
        path = directory / PNG_NAME
        _write_png(path, comparison, original, migrated)
        return path, []
    lines = ascii_chart(comparison)
    path = directory / ASCII_NAME
    with atomic_path(path) as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, lines


def _write_png(path: Path, comparison: Comparison, original: RunResult, migrated: RunResult) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display; never open a window
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(8, 4.5), dpi=100)
    try:
        def series(attr: str) -> tuple[list[int], list[float]]:
            points = [(r.step, getattr(r, attr)) for r in comparison.rows if getattr(r, attr) is not None]
            return [p[0] for p in points], [p[1] for p in points]

        xs, ys = series("original_loss")
        axes.plot(xs, ys, "-o", color="tab:blue", linewidth=3, markersize=6, alpha=0.6, label=original.spec.label)
        xs, ys = series("migrated_loss")
        axes.plot(xs, ys, "--x", color="tab:red", linewidth=1.5, markersize=6, label=migrated.spec.label)
        if comparison.divergence is not None:
            axes.axvline(comparison.divergence.step, color="gray", linestyle=":",
                         label=f"first divergence (step {comparison.divergence.step})")
        from matplotlib.ticker import MaxNLocator

        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_xlabel("optimizer step")
        axes.set_ylabel("loss")
        verdict = "bit-identical" if comparison.passed and comparison.exact else comparison.status
        axes.set_title(f"transplant verify: {verdict}")
        axes.grid(True, alpha=0.3)
        axes.legend()
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, format="png")
    finally:
        plt.close(figure)
