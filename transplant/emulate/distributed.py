"""The emulated ``hccl`` process-group backend: HCCL's interface, gloo underneath.

Importing this module registers ``hccl`` with ``torch.distributed`` for the ``npu`` device, so
migrated code that calls ``init_process_group(backend='hccl')`` runs unchanged on the emulator.
Every collective unwraps the npu tensors to the CPU tensors that hold their data and runs gloo on
those; because they share storage, results land directly in the caller's npu tensors. CPU tensors
are refused with HCCL's own message, as on real hardware.

The Python method names below are the ones torch 2.13 dispatches to a Python ``ProcessGroup``
subclass, either from ``torch.distributed`` (``all_gather_single``, ``reduce_scatter_single``,
``reduce``, ...) or through the C++ trampoline used by DDP (``allreduce``, ``broadcast``, ...).
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Sequence

import torch
import torch.distributed as dist
from torch._C._distributed_c10d import _create_work_from_future

from transplant.emulate.tensor import unwrap

__all__ = ["ProcessGroupHCCL", "register", "BACKEND_NAME"]

BACKEND_NAME = "hccl"
_DEVICE_TYPE = "npu"


def _to_cpu(tensor: torch.Tensor, op: str) -> torch.Tensor:
    """The CPU tensor backing an npu tensor; anything else is refused like real HCCL does."""
    if not isinstance(tensor, torch.Tensor) or tensor.device.type != _DEVICE_TYPE or tensor.is_sparse:
        raise ValueError(f"ProcessGroupHCCL::{op}: Tensors must be NPU and dense")
    return unwrap(tensor)


def _to_cpu_list(tensors: Sequence[torch.Tensor], op: str) -> list[torch.Tensor]:
    return [_to_cpu(t, op) for t in tensors]


class _WaitOnlyWork(dist.Work):
    """Work for gloo operations that have no future (send/recv): waiting is delegated."""

    def __init__(self, inner: Any, result: list[torch.Tensor]) -> None:
        super().__init__()
        self._inner = inner
        self._result = result

    def wait(self, timeout: datetime.timedelta = datetime.timedelta(0)) -> bool:
        if timeout:
            return self._inner.wait(timeout)
        return self._inner.wait()

    def is_completed(self) -> bool:
        return self._inner.is_completed()

    def is_success(self) -> bool:
        return self._inner.is_success()

    def result(self) -> list[torch.Tensor]:
        return self._result

    def get_future(self) -> torch.futures.Future:
        # Only reachable by callers that insist on a future; completing it requires the wait.
        self.wait()
        future: torch.futures.Future = torch.futures.Future()
        future.set_result(self._result)
        return future


class _BackendView:
    """The emulated group's answer to ``pg._get_backend(device)``: a backend that splits, coalesces
    and estimates nothing (torch then takes its generic code paths)."""

    supports_splitting = False
    supports_coalescing = False
    supports_time_estimate = False
    supports_tensor_alloc = False

    def __init__(self, group: "ProcessGroupHCCL") -> None:
        self._group = group

    def name(self) -> str:
        return BACKEND_NAME

    def rank(self) -> int:
        return self._group.rank()

    def size(self) -> int:
        return self._group.size()


def _completed_work(result: list[torch.Tensor]) -> dist.Work:
    future: torch.futures.Future = torch.futures.Future()
    future.set_result(result)
    return _create_work_from_future(future)


def _flatten(nested: Sequence[Sequence[torch.Tensor]]) -> list[torch.Tensor]:
    return [t for inner in nested for t in inner]


class ProcessGroupHCCL(dist.ProcessGroup):
    """An HCCL-compatible process group for emulated npu tensors, backed by ProcessGroupGloo."""

    def __init__(
        self, store: dist.Store, rank: int, size: int, timeout: datetime.timedelta
    ) -> None:
        super().__init__(rank, size)
        self._gloo = dist.ProcessGroupGloo(store, rank, size, timeout)
        self._timeout = timeout

    # -- identity ------------------------------------------------------------------------------

    def getBackendName(self) -> str:  # noqa: N802 - name fixed by the C++ trampoline
        return BACKEND_NAME

    def name(self) -> str:
        return BACKEND_NAME

    def _get_backend_name(self) -> str:
        return BACKEND_NAME

    @property
    def _device_types(self) -> list[torch.device]:
        # Object collectives and barrier() pick their staging device from this list.
        return [torch.device(_DEVICE_TYPE)]

    def _get_backend(self, device: Any) -> "_BackendView":
        # torch.distributed asks the group for its per-device backend to read capability flags
        # (e.g. init_process_group(device_id=...) checks supports_splitting).
        return _BackendView(self)

    # -- helpers ---------------------------------------------------------------------------------

    def _finish(self, work: Any, result: list[torch.Tensor]) -> dist.Work:
        """Wrap a gloo Work so that its value is the caller's npu tensors."""
        try:
            future = work.get_future()
        except RuntimeError:
            return _WaitOnlyWork(work, result)

        def to_npu(done: torch.futures.Future) -> list[torch.Tensor]:
            done.wait()  # re-raises a gloo failure
            return result

        return _create_work_from_future(future.then(to_npu))

    def _finish_now(self, work: Any, result: list[torch.Tensor]) -> dist.Work:
        """For collectives whose gloo Work has no future: every rank takes part, so wait now."""
        work.wait()
        return _completed_work(result)

    # -- collectives -----------------------------------------------------------------------------

    def allreduce(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        opts = opts if opts is not None else dist.AllreduceOptions()
        return self._finish(self._gloo.allreduce(_to_cpu_list(tensors, "allreduce"), opts), tensors)

    def allreduce_coalesced(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        opts = opts if opts is not None else dist.AllreduceCoalescedOptions()
        cpu = _to_cpu_list(tensors, "allreduce_coalesced")
        return self._finish(self._gloo.allreduce_coalesced(cpu, opts), tensors)

    def broadcast(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        opts = opts if opts is not None else dist.BroadcastOptions()
        return self._finish(self._gloo.broadcast(_to_cpu_list(tensors, "broadcast"), opts), tensors)

    def reduce(self, tensors: list[torch.Tensor], opts: Any = None) -> dist.Work:
        opts = opts if opts is not None else dist.ReduceOptions()
        return self._finish(self._gloo.reduce(_to_cpu_list(tensors, "reduce"), opts), tensors)

    def allgather(
        self,
        output_lists: list[list[torch.Tensor]],
        inputs: list[torch.Tensor],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllgatherOptions()
        cpu_out = [_to_cpu_list(outs, "allgather") for outs in output_lists]
        work = self._gloo.allgather(cpu_out, _to_cpu_list(inputs, "allgather"), opts)
        return self._finish(work, _flatten(output_lists))

    def allgather_coalesced(
        self,
        output_lists: list[list[torch.Tensor]],
        inputs: list[torch.Tensor],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllgatherOptions()
        cpu_out = [_to_cpu_list(outs, "allgather_coalesced") for outs in output_lists]
        work = self._gloo.allgather_coalesced(cpu_out, _to_cpu_list(inputs, "allgather_coalesced"), opts)
        return self._finish(work, _flatten(output_lists))

    def all_gather_single(
        self, output: torch.Tensor, input: torch.Tensor, opts: Any = None
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllgatherOptions()
        return self._one_tensor("_allgather_base", output, input, opts, self._finish)

    def all_gather_single_coalesced(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllgatherOptions()
        return self._per_pair("_allgather_base", "allgather_into_tensor_coalesced", outputs, inputs, opts)

    # The deprecated spelling is still looked up by the trampoline.
    allgather_into_tensor_coalesced = all_gather_single_coalesced

    def reduce_scatter(
        self,
        outputs: list[torch.Tensor],
        input_lists: list[list[torch.Tensor]],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.ReduceScatterOptions()
        cpu_in = [_to_cpu_list(ins, "reduce_scatter") for ins in input_lists]
        work = self._gloo.reduce_scatter(_to_cpu_list(outputs, "reduce_scatter"), cpu_in, opts)
        return self._finish(work, list(outputs))

    def reduce_scatter_single(
        self, output: torch.Tensor, input: torch.Tensor, opts: Any = None
    ) -> dist.Work:
        opts = opts if opts is not None else dist.ReduceScatterOptions()
        # gloo's _reduce_scatter_base Work has no future in torch 2.13.
        return self._one_tensor("_reduce_scatter_base", output, input, opts, self._finish_now)

    def reduce_scatter_single_coalesced(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        opts = opts if opts is not None else dist.ReduceScatterOptions()
        return self._per_pair("_reduce_scatter_base", "reduce_scatter_tensor_coalesced", outputs, inputs, opts)

    reduce_scatter_tensor_coalesced = reduce_scatter_single_coalesced

    def _one_tensor(self, gloo_op: str, output: torch.Tensor, input: torch.Tensor, opts: Any,
                    finish: Callable[[Any, list[torch.Tensor]], dist.Work]) -> dist.Work:
        """A one-tensor collective (``gloo_op`` names the gloo method, and the op in error messages)."""
        work = getattr(self._gloo, gloo_op)(_to_cpu(output, gloo_op), _to_cpu(input, gloo_op), opts)
        return finish(work, [output])

    def _per_pair(self, gloo_op: str, label: str, outputs: list[torch.Tensor], inputs: list[torch.Tensor],
                  opts: Any) -> dist.Work:
        """A coalesced tensor collective: gloo has only the one-tensor form, so it runs per (output,
        input) pair, in the same order on every rank, each waited for before the next starts."""
        run = getattr(self._gloo, gloo_op)
        for out, inp in zip(outputs, inputs):
            run(_to_cpu(out, label), _to_cpu(inp, label), opts).wait()
        return _completed_work(list(outputs))

    def all_to_all_single(
        self,
        output: torch.Tensor,
        input: torch.Tensor,
        output_split_sizes: list[int],
        input_split_sizes: list[int],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllToAllOptions()
        work = self._gloo.alltoall_base(
            _to_cpu(output, "alltoall_base"),
            _to_cpu(input, "alltoall_base"),
            list(output_split_sizes),
            list(input_split_sizes),
            opts,
        )
        return self._finish(work, [output])

    alltoall_base = all_to_all_single

    def alltoall(
        self, outputs: list[torch.Tensor], inputs: list[torch.Tensor], opts: Any = None
    ) -> dist.Work:
        opts = opts if opts is not None else dist.AllToAllOptions()
        work = self._gloo.alltoall(
            _to_cpu_list(outputs, "alltoall"), _to_cpu_list(inputs, "alltoall"), opts
        )
        return self._finish(work, list(outputs))

    def gather(
        self,
        output_lists: list[list[torch.Tensor]],
        inputs: list[torch.Tensor],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.GatherOptions()
        cpu_out = [_to_cpu_list(outs, "gather") for outs in output_lists]
        work = self._gloo.gather(cpu_out, _to_cpu_list(inputs, "gather"), opts)
        return self._finish(work, _flatten(output_lists) or list(inputs))

    def scatter(
        self,
        outputs: list[torch.Tensor],
        input_lists: list[list[torch.Tensor]],
        opts: Any = None,
    ) -> dist.Work:
        opts = opts if opts is not None else dist.ScatterOptions()
        cpu_in = [_to_cpu_list(ins, "scatter") for ins in input_lists]
        work = self._gloo.scatter(_to_cpu_list(outputs, "scatter"), cpu_in, opts)
        return self._finish(work, list(outputs))

    def barrier(self, opts: Any = None) -> dist.Work:
        # The caller's options name an npu device; gloo only needs the timeout.
        gloo_opts = dist.BarrierOptions()
        if opts is not None:
            gloo_opts.timeout = opts.timeout
        return self._finish(self._gloo.barrier(gloo_opts), [])

    # -- point to point --------------------------------------------------------------------------

    def send(self, tensors: list[torch.Tensor], dst: int, tag: int = 0) -> dist.Work:
        return self._finish(self._gloo.send(_to_cpu_list(tensors, "send"), dst, tag), tensors)

    def recv(self, tensors: list[torch.Tensor], src: int, tag: int = 0) -> dist.Work:
        return self._finish(self._gloo.recv(_to_cpu_list(tensors, "recv"), src, tag), tensors)

    def recv_anysource(self, tensors: list[torch.Tensor], tag: int = 0) -> dist.Work:
        work = self._gloo.recv_anysource(_to_cpu_list(tensors, "recv"), tag)
        return self._finish(work, tensors)

    # -- lifecycle -------------------------------------------------------------------------------

    def shutdown(self) -> None:
        self._gloo.shutdown()

    def abort(self) -> None:
        self._gloo.abort()


def _create(backend_options: Any, pg_options: Any) -> ProcessGroupHCCL:
    """Creator for ``Backend.register_backend(..., extended_api=True)``."""
    return ProcessGroupHCCL(
        backend_options.store,
        backend_options.group_rank,
        backend_options.group_size,
        backend_options.timeout,
    )


def is_hccl_available() -> bool:
    """torch_npu adds this to ``torch.distributed``; the emulated backend is always there."""
    return True


def register() -> None:
    """Register ``hccl`` for the npu device (idempotent; runs on import)."""
    if "HCCL" not in dist.Backend._plugins:
        dist.Backend.register_backend(BACKEND_NAME, _create, extended_api=True, devices=[_DEVICE_TYPE])
    if not hasattr(dist, "is_hccl_available"):
        dist.is_hccl_available = is_hccl_available  # type: ignore[attr-defined]


register()
