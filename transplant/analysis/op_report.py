"""The operator report of ``transplant run --op-report FILE``: merge, judge, write CSV/JSON, summarise.

Each process of the run left ``ops-<pid>.json`` (see :mod:`transplant.emulate.oprecord`). This module
merges them and draws the findings, each with a stable rule id:

========  ===========================================================================================
TP750     CPU fallback: no NPU kernel in torch_npu 2.13 (its dispatcher fallback runs the op on the CPU)
TP751     CPU fallback inside torch_npu: its NPU kernel routes to the CPU (with torch_npu's own CAUTION)
TP752     float64 compute (the NPU has no or slow double kernels; "Unsupport data type Double")
TP753     int64 where Huawei's FAQ names a kernel without int64 (``Muls``: multiplication by a scalar)
TP754     dynamic shapes: a call site whose input shapes change after the first training step
TP755     host synchronisation: ``.item()``, ``.cpu()``, ``nonzero``, boolean masks, printing, per step
========  ===========================================================================================

Nothing here needs torch: the record is plain JSON.
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from transplant.atomic import atomic_path

__all__ = ["Finding", "OpRow", "OpReport", "load_records", "build", "write", "summary_lines"]

# Operators that move or alias data; a float64 tensor passing through them is not float64 compute.
_MOVEMENT = {
    "_to_copy", "copy_", "clone", "detach", "alias", "view", "_unsafe_view", "as_strided", "expand", "t",
    "transpose", "permute", "unsqueeze", "squeeze", "select", "slice", "lift_fresh", "_local_scalar_dense",
    "set_", "resize_", "empty_like", "_reshape_alias", "print", "_copy_from", "_copy_from_and_resize",
    "is_pinned", "_has_compatible_shallow_copy_type", "zeros_like", "ones_like", "fill_", "zero_", "split",
    "split_with_sizes", "unbind", "cat", "stack", "index", "index_put_", "_pin_memory",
}
# Kernels Huawei's msFmkTransplt FAQ names as having no int64 version: (aten ops, FAQ wording).
_INT64_FAQ = ({"mul"}, "Huawei's FAQ: the Muls kernel (multiplication by a scalar) has no int64 version; "
              "cast to int32 (or compute in float) before multiplying")
# Operators whose output size depends on the data: sources of dynamic shapes on Ascend.
_DATA_DEPENDENT = {"nonzero", "masked_select", "_unique2", "unique_dim", "unique_consecutive",
                   "_pack_padded_sequence", "repeat_interleave"}
SEVERITY_ORDER = {"error": 0, "review": 1, "info": 2}


@dataclass(frozen=True)
class Finding:
    """One row of the findings CSV."""

    rule: str
    kind: str
    severity: str
    op: str                 # operator(s) at the call site, "aten::mm" or "aten::mm, aten::add.Tensor"
    file: str
    line: int
    function: str
    count: int
    per_step: str           # calls per training step ("" when the run took no optimizer step)
    dtypes: str
    shapes: str             # a few example input shapes
    distinct_shapes: int
    tip: str


@dataclass
class OpRow:
    """One operator overload at one call site, merged over processes."""

    op: str
    overload: str
    file: str
    line: int
    function: str
    count: int = 0
    signatures: List[dict] = field(default_factory=list)
    more_signatures: int = 0
    fallback: Optional[str] = None
    fallback_message: str = ""
    fallback_op: str = ""               # the operator torch_npu lacks (a structured op's out= variant)
    sync: str = ""
    order: Tuple[int, int] = (0, 0)     # (process, position of its first call in that process)

    @property
    def qualified(self) -> str:
        return f"{self.op}.{self.overload}" if self.overload and self.overload != "default" else self.op

    @property
    def short(self) -> str:
        return self.op[len("aten::"):] if self.op.startswith("aten::") else self.op


@dataclass
class OpReport:
    processes: int
    steps: int
    ops: List[OpRow]
    findings: List[Finding]

    def to_json(self) -> dict:
        return {
            "processes": self.processes,
            "steps": self.steps,
            "findings": [asdict(f) for f in self.findings],
            "ops": [dict(asdict(o), qualified=o.qualified) for o in self.ops],
        }


def load_records(directory: Path) -> List[dict]:
    """The raw per-process records in ``directory``, in a fixed order (by pid)."""
    records = []
    for path in sorted(directory.glob("ops-*.json"), key=lambda p: int(p.stem.split("-")[1])):
        try:
            records.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue  # a process killed while writing: its record is lost, the others still count
    return records


#: How a call with no frame of the user's code on the stack (the backward pass) is shown.
NO_USER_FRAME = "<backward pass or torch internals>"


def _relative(path: str, base: Optional[Path]) -> str:
    if not path or base is None:
        return path
    try:
        return os.path.relpath(path, base) if Path(path).resolve().is_relative_to(base.resolve()) else path
    except (ValueError, OSError):
        return path


def _dtypes(row: OpRow) -> List[str]:
    seen: List[str] = []
    for sig in row.signatures:
        for d in _flat(sig["inputs"]):
            if "dtype" in d and d["dtype"] not in seen:
                seen.append(d["dtype"])
    return seen


def _flat(inputs: Iterable) -> Iterable[dict]:
    for item in inputs:
        if isinstance(item, dict):
            yield item
        else:
            yield from _flat(item)


def _shape_text(sig: dict) -> str:
    parts = []
    for item in sig["inputs"]:
        if isinstance(item, dict) and "shape" in item:
            parts.append("[" + ",".join(str(n) for n in item["shape"]) + "]")
        elif isinstance(item, list):
            parts.append(f"{len(item)}x tensors")
    return "(" + ", ".join(parts) + ")"


def build(records: Sequence[dict], *, base: Optional[Path] = None) -> OpReport:
    """Merge the processes' records and draw the findings (deterministic order)."""
    rows: Dict[Tuple[str, str, str, int], OpRow] = {}
    steps = 0
    for process, record in enumerate(records):
        steps = max(steps, int(record.get("steps", 0)))
        for raw in record.get("ops", ()):
            key = (raw["op"], raw["overload"], raw["file"], raw["line"])
            row = rows.get(key)
            if row is None:
                row = rows[key] = OpRow(op=raw["op"], overload=raw["overload"], file=_relative(raw["file"], base),
                                        line=raw["line"], function=raw["function"] or (NO_USER_FRAME if not raw["file"] else ""),
                                        fallback=raw.get("fallback"),
                                        fallback_message=raw.get("fallback_message", ""),
                                        fallback_op=raw.get("fallback_op", ""), sync=raw.get("sync", ""),
                                        order=(process, raw.get("order", 0)))
            row.count += raw["count"]
            known = {json.dumps(s["inputs"], sort_keys=True): s for s in row.signatures}
            for sig in raw["signatures"]:
                text = json.dumps(sig["inputs"], sort_keys=True)
                if text in known:
                    known[text]["count"] += sig["count"]
                    known[text]["first_step"] = min(known[text]["first_step"], sig["first_step"])
                else:
                    copy = dict(sig)
                    row.signatures.append(copy)
                    known[text] = copy
            row.more_signatures += raw.get("more_signatures", 0)
    ops = sorted(rows.values(), key=lambda r: (r.qualified, r.file, r.line))
    # a process that never touched an npu tensor (the torchrun launcher, a helper) is not counted
    processes = sum(1 for record in records if record.get("ops"))
    return OpReport(processes=processes, steps=steps, ops=ops, findings=_findings(ops, steps))


def _per_step(count: int, steps: int) -> str:
    return f"{count / steps:.2f}" if steps else ""


def _site(rows: List[OpRow]) -> Tuple[str, int, str]:
    return rows[0].file, rows[0].line, rows[0].function


def _findings(ops: List[OpRow], steps: int) -> List[Finding]:
    findings: List[Finding] = []
    # Fallbacks: one row per operator (its first call site), as torch_npu warns once per operator.
    by_op: Dict[str, List[OpRow]] = {}
    for row in ops:
        if row.fallback:
            by_op.setdefault(row.fallback_op or row.qualified, []).append(row)
    for name, rows in sorted(by_op.items()):
        rows.sort(key=lambda r: -r.count)
        total = sum(r.count for r in rows)
        first = rows[0]
        explicit = first.fallback == "explicit"
        tip = (f"{first.fallback_message} " if first.fallback_message else "") + (
            "torch_npu 2.13 has no NPU kernel for this operator: each call copies its inputs to the host, runs on "
            "the CPU and copies back. Replace the call with an equivalent built from supported operators, or "
            "keep it out of the training step." if not explicit else
            "torch_npu 2.13 registers this operator but its kernel runs it on the CPU (the message above is "
            "torch_npu's own). Use the NPU-native alternative (e.g. fused=False / foreach optimizers, "
            "torch_npu.optim.NpuFused*) or avoid the operator in the training step.")
        sites = "; ".join(f"{r.file}:{r.line}" for r in rows[1:4])
        if sites:
            tip += f" Also called at: {sites}."
        findings.append(_finding("TP751" if explicit else "TP750", "cpu-fallback", "error", name, first, total,
                                 steps, tip, rows))
    for row in ops:
        dtypes = _dtypes(row)
        if "float64" in dtypes and row.short.split(".")[0] not in _MOVEMENT:
            findings.append(_finding(
                "TP752", "dtype", "review", row.qualified, row, row.count, steps,
                "float64 compute: the NPU has no or slow double-precision kernels (Huawei's FAQ: \"Unsupport data "
                "type Double\"). Create the tensor as float32 (numpy arrays are float64: torch.from_numpy(a).float()"
                ", torch.tensor(..., dtype=torch.float32)) or cast it with .float() before it reaches the NPU.",
                [row]))
        ops_named, tip = _INT64_FAQ
        if row.short.split(".")[0].rstrip("_") in ops_named and _first_input_dtype(row) == "int64":
            findings.append(_finding("TP753", "dtype", "review", row.qualified, row, row.count, steps, tip, [row]))
    # Dynamic shapes: per call site, new input shapes after the site's first training step. Sites where the
    # shapes enter the NPU (a host-to-device copy) or arise there (data-dependent outputs) are the causes to
    # act on; the sites downstream of them only follow, and are listed as info.
    sites: Dict[Tuple[str, int], List[OpRow]] = {}
    for row in ops:
        sites.setdefault((row.file, row.line), []).append(row)
    dynamic: List[Tuple[Tuple[int, int], str, Finding]] = []
    for (file, line), rows in sites.items():
        if not file:
            continue  # the backward pass (autograd's thread): its shapes follow the forward call sites'
        late, distinct, source, upload = 0, 0, None, None
        for row in rows:
            if not row.signatures:
                continue
            start = min(s["first_step"] for s in row.signatures)
            row_late = sum(1 for s in row.signatures if s["first_step"] > start) + row.more_signatures
            if row_late > late:
                late = row_late
            distinct = max(distinct, len(row.signatures) + row.more_signatures)
            if row.short.split(".")[0] in _DATA_DEPENDENT or row.sync.startswith("boolean-mask"):
                source = row
            elif row.short == "_to_copy" and _uploads(row):
                upload = row
        if late == 0 and (source is None or steps == 0):
            continue
        rows.sort(key=lambda r: r.order)
        names = ", ".join(dict.fromkeys(r.qualified for r in rows if r.signatures))
        role = "cause"
        if source is not None:
            tip = (f"{source.qualified} produces a data-dependent shape: everything after it is compiled again for "
                   "each new size on Ascend. Pad to a fixed size or a few bucket sizes (and mask) instead.")
        elif upload is not None and late > 1:
            tip = (f"the tensors copied to the NPU here change shape from step to step ({late} new shapes after the "
                   "first step): the data pipeline makes them (per-batch truncation or padding to the longest "
                   "sequence in a collate_fn, variable image sizes). Each new shape recompiles every operator "
                   "downstream on Ascend: pad to a fixed length or a few bucket sizes.")
        elif late == 1:
            tip = ("one new input shape after the first step: typically the smaller last batch of an epoch or an "
                   "evaluation batch; use DataLoader(drop_last=True) or pad the last batch to avoid a recompilation.")
        else:
            role = "follows"
            tip = (f"{late} new input shapes after the first step: each is a graph recompilation on Ascend. Pad "
                   "sequences to a fixed length (or a few buckets) instead of truncating per batch; if shapes must "
                   "vary, call torch_npu.npu.set_compile_mode(jit_compile=False) at start-up.")
        first = rows[0]
        examples = list(dict.fromkeys(_shape_text(sig) for row in rows for sig in row.signatures))
        count = sum(r.count for r in rows)
        finding = Finding(
            rule="TP754", kind="dynamic-shape", severity="review", op=names, file=file, line=line,
            function=first.function, count=count, per_step=_per_step(count, steps),
            dtypes=", ".join(dict.fromkeys(d for r in rows for d in _dtypes(r))),
            shapes="; ".join(examples[:4]) + ("; ..." if len(examples) > 4 else ""), distinct_shapes=distinct,
            tip=tip)
        dynamic.append((first.order, role, finding))
    dynamic.sort(key=lambda item: item[0])
    causes = [f for _, role, f in dynamic if role == "cause"]
    for _, role, finding in dynamic:
        if role == "follows" and causes:
            cause = causes[0]
            finding = replace(finding, severity="info", tip=(
                f"{finding.tip.split(':')[0]}: these follow from the dynamic shapes entering at "
                f"{cause.file}:{cause.line}; fixing that site fixes this one."))
        findings.append(finding)
    # Host syncs: per call site.
    for (file, line), rows in sites.items():
        syncing = [r for r in rows if r.sync]
        if not syncing:
            continue
        count = sum(r.count for r in syncing)
        kinds = "; ".join(dict.fromkeys(r.sync for r in syncing))
        tip = (f"{kinds}: the host waits for the NPU queue to drain ({_per_step(count, steps) or count} per "
               f"{'step' if steps else 'run'}). Keep values on the device (accumulate losses as tensors, log every "
               "N steps, avoid data-dependent shapes) and read them back once.")
        findings.append(Finding(
            rule="TP755", kind="host-sync", severity="review" if steps and count >= steps else "info",
            op=", ".join(dict.fromkeys(r.qualified for r in syncing)), file=file, line=line,
            function=syncing[0].function, count=count, per_step=_per_step(count, steps),
            dtypes=", ".join(dict.fromkeys(d for r in syncing for d in _dtypes(r))), shapes="",
            distinct_shapes=max(len(r.signatures) for r in syncing), tip=tip))
    position = {id(f): i for i, f in enumerate(findings)}
    findings.sort(key=lambda f: (SEVERITY_ORDER[f.severity], f.rule,
                                 position[id(f)] if f.rule == "TP754" else -f.count, f.file, f.line, f.op))
    return findings


def _uploads(row: OpRow) -> bool:
    """A ``_to_copy`` from the host onto the NPU (``.to(device)``, ``.npu()``)."""
    for sig in row.signatures:
        inputs = sig["inputs"]
        if any(isinstance(i, dict) and i.get("device") == "cpu" for i in inputs) and any(
                isinstance(i, dict) and str(i.get("device_arg", "")).startswith("npu") for i in inputs):
            return True
    return False


def _first_input_dtype(row: OpRow) -> str:
    for sig in row.signatures:
        for item in sig["inputs"]:
            if isinstance(item, dict) and "dtype" in item:
                return item["dtype"]
    return ""


def _finding(rule: str, kind: str, severity: str, op: str, row: OpRow, count: int, steps: int, tip: str,
             rows: List[OpRow]) -> Finding:
    dtypes = ", ".join(dict.fromkeys(d for r in rows for d in _dtypes(r)))
    examples = list(dict.fromkeys(_shape_text(s) for r in rows for s in r.signatures))
    return Finding(rule=rule, kind=kind, severity=severity, op=op, file=row.file, line=row.line,
                   function=row.function, count=count, per_step=_per_step(count, steps), dtypes=dtypes,
                   shapes="; ".join(examples[:4]) + ("; ..." if len(examples) > 4 else ""),
                   distinct_shapes=max((len(r.signatures) + r.more_signatures for r in rows), default=0), tip=tip)


FINDING_COLUMNS = ["Rule", "Kind", "Severity", "OP", "File", "Line", "Function", "Count", "Per Step",
                   "Input Dtypes", "Input Shapes", "Distinct Shapes", "Tips"]
OP_COLUMNS = ["OP", "File", "Line", "Function", "Count", "Input Dtypes", "Input Shapes", "Distinct Shapes",
              "CPU Fallback", "Host Sync"]


def _csv(rows: Iterable[Sequence[object]], header: Sequence[str]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def paths_for(target: Path) -> Tuple[Path, Path, Path]:
    """``(findings CSV, JSON, all-operators CSV)`` for ``--op-report target``."""
    stem = target.with_suffix("") if target.suffix.lower() in (".csv", ".json") else target
    findings = target if target.suffix.lower() == ".csv" else stem.with_name(stem.name + ".csv")
    return findings, stem.with_name(stem.name + ".json"), stem.with_name(stem.name + "_ops.csv")


def write(report: OpReport, target: Path) -> Tuple[Path, Path, Path]:
    """Write the findings CSV, the JSON and the all-operators CSV atomically; returns their paths."""
    findings_path, json_path, ops_path = paths_for(target)
    findings = _csv(([f.rule, f.kind, f.severity, f.op, f.file, f.line, f.function, f.count, f.per_step, f.dtypes,
                      f.shapes, f.distinct_shapes, f.tip] for f in report.findings), FINDING_COLUMNS)
    ops = _csv(([o.qualified, o.file, o.line, o.function, o.count, ", ".join(_dtypes(o)),
                 "; ".join(list(dict.fromkeys(_shape_text(s) for s in o.signatures))[:4]),
                 len(o.signatures) + o.more_signatures, o.fallback or "", o.sync] for o in report.ops), OP_COLUMNS)
    for path, text in ((findings_path, findings), (json_path, json.dumps(report.to_json(), indent=1) + "\n"),
                       (ops_path, ops)):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_text(text, encoding="utf-8")
    return findings_path, json_path, ops_path


def summary_lines(report: OpReport, written: Sequence[Path] = (), *, top: int = 5) -> List[str]:
    """The stderr summary: totals, then the top offenders per finding kind with their call sites."""
    calls = sum(o.count for o in report.ops)
    names = len({o.qualified for o in report.ops})
    lines = [f"op report: {names} operator(s), {calls} call(s) on npu tensors, {report.steps} training step(s), "
             f"{report.processes} process(es)"]
    groups = [("TP750", "TP751"), ("TP752", "TP753"), ("TP754",), ("TP755",)]
    titles = ["CPU fallback", "dtypes the NPU handles poorly", "dynamic shapes", "host syncs"]
    for rules, title in zip(groups, titles):
        rows = [f for f in report.findings if f.rule in rules]
        if not rows:
            lines.append(f"  {title}: none")
            continue
        lines.append(f"  {title}: {len(rows)} finding(s)")
        if title == "host syncs":
            rows = sorted(rows, key=lambda f: (-f.count, f.file, f.line))
        for f in rows[:top]:
            rate = f", {f.per_step}/step" if f.per_step else ""
            where = f"{f.file}:{f.line} ({f.function})" if f.file else NO_USER_FRAME
            lines.append(f"    {f.rule} {f.op[:60]}  {f.count} call(s){rate}  at {where}")
        if len(rows) > top:
            lines.append(f"    ... {len(rows) - top} more in the report")
    for path in written:
        lines.append(f"  wrote {path}")
    return lines
