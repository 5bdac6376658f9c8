"""Static API analysis of a project (part of every ``transplant -i`` run unless ``--no-analysis``).

Every torch call (resolved by :mod:`transplant.analysis.resolve`) is classified from the facts:

* reported or rewritten by a migration rule on the same line: left to change_list.csv/unsupported_api.csv;
* in Huawei's unsupported list for torch 2.8 (``op_list_2_8.json``, all tips empty): ``TP702`` *info* when
  every aten operator it reaches has an NPU kernel in torch_npu 2.13 (``huawei_unsupported_review.json``,
  checked against the wheel's registry by the tests), else ``TP701`` *review* with a tip of what to do;
* in neither of Huawei's lists: ``TP703`` *info* (msFmkTransplt's "support questionable");
* Huawei's precision advice: ``TP710`` (*review* only where the advice names a concrete failure and fix);
* Huawei's performance advice, checked against torch_npu 2.13: ``TP720`` fused optimizers (*info*), ``TP721``
  ``fused=True`` optimizers whose fused kernel torch_npu runs on the CPU, ``TP722`` anomaly detection,
  ``TP723`` argument advice (DataLoader, DDP), ``TP724`` project-wide configuration hints, ``TP725``
  ``nn.Linear`` (Huawei's NpuLinear advice);
* ``TP730`` calls with a torch_npu "affinity" replacement (``torch_npu.contrib``/``torch_npu.npu_*``).

Rows carry msFmkTransplt's columns first, then ``Rule``, ``Severity`` and ``Source`` (which list, which
version). Nothing here imports torch or the rewriter.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from transplant.analysis.facts import (ADVICE_LIST, HUAWEI_TORCH, SUPPORTED_LIST, UNSUPPORTED_LIST, huawei_lists,
                                       npu_ops)
from transplant.analysis.resolve import ApiCall, resolve_calls

__all__ = ["AnalysisRow", "analyse_source", "project_rows", "UNKNOWN", "PRECISION", "PERFORMANCE", "AFFINITY"]

UNKNOWN = "unknown_api.csv"
PRECISION = "api_precision_advice.csv"
PERFORMANCE = "api_performance_advice.csv"
AFFINITY = "affinity_api_call.csv"
_DATA = Path(__file__).resolve().parent.parent / "data"
_NPU = f"torch_npu {npu_ops().version}"


@dataclass(frozen=True)
class AnalysisRow:
    """One row of one of the analysis CSVs."""

    report: str          # which CSV
    file: str            # POSIX path relative to SRC, or "NA" for a project-wide hint
    line: int            # 0 with file "NA"
    end_line: int
    op: str
    tip: str             # never empty
    rule: str
    severity: str        # "review" | "info"
    source: str          # which list (and version) the row comes from
    api_type: str = ""   # affinity_api_call.csv only
    affinity: str = ""   # affinity_api_call.csv only


@lru_cache(maxsize=1)
def _review_table() -> dict:
    return json.loads((_DATA / "huawei_unsupported_review.json").read_text(encoding="utf-8"))


_HUAWEI_UNSUPPORTED = f"Huawei msFmkTransplt {UNSUPPORTED_LIST} (torch {HUAWEI_TORCH}, no reason given)"
_HUAWEI_ADVICE = f"Huawei msFmkTransplt {ADVICE_LIST}"
_REGISTRY = f"{_NPU} operator registry (npu_ops.json)"

# What to do about a Huawei-unsupported API we cannot show to work, by name prefix (first match wins).
_REVIEW_TIPS: Tuple[Tuple[str, str], ...] = (
    ("torch.compile", "torch.compile's default inductor backend generates CUDA/CPU code; on Ascend compile with "
                      "torch_npu's torchair backend or run the model eagerly (remove the call)"),
    ("torch.compiler.", "compiler controls for inductor; on Ascend they only matter with torchair: remove them or "
                        "keep them behind a device check"),
    ("torch.nn.DataParallel", "single-process multi-device DataParallel does not run on NPUs: use "
                              "DistributedDataParallel with one process per NPU (run_distributed_npu.sh)"),
    ("torch.nn.parallel.data_parallel", "single-process multi-device data_parallel does not run on NPUs: use "
                                        "DistributedDataParallel with one process per NPU"),
    ("torch.jit.", "TorchScript is not supported by torch_npu (transfer_to_npu disables jit.script): run the "
                   "module eagerly"),
    ("torch.utils.cpp_extension", "a C++/CUDA extension built at run time: its CUDA kernels must be ported "
                                  "(see cuda_op_list.csv) or the code path kept on the CPU"),
    ("torch.func.", "functorch transforms are not supported on NPU per Huawei: check the path with "
                    "`transplant run --op-report`, or batch explicitly"),
    ("torch.backends.cuda.", "CUDA backend switches have no effect on NPU: remove them (torch_npu picks its fused "
                             "attention itself)"),
    ("torch.cuda.", "a CUDA-only API with no NPU counterpart: remove it or guard it with torch.cuda.is_available()"),
    ("torch.distributed.elastic.rendezvous.etcd", "etcd rendezvous is not supported with hccl: use the c10d "
                                                  "rendezvous (torchrun's default)"),
    ("torch.export", "torch.export is not supported on NPU per Huawei: export on the CPU"),
    ("torch.onnx", "ONNX export helpers: export on the CPU, then convert with Ascend's ATC tool"),
    ("torch.sparse", "sparse tensors are not supported on NPU: keep them on the CPU or use dense tensors"),
    ("torch.Tensor.to_sparse", "sparse layouts are not supported on NPU: keep sparse tensors on the CPU"),
    ("torch.quantize", "eager quantization kernels are CPU/CUDA only: quantize on the CPU"),
    ("torch.ao.", "eager quantization modules are CPU/CUDA only: quantize on the CPU"),
    ("torch.profiler.itt", "Intel ITT markers do nothing on Ascend: remove them (use torch_npu.profiler)"),
    ("torch.autograd.profiler.emit", "NVTX/ITT ranges do nothing on Ascend: use torch_npu.npu.mstx or "
                                     "torch_npu.profiler"),
    ("torch.utils.dlpack", "DLPack exchange of npu tensors is not supported: go through the CPU"),
    ("torch.from_dlpack", "DLPack exchange of npu tensors is not supported: go through the CPU"),
)
_REVIEW_DEFAULT = ("no torch_npu 2.13 kernel could be matched to it: run the code path under `transplant run "
                   "--op-report` (a CPU fallback or an error shows there) and replace the call if it falls back")

# Huawei's precision advice that names a concrete failure and fix; the rest is generic ("may have an issue").
_PRECISION_REVIEW = {"torch.baddbmm"}
# Optimizer classes whose fused=True path runs the fused aten kernel named here.
_FUSED_KERNELS = {"torch.optim.Adam": "_fused_adam_", "torch.optim.AdamW": "_fused_adamw_",
                  "torch.optim.SGD": "_fused_sgd_", "torch.optim.Adagrad": "_fused_adagrad_"}
_ANOMALY = {"torch.autograd.set_detect_anomaly", "torch.autograd.detect_anomaly", "torch.autograd.gradcheck"}
# torch API -> (affinity API in torch_npu 2.13, Api Type as msFmkTransplt names it, what to watch).
_AFFINITY: Dict[str, Tuple[str, str, str]] = {
    "torch.nn.MultiheadAttention": ("torch_npu.contrib.module.MultiheadAttention", "class",
                                    "fused NPU attention; check the constructor arguments it accepts"),
    "torch.nn.functional.scaled_dot_product_attention": ("torch_npu.npu_fusion_attention", "function",
                                                         "takes head_num and input_layout; scale and masks differ"),
    "torch.nn.functional.gelu": ("torch_npu.npu_fast_gelu", "function", "an approximation: compare accuracy"),
    "torch.nn.GELU": ("torch_npu.npu_fast_gelu", "class", "an approximation: compare accuracy"),
    "torch.nn.SiLU": ("torch_npu.contrib.module.SiLU", "class", "same result, one fused kernel"),
    "torch.nn.Mish": ("torch_npu.contrib.module.Mish", "class", "same result, one fused kernel"),
    "torch.nn.RMSNorm": ("torch_npu.npu_rms_norm", "class", "returns (output, rstd)"),
    "torch.roll": ("torch_npu.contrib.function.roll", "torch", "faster for the shift patterns it supports"),
    "torchvision.ops.nms": ("torch_npu.npu_nms_v4", "special", "different argument order and outputs"),
    "torchvision.ops.batched_nms": ("torch_npu.contrib.function.npu_batched_multiclass_nms", "special",
                                    "different argument order and outputs"),
    "torchvision.ops.roi_align": ("torch_npu.contrib.module.ROIAlign", "special", "a module, not a function"),
    "torchvision.ops.RoIAlign": ("torch_npu.contrib.module.ROIAlign", "special", "same arguments"),
    "torchvision.ops.box_iou": ("torch_npu.contrib.function.npu_iou", "special", "boxes in the same format"),
}


def _review_tip(name: str) -> str:
    for prefix, tip in _REVIEW_TIPS:
        if name.startswith(prefix):
            return tip
    return _REVIEW_DEFAULT


def _keyword(call: ApiCall, name: str) -> Optional[str]:
    for key, value in call.keywords:
        if key == name:
            return value
    return None


def _row(report: str, path: str, call: ApiCall, op: str, tip: str, rule: str, severity: str, source: str,
         **extra: str) -> AnalysisRow:
    return AnalysisRow(report=report, file=path, line=call.line, end_line=call.end_line, op=op, tip=tip, rule=rule,
                       severity=severity, source=source, **extra)


def classify_call(path: str, call: ApiCall) -> List[AnalysisRow]:
    """The analysis rows for one call (possibly none: a supported API without advice)."""
    lists = huawei_lists()
    name = call.name
    rows: List[AnalysisRow] = []
    table = _review_table()
    if name in lists.unsupported:
        works = table["works"].get(name)
        fused_adam = name == "torch.optim.Adam.step"  # judged at the constructor (TP721)
        if works is not None:
            kernels = ", ".join(f"aten::{op}" for op in works["aten"])
            tip = (f"Huawei lists it as unsupported on NPU for torch {HUAWEI_TORCH} without a reason, but every "
                   f"aten operator it reaches runs on the NPU in {_NPU} ({kernels}: NPU kernels or composites of "
                   "them); nothing to change")
            if works.get("unless") and not fused_adam:
                tip += f" unless {works['unless']}"
            if works.get("note"):
                tip += f"; {works['note']}"
            rows.append(_row(UNKNOWN, path, call, name, tip, "TP702", "info",
                             f"{_HUAWEI_UNSUPPORTED}; {_REGISTRY}"))
        else:
            missing = table["falls_back"].get(name)
            if missing is not None:
                ops = ", ".join(f"aten::{op}" for op in missing["aten"])
                tip = (f"{_NPU} has no NPU kernel for {ops}: it runs on the CPU through torch_npu's fallback (slow, "
                       "and an error with TORCH_NPU_FALLBACK_CPU_DISABLE=1); replace it or keep it out of the "
                       "training step")
                source = f"{_HUAWEI_UNSUPPORTED}; {_REGISTRY}"
            else:
                tip = f"Huawei lists it as unsupported on NPU (torch {HUAWEI_TORCH}); {_review_tip(name)}"
                source = _HUAWEI_UNSUPPORTED
            rows.append(_row(UNKNOWN, path, call, name, tip, "TP701", "review", source))
    elif name not in lists.supported and name.startswith("torch.") and not call.via_receiver:
        rows.append(_row(UNKNOWN, path, call, name,
                         f"in neither of Huawei's lists for torch {HUAWEI_TORCH} (support questionable); if the code "
                         "path matters, run it under `transplant run --op-report` to see what it does on the NPU",
                         "TP703", "info", f"Huawei msFmkTransplt {SUPPORTED_LIST} and {UNSUPPORTED_LIST}"))
    if name in lists.precision:
        review = name in _PRECISION_REVIEW
        tip = lists.precision[name] + ("" if review else
                                       " (Huawei's generic advice: no condition given; compare with a CPU run "
                                       "only if results differ)")
        rows.append(_row(PRECISION, path, call, name, tip, "TP710", "review" if review else "info", _HUAWEI_ADVICE))
    rows.extend(_performance(path, call))
    affinity = _AFFINITY.get(name)
    if affinity is not None:
        target, api_type, watch = affinity
        rows.append(_row(AFFINITY, path, call, name,
                         f"{target} is torch_npu's fused NPU version ({watch}); optional, for speed", "TP730", "info",
                         f"{_NPU} public names (torch_npu_names.json)", api_type=api_type, affinity=target))
    return rows


def _performance(path: str, call: ApiCall) -> List[AnalysisRow]:
    lists = huawei_lists()
    name = call.name
    rows: List[AnalysisRow] = []
    ops = npu_ops()
    fused = _FUSED_KERNELS.get(name)
    fused_on = (_keyword(call, "fused") or "").strip() == "True"
    if fused is not None and fused_on:
        explicit = ops.explicit_cpu_message(fused, "")
        if explicit or not ops.has_kernel(fused, ""):
            why = "its own CAUTION: runs on the CPU" if explicit else "no NPU kernel: CPU fallback"
            rows.append(_row(PERFORMANCE, path, call, name,
                             f"fused=True runs aten::{fused} ({_NPU}: {why}); drop fused=True (the foreach "
                             f"implementation runs on the NPU) or use torch_npu.optim.NpuFused{name.rsplit('.', 1)[1]}",
                             "TP721", "review", _REGISTRY))
    if name in lists.performance and name.startswith("torch.optim.") and not fused_on:
        # (with fused=True the fused kernel runs already, on the NPU or flagged TP721 above)
        short = name.rsplit(".", 1)[1]
        target = f"torch_npu.optim.NpuFused{short}"
        tip = (f"{target} is torch_npu's fused optimizer (faster; Huawei notes up to 70% more optimizer memory); "
               "rerun transplant with --npu-fused-optimizers to switch where the arguments are equivalent")
        # info: an optional speed/memory trade-off (Huawei's advice), not something that breaks on the NPU
        rows.append(_row(PERFORMANCE, path, call, name, tip, "TP720", "info", f"{_HUAWEI_ADVICE}; {_NPU} optim"))
    elif name in _ANOMALY:
        rows.append(_row(PERFORMANCE, path, call, name, lists.performance.get(name, "") or
                         "anomaly checks slow every step: remove them from training runs", "TP722", "review",
                         _HUAWEI_ADVICE))
    elif name == "torch.nn.Linear":
        rows.append(_row(PERFORMANCE, path, call, name,
                         "Huawei suggests an NpuLinear wrapper around torch_npu.npu_linear; in torch_npu 2.13 "
                         "nn.Linear already runs the NPU's addmm/mm kernels, so only try it if profiling shows "
                         "the linear layers dominate", "TP725", "info", _HUAWEI_ADVICE))
    for param, rule in lists.parameters.get(name, {}).items():
        value = _keyword(call, param)
        expected, unexpected = rule.get("expected_value"), rule.get("unexpected_value")
        shown = value if value is not None else rule.get("default_value", "")
        if (expected is not None and shown.strip() != expected) or (unexpected is not None and shown.strip() == unexpected):
            if value is None and call.positional > min(rule.get("parameter_idx", [99])):
                continue  # passed positionally: we cannot tell
            rows.append(_row(PERFORMANCE, path, call, f"{name}({param}={shown})", rule["msg"].split("\n")[0],
                             "TP723", "info", _HUAWEI_ADVICE))
    return rows


def analyse_source(source: str, path: str, *, covered: Iterable[Tuple[int, str]] = ()) -> List[AnalysisRow]:
    """The analysis rows of one file. ``covered``: (line, text) of the migration's own rows for this file.

    Raises SyntaxError for a file that does not parse (the migration reports those already).
    """
    return analyse_calls(resolve_calls(source), path, covered=covered)


def analyse_calls(calls: Sequence[ApiCall], path: str, *, covered: Iterable[Tuple[int, str]] = ()) -> List[AnalysisRow]:
    """The analysis rows of one file's resolved calls (see :func:`analyse_source`)."""
    handled: Dict[int, List[str]] = {}
    for line, text in covered:
        handled.setdefault(line, []).append(text)
    rows: List[AnalysisRow] = []
    for call in calls:
        tail = call.name.rsplit(".", 1)[-1]
        if any(tail in text or text == call.name for text in handled.get(call.line, ())):
            continue  # a migration rule rewrote or reported this call: change_list/unsupported_api have it
        rows.extend(classify_call(path, call))
    return rows


def project_rows(files: Sequence[Tuple[str, str, Iterable[Tuple[int, str]]]]) -> List[AnalysisRow]:
    """Rows for a whole project: ``files`` = (relative path, source, covered) in SRC's sorted order.

    Adds msFmkTransplt's project-wide hints (``File = NA``) when the project trains with torch at all.
    """
    rows: List[AnalysisRow] = []
    uses_ddp = uses_dist = False
    for path, source, covered in files:
        try:
            calls = resolve_calls(source)
        except (SyntaxError, ValueError):
            continue  # the migration reports unparseable files already
        rows.extend(analyse_calls(calls, path, covered=covered))
        uses_ddp = uses_ddp or any(c.name == "torch.nn.parallel.DistributedDataParallel" for c in calls)
        uses_dist = uses_dist or any(c.name.startswith("torch.distributed.") for c in calls)
    if rows or uses_ddp:
        lists = huawei_lists()
        hints = []
        if uses_ddp:
            hints.append(("no_sync", "DistributedDataParallel is used: with gradient accumulation, wrap the "
                                     "accumulation steps in model.no_sync() to skip their all-reduce"))
        for key, text in sorted(lists.configuration.items()):
            if key.startswith("HCCL_") and not (uses_ddp or uses_dist):
                continue  # a collective-communication setting: only for distributed training
            hints.append((key, text.split("\n")[0]))
        for op, tip in hints:
            rows.append(AnalysisRow(report=PERFORMANCE, file="NA", line=0, end_line=0, op=op, tip=tip, rule="TP724",
                                    severity="info", source=_HUAWEI_ADVICE))
    return rows
