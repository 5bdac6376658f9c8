"""``transplant run --op-report``: record every aten operator that reaches an npu tensor in this process.

Started by the emulator's activation when ``TRANSPLANT_OP_REPORT_DIR`` is set (the runner sets it for the
script and every child it starts). Per operator overload and first call site in the user's code it keeps
the call count, the input dtypes and shapes (each shape with the training step it first appeared in), and
whether the call forces a host synchronisation. Training steps are counted with a global optimizer
step hook. At interpreter exit the raw record is written to ``<dir>/ops-<pid>.json``;
:mod:`transplant.analysis.op_report` merges the processes' files and draws the findings.

The per-call work is a frame walk to the first user frame (cached per file name) and a tuple of the tensor
arguments' dtypes and shapes; everything else happens once per operator, at exit.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import sysconfig
from typing import Any, Dict, List, Optional, Tuple

import torch

from transplant.emulate import fallback, tensor

__all__ = ["start", "Recorder", "ENV_DIR"]

ENV_DIR = "TRANSPLANT_OP_REPORT_DIR"
_MAX_SHAPES = 64          # distinct input signatures kept per (op, call site); more are only counted
_Tensor = torch.Tensor
_NpuTensor = tensor.NpuTensor
_CPU_TYPE = "cpu"

# Operators whose result the host must wait for (a device->host copy or a data-dependent output size).
_SYNC_OPS = {
    "_local_scalar_dense": "item()/float()/bool() on an npu tensor",
    "nonzero": "nonzero (data-dependent output size)",
    "masked_select": "masked_select (data-dependent output size)",
    "_unique2": "unique (data-dependent output size)",
    "unique_dim": "unique (data-dependent output size)",
    "unique_consecutive": "unique_consecutive (data-dependent output size)",
    "repeat_interleave": "repeat_interleave with tensor repeats (data-dependent output size)",
}


def _site_filter():
    torch_dir = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
    transplant_dir = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
    library = {os.path.abspath(p) + os.sep for key in ("stdlib", "platstdlib", "purelib", "platlib")
               if (p := sysconfig.get_paths().get(key))}

    def is_user(filename: str) -> bool:
        if filename.startswith("<") or filename.startswith(torch_dir) or filename.startswith(transplant_dir):
            return False
        path = os.path.abspath(filename)
        return not any(path.startswith(root) for root in library)

    return is_user


class Recorder:
    """What one process saw; see the module docstring."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.entries: Dict[Tuple[Any, Any], list] = {}   # (func, code|None, line) -> [count, {sig: [first_step, n]}, overflow]
        self.steps: Dict[int, int] = {}                   # id(optimizer) -> steps taken
        self.step = 0
        self._user: Dict[str, bool] = {}
        self._is_user = _site_filter()
        self._getframe = sys._getframe

    # -- per call ---------------------------------------------------------------------------------
    def record(self, func: Any, args: tuple, kwargs: Optional[dict] = None) -> None:
        """Count one call of ``func`` (an OpOverload, or ``"print"`` for printing a tensor)."""
        frame = self._getframe(1).f_back  # the caller of the kernel (may be None in autograd's thread)
        user = self._user
        while frame is not None:
            code = frame.f_code
            known = user.get(code.co_filename)
            if known is None:
                known = user[code.co_filename] = self._is_user(code.co_filename)
            if known:
                break
            frame = frame.f_back
        if frame is None:
            key = (func, None, 0)
        else:
            key = (func, frame.f_code, frame.f_lineno)
        sig = []
        for a in args:
            if isinstance(a, _Tensor):
                sig.append((a.dtype, tuple(a.shape), a.device.type))
            elif type(a) is list or type(a) is tuple:
                if a and isinstance(a[0], _Tensor):
                    sig.append(tuple((b.dtype, tuple(b.shape), b.device.type) for b in a if isinstance(b, _Tensor)))
        if kwargs:
            device = kwargs.get("device")
            if device is not None:
                sig.append(("device", str(device)))
        sig = tuple(sig)
        entry = self.entries.get(key)
        if entry is None:
            entry = self.entries[key] = [0, {}, 0]
        entry[0] += 1
        shapes = entry[1]
        seen = shapes.get(sig)
        if seen is not None:
            seen[1] += 1
        elif len(shapes) < _MAX_SHAPES:
            shapes[sig] = [self.step, 1]
        else:
            entry[2] += 1

    def optimizer_step(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        taken = self.steps[id(optimizer)] = self.steps.get(id(optimizer), 0) + 1
        if taken > self.step:
            self.step = taken

    # -- at exit ----------------------------------------------------------------------------------
    def snapshot(self) -> dict:
        """The raw record as JSON-ready data (see transplant.analysis.op_report for its use)."""
        ops: List[dict] = []
        for order, ((func, code, line), (count, shapes, overflow)) in enumerate(self.entries.items()):
            if isinstance(func, str):
                name, overload, kind, message, blamed = func, "", None, "", ""
            else:
                name, overload = func._schema.name, func._overloadname
                found = fallback.classify(func)
                kind, message = found if found else (None, "")
                qualified = f"{name}.{overload}" if overload and overload != "default" else name
                blamed = fallback.blamed_op(message, qualified) if found else ""
            calls = []
            for sig, (first, n) in shapes.items():
                calls.append({"inputs": [_describe(s) for s in sig], "first_step": first, "count": n})
            ops.append({
                "op": name,
                "overload": overload,
                "file": code.co_filename if code is not None else "",
                "line": line,
                "function": code.co_name if code is not None else "",
                "count": count,
                "order": order,
                "signatures": calls,
                "more_signatures": overflow,
                "fallback": kind,
                "fallback_message": message,
                "fallback_op": blamed,
                "sync": _sync_kind(name, shapes),
            })
        return {"pid": os.getpid(), "argv": list(sys.argv), "steps": self.step, "ops": ops}

    def dump(self) -> None:
        """Write ``ops-<pid>.json`` into the report folder (whole or not at all)."""
        data = json.dumps(self.snapshot(), sort_keys=True)
        target = os.path.join(self.directory, f"ops-{os.getpid()}.json")
        tmp = target + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(data)
            os.replace(tmp, target)
        except OSError as error:  # the runner reports a missing record; never fail the user's exit
            sys.stderr.write(f"transplant: could not write the operator record {target}: {error}\n")


def _describe(item: Any) -> Any:
    if isinstance(item, tuple) and len(item) == 3 and isinstance(item[0], torch.dtype):
        dtype, shape, device = item
        return {"dtype": str(dtype).replace("torch.", ""), "shape": list(shape), "device": device}
    if isinstance(item, tuple) and item and item[0] == "device":
        return {"device_arg": item[1]}
    return [_describe(i) for i in item]


def _sync_kind(name: str, shapes: dict) -> str:
    short = name[len("aten::"):] if name.startswith("aten::") else name
    if short == "print":
        return "printing an npu tensor (copies it to the host)"
    if short in _SYNC_OPS:
        return _SYNC_OPS[short]
    if short in ("_to_copy", "copy_"):
        # a copy from npu to cpu: _to_copy(npu, device=cpu) or cpu.copy_(npu)
        for sig in shapes:
            devices = [s[2] for s in sig if isinstance(s, tuple) and len(s) == 3 and isinstance(s[0], torch.dtype)]
            if short == "_to_copy" and ("device", "cpu") in sig:
                return "copy to the host (.cpu(), .to('cpu'), .numpy())"
            if short == "copy_" and len(devices) >= 2 and devices[0] == _CPU_TYPE and devices[1] != _CPU_TYPE:
                return "copy to the host (cpu_tensor.copy_(npu_tensor))"
    if short == "index":
        for sig in shapes:
            for s in sig:
                if isinstance(s, tuple) and s and isinstance(s[0], tuple) and any(
                        isinstance(b, tuple) and b[0] is torch.bool for b in s):
                    return "boolean-mask indexing (data-dependent output size)"
    return ""


_recorder: Optional[Recorder] = None


def start(directory: str) -> Recorder:
    """Start recording in this process (idempotent); the record is written at exit."""
    global _recorder
    if _recorder is not None:
        return _recorder
    recorder = _recorder = Recorder(directory)
    tensor._record = recorder.record
    from torch.optim.optimizer import register_optimizer_step_post_hook

    register_optimizer_step_post_hook(recorder.optimizer_step)
    atexit.register(recorder.dump)
    return recorder
