"""The emulated npu tensor: a wrapper subclass whose data is an ordinary CPU tensor.

An ``NpuTensor`` reports ``device='npu:N'`` and carries the dispatch keys of a real backend
(PrivateUse1, AutogradPrivateUse1, AutocastPrivateUse1), so autograd and autocast run above it
exactly as for hardware. Every aten op that reaches the Python key lands in
``NpuTensor.__torch_dispatch__``, which

1. checks devices (the real "Expected all tensors to be on the same device" error),
2. unwraps to the inner CPU tensors and maps a ``device='npu…'`` argument to ``cpu``,
3. runs the op on CPU (drawing random numbers from the emulated device's generator),
4. rewraps the outputs; in-place and ``out=`` ops return the caller's own wrapper objects, and
   the wrapper's sizes/strides are re-synchronised after in-place metadata changes.

The inner CPU tensor shares storage with the npu tensor: views keep aliasing, and in-place
writes into ``unwrap(t)`` land in ``t`` (the emulated ``hccl`` backend relies on that).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, Dict, Optional

import torch

from transplant.emulate import _state, fallback

__all__ = ["NpuTensor", "wrap", "unwrap", "device_mismatch_error"]

_CPU = torch.device("cpu")
_Tensor = torch.Tensor
_make_wrapper = torch.Tensor._make_wrapper_subclass
# Ops that move data between devices, and index ops that accept CPU index tensors (as CUDA does).
_MIXED_DEVICE_OPS = {
    "copy_", "_to_copy", "_copy_from", "_copy_from_and_resize", "to", "is_same_size",
    "_has_compatible_shallow_copy_type", "set_", "index", "index_put", "index_put_",
    "_index_put_impl_", "_unsafe_index", "_unsafe_index_put", "lift_fresh",
    # PackedSequence keeps lengths/batch_sizes on CPU on every device.
    "_pack_padded_sequence", "_pad_packed_sequence", "_pack_padded_sequence_backward",
}
# Outputs that stay on CPU on every device (PackedSequence batch sizes / lengths).
_CPU_OUTPUTS = {"_pack_padded_sequence": (1,), "_pad_packed_sequence": (1,)}
_INDEX_OPS = {"index", "index_put", "index_put_", "_index_put_impl_", "_unsafe_index", "_unsafe_index_put"}
_RESIZING_OPS = {"resize_", "resize_as_", "set_", "_resize_output_"}

# Python implementations of ops that core only selects for non-CPU devices (the CPU build has no
# kernel for them). Filled by transplant.emulate.kernels: {OpOverload: fn over CPU tensors}.
CPU_REPLACEMENTS: Dict[Any, Callable[..., Any]] = {}


def _lengths_on_cpu(args: tuple) -> None:
    lengths = args[1] if len(args) > 1 else None
    if isinstance(lengths, NpuTensor):
        # torch's own check (PackedSequence.cpp): lengths must stay on the CPU on every device.
        raise RuntimeError(
            "'lengths' argument should be a 1D CPU int64 tensor, but got "
            f"{lengths.dim()}D {lengths.device} {lengths._elem.type()[len('torch.'):-len('Tensor')]} tensor"
        )


# Checks for what the device refuses but the CPU kernels behind the emulator accept: {op packet: check(args)}.
REFUSALS: Dict[str, Callable[[tuple], None]] = {"_pack_padded_sequence": _lengths_on_cpu}


def device_mismatch_error(first: str, second: str, func: Any) -> RuntimeError:
    """The error torch raises on hardware when an op mixes devices."""
    return RuntimeError(
        "Expected all tensors to be on the same device, but found at least two devices, "
        f"{first} and {second}! (when checking argument for {_op_name(func)})"
    )


def _op_name(func: Any) -> str:
    schema = getattr(func, "_schema", None)
    return schema.name if schema is not None else str(func)


class _OpInfo:
    """What __torch_dispatch__ needs to know about an op, computed once per OpOverload."""

    __slots__ = ("call", "cpu_outputs", "mutated_returns", "resync", "mixed_ok", "index_op", "seeded", "has_generator",
                 "replacement", "refuse")

    def __init__(self, func: Any) -> None:
        schema = func._schema
        name = func.overloadpacket.__name__
        self.mixed_ok = name in _MIXED_DEVICE_OPS
        # The bound C++ op: skips OpOverload.__call__'s Python frame on the hot path.
        self.call = getattr(func, "_op", func)
        self.cpu_outputs = _CPU_OUTPUTS.get(name)
        self.index_op = name in _INDEX_OPS
        self.seeded = torch.Tag.nondeterministic_seeded in func.tags
        self.has_generator = any(a.name == "generator" for a in schema.arguments)
        self.replacement = CPU_REPLACEMENTS.get(func)
        self.refuse = REFUSALS.get(name)
        # For every return that aliases a written argument: where that argument sits.
        sources = []
        any_alias = False
        for ret in schema.returns:
            info = ret.alias_info
            if info is None or not info.is_write:
                sources.append(None)
                continue
            any_alias = True
            found = None
            for pos, arg in enumerate(schema.arguments):
                ainfo = arg.alias_info
                if ainfo is not None and ainfo.is_write and ainfo.before_set == info.before_set:
                    found = ("kw", arg.name, pos) if arg.kwarg_only else ("pos", arg.name, pos)
                    break
            sources.append(found)
        self.mutated_returns = tuple(sources) if any_alias else None
        is_out = any(a.kwarg_only and a.alias_info is not None and a.alias_info.is_write for a in schema.arguments)
        self.resync = (
            torch.Tag.inplace_view in func.tags or name in _RESIZING_OPS or is_out
        )


_OP_INFO: Dict[Any, _OpInfo] = {}


def _op_info(func: Any) -> _OpInfo:
    info = _OP_INFO.get(func)
    if info is None:
        info = _OP_INFO[func] = _OpInfo(func)
    return info


class NpuTensor(torch.Tensor):
    """A tensor on an emulated ``npu:N`` device, backed by the CPU tensor ``_elem``."""

    _elem: torch.Tensor
    _npu_index: int

    @staticmethod
    def __new__(cls, elem: torch.Tensor, index: int, requires_grad: bool = False) -> "NpuTensor":
        # Only non-default keyword arguments are passed: argument parsing is a measurable share of
        # the per-op cost (this runs for every op output).
        offset = elem.storage_offset()
        if offset or requires_grad or elem.layout is not torch.strided:
            r = _make_wrapper(
                cls, elem.size(), strides=elem.stride(), storage_offset=offset, dtype=elem.dtype,
                layout=elem.layout, device=_state.devices[index], requires_grad=requires_grad,
            )
        else:
            r = _make_wrapper(cls, elem.size(), strides=elem.stride(), dtype=elem.dtype, device=_state.devices[index])
        r._elem = elem
        r._npu_index = index
        return r

    __torch_function__ = torch._C._disabled_torch_function_impl

    @classmethod
    def __torch_dispatch__(cls, func, types, args=(), kwargs=None):
        return _dispatch(func, args, kwargs)

    # --- Python-side overrides of what torch refuses or gets wrong for subclasses ---------------
    def __repr__(self, *, tensor_contents: Optional[str] = None) -> str:
        if _record is not None:  # printing copies the tensor to the host on the device
            _record("print", (self,), None)
        return _repr(self)

    def __format__(self, spec: str) -> str:
        if self.dim() == 0:
            return self.item().__format__(spec)
        return object.__format__(self, spec)

    def tolist(self):
        return self._elem.tolist()

    def numpy(self, *, force: bool = False):
        raise TypeError(
            f"can't convert {self.device} device type tensor to numpy. "
            "Use Tensor.cpu() to copy the tensor to host memory first."
        )

    def __array__(self, dtype=None, copy=None):
        return self.numpy()

    def data_ptr(self) -> int:
        return self._elem.data_ptr()

    def untyped_storage(self) -> torch.UntypedStorage:
        return self._elem.untyped_storage()

    def __deepcopy__(self, memo: dict) -> "NpuTensor":
        if id(self) in memo:
            return memo[id(self)]
        with torch.no_grad():
            new = NpuTensor(self._elem.clone(memory_format=torch.preserve_format), self._npu_index)
        if getattr(self, "_is_param", False):
            new = torch.nn.Parameter(new, requires_grad=self.requires_grad)
        else:
            new.requires_grad_(self.requires_grad)
        if self.grad is not None:
            new.grad = copy.deepcopy(self.grad, memo)
        for key, value in self.__dict__.items():
            if key not in ("_elem", "_npu_index", "_is_param"):
                setattr(new, key, copy.deepcopy(value, memo))
        memo[id(self)] = new
        return new

    def __reduce_ex__(self, proto: int):
        # The on-disk format real torch_npu writes (see transplant.emulate.serialization).
        from transplant.emulate import serialization

        return serialization.reduce_npu_tensor(self)

    @property
    def data(self) -> "NpuTensor":  # type: ignore[override]
        return NpuTensor(self._elem, self._npu_index)

    @data.setter
    def data(self, value: torch.Tensor) -> None:
        _set_data(self, value)
        if isinstance(value, NpuTensor):
            self._elem = value._elem
            self._npu_index = value._npu_index


def wrap(cpu: torch.Tensor, index: int) -> NpuTensor:
    """Return an npu tensor on ``npu:index`` whose data *is* ``cpu`` (shared storage, no copy)."""
    return NpuTensor(cpu, index)


def unwrap(t: torch.Tensor) -> torch.Tensor:
    """The CPU tensor behind an npu tensor (shared storage); plain tensors are returned as is."""
    return t._elem if isinstance(t, NpuTensor) else t


def _repr(t: NpuTensor) -> str:
    text = repr(t._elem.detach())
    extra = []
    if t.requires_grad and t.grad_fn is None:
        extra.append("requires_grad=True")
    elif t.grad_fn is not None:
        extra.append(f"grad_fn=<{type(t.grad_fn).__name__}>")
    # CPU repr is "tensor(DATA[, size=...][, dtype=...])"; torch puts the device before those.
    body = text[len("tensor(") : -1]
    cut = min((i for i in (body.find(", size="), body.find(", dtype=")) if i >= 0), default=len(body))
    data, rest = body[:cut], body[cut + 2 :]
    suffix = ", ".join([f"device='{t.device}'"] + ([rest] if rest else []) + extra)
    return f"tensor({data}, {suffix})"


# ---------------------------------------------------------------------------------------------
# Dispatch
# ---------------------------------------------------------------------------------------------


def _mismatch(func: Any, index: int, other: torch.Tensor) -> RuntimeError:
    return device_mismatch_error(str(_state.devices[index]), str(other.device), func)


_PIN_MEMORY = torch.ops.aten._pin_memory.default
# Set by transplant.emulate.oprecord while `transplant run --op-report` records: called with every op.
_record: Optional[Callable[[Any, tuple, Optional[dict]], None]] = None


def _dispatch(func, args, kwargs):
    info = _OP_INFO.get(func)
    if info is None:
        if func is _PIN_MEMORY and isinstance(args[0], NpuTensor):
            # The inner tensor is CPU memory, but on hardware device memory cannot be pinned.
            raise RuntimeError(f"cannot pin '{args[0].type()}' only dense CPU tensors can be pinned")
        # torch_npu's CPU fallback: warns once per op, or raises (every call: nothing is cached then).
        if func not in CPU_REPLACEMENTS:  # the emulator's stand-ins for torch_npu's own fused kernels
            fallback.check(func)
        info = _op_info(func)
    if info.refuse is not None:
        info.refuse(args)
    if _record is not None:
        _record(func, args, kwargs)
    index = -1
    foreign = None
    new_args = []
    append = new_args.append
    for a in args:
        ta = type(a)
        if ta is NpuTensor:
            i = a._npu_index
            if i != index:
                if index < 0:
                    index = i
                else:
                    raise device_mismatch_error(str(_state.devices[index]), str(_state.devices[i]), func)
            append(a._elem)
        elif ta is list or ta is tuple:
            if not a or type(a[0]) is int:  # sizes, dims: no tensors inside
                append(a)
                continue
            inner = []
            for b in a:
                if type(b) is NpuTensor:
                    i = b._npu_index
                    if i != index:
                        if index < 0:
                            index = i
                        else:
                            raise device_mismatch_error(
                                str(_state.devices[index]), str(_state.devices[i]), func
                            )
                    inner.append(b._elem)
                else:
                    if foreign is None and isinstance(b, _Tensor) and not info.index_op and b.dim() != 0:
                        foreign = b
                    inner.append(b)
            append(inner if ta is list else tuple(inner))
        elif isinstance(a, _Tensor):
            if isinstance(a, NpuTensor):  # a subclass of ours, e.g. nn.Parameter wrapping
                append(a._elem)
                i = a._npu_index
                if index < 0:
                    index = i
                elif i != index:
                    raise device_mismatch_error(str(_state.devices[index]), str(_state.devices[i]), func)
                continue
            if foreign is None and a.dim() != 0:
                foreign = a
            append(a)
        else:
            append(a)
    out_index = index
    wrap_outputs = True
    original_kwargs = kwargs
    if kwargs:
        kwargs = dict(kwargs)
        for key, v in kwargs.items():
            tv = type(v)
            if tv is NpuTensor:
                i = v._npu_index
                if index < 0:
                    index = out_index = i
                elif i != index:
                    raise device_mismatch_error(str(_state.devices[index]), str(_state.devices[i]), func)
                kwargs[key] = v._elem
            elif tv is list or tv is tuple:
                kwargs[key] = tv(unwrap(b) for b in v)
                for b in v:
                    if type(b) is NpuTensor and index < 0:
                        index = out_index = b._npu_index
            elif isinstance(v, _Tensor):
                if foreign is None and v.dim() != 0:
                    foreign = v
            elif key == "device" and v is not None:
                dev = torch.device(v) if not isinstance(v, torch.device) else v
                if dev.type == _state.DEVICE_TYPE:
                    out_index = _state.resolve_index(dev)
                    kwargs[key] = _CPU
                elif dev.type == "cpu":
                    wrap_outputs = False
    if foreign is not None and index >= 0 and not info.mixed_ok and foreign.device.type != "meta":
        raise _mismatch(func, index, foreign)
    if out_index < 0:
        out_index = _state.current_index()

    if info.replacement is not None:
        result = info.replacement(*new_args, **(kwargs or {}))
    elif info.seeded and not (kwargs and kwargs.get("generator") is not None):
        result = _state.run_seeded(func, out_index, info.has_generator, new_args, kwargs or {})
    elif kwargs:
        result = info.call(*new_args, **kwargs)
    else:
        result = info.call(*new_args)

    if info.mutated_returns is not None:
        result = _mutated_result(info, args, original_kwargs, result, out_index)
        return result
    if not wrap_outputs:
        return result
    if info.cpu_outputs is not None:
        return tuple(r if i in info.cpu_outputs else _wrap_result(r, out_index) for i, r in enumerate(result))
    return _wrap_result(result, out_index)


def _wrap_result(result, index):
    tr = type(result)
    if tr is _Tensor:
        return NpuTensor(result, index)
    if tr is tuple or tr is list:
        return tr(_wrap_result(r, index) for r in result)
    if isinstance(result, _Tensor) and result.device.type == "cpu":
        return NpuTensor(result, index)
    return result


def _mutated_result(info: _OpInfo, args, kwargs, result, index):
    """Return the caller's own objects for mutated arguments; wrap everything else."""
    returns = info.mutated_returns
    single = len(returns) == 1
    results = (result,) if single else tuple(result)
    out = []
    for value, src in zip(results, returns):
        if src is None:
            out.append(_wrap_result(value, index))
            continue
        kind, name, pos = src
        if kind == "pos" and pos < len(args):
            original = args[pos]
        else:
            original = kwargs[name]
        if info.resync:
            _resync_all(original)
        out.append(original)
    return out[0] if single else tuple(out)


def _resync_all(obj) -> None:
    if type(obj) is NpuTensor or isinstance(obj, NpuTensor):
        resync(obj)
    elif isinstance(obj, (list, tuple)):
        for o in obj:
            _resync_all(o)


_CPU_KEYSET = torch._C.DispatchKeySet(torch._C.DispatchKey.CPU)
_set_storage = torch.ops.aten.set_.source_Storage_storage_offset


def resync(t: NpuTensor) -> None:
    """Make the wrapper's sizes/strides/offset match its inner tensor after an in-place change."""
    e = t._elem
    if t.size() == e.size() and t.stride() == e.stride() and t.storage_offset() == e.storage_offset():
        return
    # Point the wrapper at a data-less npu storage big enough for the new geometry, using the CPU
    # set_ kernel directly (the Python key would route back here).
    nbytes = e.untyped_storage().nbytes()
    storage = torch._C._construct_storage_from_data_pointer(0, t.device, nbytes)
    with torch._C._DisableTorchDispatch():
        _set_storage.redispatch(_CPU_KEYSET, t, storage, e.storage_offset(), e.size(), e.stride())


_base_data = torch._C.TensorBase.data


def _get_data(self: torch.Tensor) -> torch.Tensor:
    return _base_data.__get__(self)


def _set_data(self: torch.Tensor, value: torch.Tensor) -> None:
    if isinstance(value, NpuTensor) and not isinstance(self, NpuTensor):
        # `cpu_param.data = t.npu()` (legal on real devices) must turn the Python object itself into
        # an npu tensor: swap it with a fresh npu alias of `value` (C++ set_data refuses the change
        # of backend, and `value` itself must stay what the caller holds).
        alias = NpuTensor(value._elem, value._npu_index, requires_grad=self.requires_grad)
        if isinstance(self, torch.nn.Parameter):
            alias._is_param = True
        _swap_keeping_grad(self, alias)
        return
    if isinstance(self, NpuTensor) and not isinstance(value, NpuTensor):
        if value.device.type != "cpu" or value.layout != torch.strided:
            raise RuntimeError(
                "Attempted to call `variable.set_data(tensor)`, but `variable` and `tensor` have "
                f"incompatible tensor type (npu vs {value.device.type})"
            )
        # `npu_param.data = cpu_tensor` (what Module.cpu() does on real torch_npu): the mirror of
        # the case above, the Python object becomes a CPU alias of `value`.
        alias = value.detach().requires_grad_(self.requires_grad)
        if isinstance(self, torch.nn.Parameter):
            alias = torch.nn.Parameter(alias, requires_grad=self.requires_grad)
        _swap_keeping_grad(self, alias)
        return
    _base_data.__set__(self, value)


def _swap_keeping_grad(self: torch.Tensor, alias: torch.Tensor) -> None:
    """Make the Python object ``self`` become ``alias``, keeping its attributes and its ``.grad``.

    On hardware ``.data =`` leaves ``.grad`` attached (``Module._apply`` then moves it with
    ``param.grad.data = ...``); the grad follows the tensor to its new device here, since a grad on
    another device than its tensor cannot be attached.
    """
    grad = self.grad
    if grad is not None:
        self.grad = None  # a grad holds a reference that would block the swap
    for key, item in self.__dict__.items():
        alias.__dict__.setdefault(key, item)
    torch.utils.swap_tensors(self, alias)
    if grad is not None:
        with torch.no_grad():
            self.grad = grad.to(self.device)


def install_data_property() -> None:
    """Let ``tensor.data = npu_tensor`` work on CPU tensor objects (once per process)."""
    torch.Tensor.data = property(_get_data, _set_data, doc=_base_data.__doc__)  # type: ignore[assignment]


def _lazy_move_target(func: Any, args: tuple, kwargs: Optional[dict]) -> Optional[torch.device]:
    """The npu device a ``.npu()`` / ``.to(npu)`` call moves an uninitialised parameter to, else None."""
    name = getattr(func, "__name__", "")
    if name not in ("npu", "to") or not args:
        return None
    kwargs = kwargs or {}
    device = args[1] if len(args) > 1 else kwargs.get("device")
    if name == "npu":
        index = _state.current_index() if device is None else torch.device(_state.DEVICE_TYPE, device).index \
            if isinstance(device, int) else torch.device(device).index
        return torch.device(_state.DEVICE_TYPE, _state.current_index() if index is None else index)
    if isinstance(device, (str, torch.device)):
        device = torch.device(device)
        if device.type == _state.DEVICE_TYPE:
            return torch.device(_state.DEVICE_TYPE, _state.current_index() if device.index is None else device.index)
    return None


def install_lazy_parameter_moves() -> None:
    """``LazyLinear(4).npu()`` / ``.to('npu')``: an uninitialised parameter stays uninitialised and
    materialises on the npu device (an npu tensor is a wrapper subclass, which a lazy parameter cannot be)."""
    mixin = torch.nn.parameter.UninitializedTensorMixin
    original_function = mixin.__dict__["__torch_function__"].__func__
    original_materialize = mixin.materialize

    def __torch_function__(cls, func, types, args=(), kwargs=None):
        target = _lazy_move_target(func, args, kwargs)
        if target is None:
            return original_function(cls, func, types, args, kwargs)
        source = args[0]
        moved = cls(requires_grad=source.requires_grad, dtype=source.dtype)
        # Module._apply keeps the original object (it assigns the result's data to it): mark both.
        moved._transplant_device = source._transplant_device = target
        return moved

    def materialize(self, shape, device=None, dtype=None):
        if device is None:
            device = getattr(self, "_transplant_device", None)
        if device is None or torch.device(device).type != _state.DEVICE_TYPE:
            return original_materialize(self, shape, device=device, dtype=dtype)
        data = torch.empty(shape, device=device, dtype=self.data.dtype if dtype is None else dtype)
        # Become the plain Parameter/Buffer first: assigning npu data then turns the object into an
        # npu tensor (see _set_data), which torch's own order (data, then class) would undo.
        self.__class__ = self.cls_to_become
        self.data = data

    mixin.__torch_function__ = classmethod(__torch_function__)
    materialize.__doc__ = original_materialize.__doc__
    mixin.materialize = materialize
