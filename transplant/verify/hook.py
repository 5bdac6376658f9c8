"""The recorder ``transplant verify`` installs in both runs: losses and parameter fingerprints per step.

Installed by ``_boot/sitecustomize.py`` right after ``torch`` is imported, in every process of a
verified run (configuration through the environment, see ``ENV_*``). It needs no change to the
user's code:

* ``torch.autograd.backward`` (which ``Tensor.backward`` calls) remembers the scalar each backward
  pass started from; a loss scaled by a ``GradScaler`` is traced back to the unscaled loss, so a
  run whose scaler is active (the NPU) and one whose scaler disabled itself (CUDA absent) record the
  same number;
* a global optimizer step post-hook writes one JSON line per ``optimizer.step()`` (the losses since
  the previous step and a fingerprint of every parameter group: sums, norms and SHA-256 digests)
  and ends the process after ``TRANSPLANT_VERIFY_STEPS`` steps;
* both runs start from the same seeds (``torch``, ``random``, ``numpy``), use deterministic
  algorithms where torch has them, and DataLoader workers seed ``numpy`` (torch seeds only
  ``random`` and itself in a worker).

This module runs inside the user's process: it never prints, and imports nothing of the rewriter.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import weakref
from typing import Any, Callable, Optional

ENV_DIR = "TRANSPLANT_VERIFY_DIR"
ENV_STEPS = "TRANSPLANT_VERIFY_STEPS"
ENV_SEED = "TRANSPLANT_VERIFY_SEED"
# "nccl=gloo": a CPU reference cannot use nccl; the distributed original then runs on gloo.
ENV_BACKEND_MAP = "TRANSPLANT_VERIFY_BACKEND_MAP"

# Exit code of a run the recorder stopped after the requested steps (an ordinary success).
STOPPED_EXIT_CODE = 0

_installed = False


class _Recorder:
    """Per-process state: the pending losses, the step count and the open record file."""

    def __init__(self, directory: str, steps: Optional[int]) -> None:
        self.directory = directory
        self.steps = steps
        self.count = 0
        self.pending: list[Optional[float]] = []
        self.optimizers: dict[int, int] = {}
        self.scaled: dict[int, tuple[Any, Any]] = {}
        self.handle: Any = None

    # -- losses ------------------------------------------------------------------------------

    def note_scaled(self, scaled: Any, loss: Any) -> None:
        """``scaled`` = ``GradScaler.scale(loss)``: a backward on it records ``loss``."""
        try:
            self.scaled[id(scaled)] = (weakref.ref(scaled), loss.detach())
        except TypeError:  # not weak-referenceable: record the scaled value instead
            return
        if len(self.scaled) > 64:  # scaled losses are used at once; keep the map small
            for key in list(self.scaled)[:-64]:
                del self.scaled[key]

    def note_backward(self, tensors: Any) -> None:
        import torch

        first = tensors[0] if isinstance(tensors, (tuple, list)) and tensors else tensors
        if not isinstance(first, torch.Tensor):
            return
        entry = self.scaled.pop(id(first), None)
        if entry is not None and entry[0]() is first:
            first = entry[1]
        if first.numel() != 1:
            self.pending.append(None)  # a backward from a non-scalar: only the parameters compare
            return
        self.pending.append(float(first.detach().reshape(()).item()))

    # -- steps -------------------------------------------------------------------------------

    def note_step(self, optimizer: Any) -> None:
        self.count += 1
        index = self.optimizers.setdefault(id(optimizer), len(self.optimizers))
        losses, self.pending = self.pending, []
        record = {
            "kind": "step",
            "step": self.count,
            "optimizer": index,
            "optimizer_class": type(optimizer).__name__,
            "loss": losses[-1] if losses else None,
            "losses": losses,
            "groups": [fingerprint_group(group["params"]) for group in optimizer.param_groups],
        }
        if self.count == 1:
            record.update(_process_facts())
        self.write(record)
        if self.steps is not None and self.count >= self.steps:
            self.write({"kind": "stop", "step": self.count})
            self.close()
            sys.stdout.flush()
            sys.stderr.flush()
            # SystemExit unwinds the script (finally blocks, DataLoader workers) like a normal end.
            raise SystemExit(STOPPED_EXIT_CODE)

    def write(self, record: dict) -> None:
        if self.handle is None:
            os.makedirs(self.directory, exist_ok=True)
            rank = os.environ.get("RANK", "0")
            name = f"records.rank{rank}.pid{os.getpid()}.jsonl"
            self.handle = open(os.path.join(self.directory, name), "a", encoding="utf-8")
        self.handle.write(json.dumps(record, sort_keys=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None


def _process_facts() -> dict:
    import torch

    group = 0  # the size of the process group the script really joined (0: none)
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            group = dist.get_world_size()
    except Exception:  # a half-initialised backend must not break the recording
        group = 0
    return {
        "rank": int(os.environ.get("RANK", "0")),
        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
        "process_group": group,
        "torch": torch.__version__,
        "pid": os.getpid(),
    }


def fingerprint_group(params: Any) -> dict:
    """Fingerprint of one parameter group: exact digests and float64 sums/norms, tensor by tensor."""
    import torch

    digest = hashlib.sha256()
    tensors = []
    total_sum = total_abs = total_sq = 0.0
    numel = 0
    devices = set()
    with torch.no_grad():
        for param in params:
            if not isinstance(param, torch.Tensor):
                continue
            tensor = param.detach()
            devices.add(str(tensor.device))
            if tensor.device.type != "cpu":
                tensor = tensor.cpu()
            if tensor.is_sparse:
                tensor = tensor.to_dense()
            tensor = tensor.contiguous()
            raw = tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b""
            head = f"{tensor.dtype}{tuple(tensor.shape)}".encode()
            digest.update(head)
            digest.update(raw)
            values = torch.view_as_real(tensor) if tensor.is_complex() else tensor
            values = values.double()
            tensor_sum = float(values.sum())
            tensor_abs = float(values.abs().sum())
            tensor_sq = float((values * values).sum())
            total_sum += tensor_sum
            total_abs += tensor_abs
            total_sq += tensor_sq
            numel += tensor.numel()
            tensors.append({
                "shape": list(tensor.shape),
                "sha256": hashlib.sha256(head + raw).hexdigest()[:16],
                "norm": tensor_sq ** 0.5,
                "sum": tensor_sum,
            })
    return {
        "sha256": digest.hexdigest(),
        "sum": total_sum,
        "abs_sum": total_abs,
        "norm": total_sq ** 0.5,
        "numel": numel,
        "devices": sorted(devices),
        "tensors": tensors,
    }


class SeedWorker:
    """A DataLoader ``worker_init_fn`` that also seeds numpy (picklable: spawned workers need it)."""

    def __init__(self, user_fn: Optional[Callable[[int], Any]]) -> None:
        self.user_fn = user_fn

    def __call__(self, worker_id: int) -> Any:
        import torch

        seed = torch.initial_seed() % 2**32  # torch already set it to base_seed + worker_id
        random.seed(seed)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed(seed)
        if self.user_fn is not None:
            return self.user_fn(worker_id)
        return None


def _seed_everything(seed: int) -> None:
    import torch

    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed)


def _make_deterministic() -> None:
    import torch

    # warn_only: an op without a deterministic kernel must not end the user's run; it warns in
    # both runs alike.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def _patch_backward(recorder: _Recorder) -> None:
    import torch
    import torch.autograd

    plain = torch.autograd.backward

    def backward(tensors: Any, *args: Any, **kwargs: Any) -> Any:
        recorder.note_backward(tensors)
        return plain(tensors, *args, **kwargs)

    backward.__wrapped__ = plain  # type: ignore[attr-defined]
    backward.__doc__ = plain.__doc__
    torch.autograd.backward = backward


def _patch_grad_scaler(recorder: _Recorder) -> None:
    import torch

    scaler_class = torch.amp.GradScaler
    plain = scaler_class.scale

    def scale(self: Any, outputs: Any) -> Any:
        result = plain(self, outputs)
        if isinstance(outputs, torch.Tensor) and result is not outputs:
            recorder.note_scaled(result, outputs)
        return result

    scale.__wrapped__ = plain  # type: ignore[attr-defined]
    scaler_class.scale = scale  # type: ignore[method-assign]


def _patch_dataloader() -> None:
    import torch.utils.data

    loader_class = torch.utils.data.DataLoader
    plain = loader_class.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        user_fn = kwargs.get("worker_init_fn")
        if len(args) > 10:  # worker_init_fn given positionally (11th parameter, dataset first)
            args = list(args)  # type: ignore[assignment]
            args[10] = SeedWorker(args[10])  # type: ignore[index]
        else:
            kwargs["worker_init_fn"] = SeedWorker(user_fn)
        plain(self, *args, **kwargs)

    __init__.__wrapped__ = plain  # type: ignore[attr-defined]
    loader_class.__init__ = __init__  # type: ignore[method-assign]


def _patch_backend_map(mapping: dict[str, str]) -> None:
    import torch.distributed as dist

    plain = dist.init_process_group

    def init_process_group(*args: Any, **kwargs: Any) -> Any:
        if args and isinstance(args[0], str) and args[0].lower() in mapping:
            args = (mapping[args[0].lower()],) + tuple(args[1:])
        backend = kwargs.get("backend")
        if isinstance(backend, str) and backend.lower() in mapping:
            kwargs["backend"] = mapping[backend.lower()]
        return plain(*args, **kwargs)

    init_process_group.__wrapped__ = plain  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group


def _parse_map(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    return {key.strip().lower(): value.strip() for key, value in pairs}


def install() -> None:
    """Patch this process for ``transplant verify`` (idempotent; configured by ``ENV_*``)."""
    global _installed
    directory = os.environ.get(ENV_DIR)
    if _installed or not directory:
        return
    _installed = True
    from torch.optim.optimizer import register_optimizer_step_post_hook

    steps_text = os.environ.get(ENV_STEPS, "")
    recorder = _Recorder(directory, int(steps_text) if steps_text.isdigit() and int(steps_text) > 0 else None)
    _seed_everything(int(os.environ.get(ENV_SEED, "0")))
    _make_deterministic()
    _patch_backward(recorder)
    _patch_grad_scaler(recorder)
    _patch_dataloader()
    mapping = _parse_map(os.environ.get(ENV_BACKEND_MAP, ""))
    if mapping:
        _patch_backend_map(mapping)
    register_optimizer_step_post_hook(lambda opt, args, kwargs: recorder.note_step(opt))
