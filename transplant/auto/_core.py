"""The patches themselves: install them on torch (after ``import torch_npu``), remove them again.

Every change goes through :class:`Patcher`, which remembers the previous attribute so that
:func:`uninstall` restores torch exactly. The wrappers are written for the hot path: a patched
``torch.zeros(8, device='cuda')`` or ``x.cuda()`` costs one extra Python call and a dict lookup.
"""

from __future__ import annotations

import atexit
import functools
import inspect
import logging
import os
import sys
import warnings

import torch

from . import _record
from ._devices import CudaLocations, npu_backend, npu_device, npu_device_cached, npu_device_or_index
from ._hooks import FINDER
from ._policy import CallerPolicy, Config
from ._record import HITS, record
from ._rules import CudaClassification, load_classification, rule_index

_log = logging.getLogger("transplant.auto")


class TransplantAutoWarning(UserWarning):
    """Auto mode changed or could not change the meaning of a call (shown once per call site)."""


# torch.* callables whose native schema has a ``device`` argument (tests/auto/test_coverage.py checks
# this list against torch's own schemas, so a new torch factory cannot slip through unnoticed).
FACTORIES = (
    "_cudnn_init_dropout_state", "_efficientzerotensor", "_empty_affine_quantized",
    "_empty_per_channel_affine_quantized", "_pin_memory", "arange", "as_tensor", "asarray",
    "bartlett_window", "blackman_window", "empty", "empty_like", "empty_permuted", "empty_quantized",
    "empty_strided", "eye", "from_file", "full", "full_like", "hamming_window", "hann_window",
    "kaiser_window", "linspace", "logspace", "normal", "ones", "ones_like", "rand", "rand_like",
    "randint", "randint_like", "randn", "randn_like", "randperm", "range", "scalar_tensor",
    "sparse_bsc_tensor", "sparse_bsr_tensor", "sparse_compressed_tensor", "sparse_coo_tensor",
    "sparse_csc_tensor", "sparse_csr_tensor", "tensor", "tril_indices", "triu_indices", "zeros",
    "zeros_like",
)
# Schema names with a device argument that are deliberately not wrapped (internal plumbing).
FACTORIES_SKIPPED = {
    "Generator": "a class: replaced by a proxy instead (see _patch_generator_stream_event)",
    "_assert_tensor_metadata": "compiler-generated metadata assertion, never given a CUDA device by users",
    "_make_dep_token": "torch.compile effect token",
    "_resize_output_": "internal out= helper",
    "_nested_tensor_from_tensor_list": "internal; use torch.nested.nested_tensor",
}
TENSOR_NEW_METHODS = ("new_empty", "new_empty_strided", "new_full", "new_ones", "new_tensor", "new_zeros")
# Deliberately left as they are, with the reason (docs/auto.md lists them too).
NOT_PATCHED = {
    "torch.jit.script": "kept working (transfer_to_npu disables it globally)",
    "torch.jit.script_method": "kept working (transfer_to_npu disables it globally)",
    "warnings.filterwarnings": "auto mode never changes the process-wide warning filters",
    "torch.device": "constructor left alone: a torch.device('cuda') is converted where it is used",
    "torch.UntypedStorage.cuda": "storage.npu() needs a device allocator; map_location callables that "
    "call storage.cuda() are not redirected",
}


# What transfer_to_npu patches that auto mode deliberately leaves alone, and why. tests/auto compare
# this (plus what we do patch) with transplant/data/transfer_to_npu.json, read from Huawei's wheel.
DIFFERENCES_FROM_TRANSFER_TO_NPU = {
    "torch.jit.script": "kept working; transfer_to_npu turns it into the identity",
    "torch.jit.script_method": "kept working; transfer_to_npu turns it into the identity",
    "warnings.filterwarnings": "never changed process-wide (transfer_to_npu sets action='once' globally)",
    "torch.cuda.DoubleTensor": "redirected to torch.npu.DoubleTensor per rule TP106 (float64 kept, warned at "
    "the call site), never silently to FloatTensor",
    "torch.distributed.Backend.default_device_backend_map['cuda']": "left: deleting it changes torch's default "
    "backend choice for every library; the backends user code names are rewritten instead",
    "torch.distributed.ProcessGroupNCCL": "not aliased to ProcessGroupHCCL: that makes isinstance checks lie",
    "torch.distributed.distributed_c10d.ProcessGroupNCCL": "not aliased to ProcessGroupHCCL: that makes "
    "isinstance checks lie",
    "torch.distributed.distributed_c10d._new_group_with_tag": "private; the public new_group and "
    "init_process_group are patched",
    "torch.distributed.ProcessGroup._get_backend": "private; backends are rewritten where user code names them",
    "torch.distributed.checkpoint.filesystem._OverlappingCpuLoader.__init__": "private loader re-implementation, "
    "not a device argument",
    "torch.UntypedStorage.__new__": "storages created directly on the device need the NPU allocator",
    "torch.utils.cpp_extension": "CUDA C++ extensions cannot be redirected; the offline scanner reports them",
    "torch.utils.cpp_extension.include_paths": "CUDA C++ extensions cannot be redirected; the offline scanner "
    "reports them",
    "torch._C._host_emptyCache": "private C hook, not called by user code",
    "torch._utils._get_available_device_type": "torch internals see the real device types (per-caller policy)",
    "torch._dynamo.trace_rules._disallowed_callable_ids.function_ids": "torch.compile internals are not touched",
    "torch._dynamo.utils.has_triton": "torch.compile internals are not touched",
    "torch._inductor.compile_fx.has_triton": "torch.compile internals are not touched",
    "torch._inductor.runtime.autotune_cache.has_triton": "torch.compile internals are not touched",
    "torch.utils._triton.has_triton": "torch.compile internals are not touched",
    "torch._inductor.autotune_process.get_gpu_type": "torch.compile internals are not touched",
    "torch._inductor.fx_passes.joint_graph.get_gpu_type": "torch.compile internals are not touched",
    "torch._inductor.fx_passes.post_grad.get_gpu_type": "torch.compile internals are not touched",
    "torch._inductor.utils.get_gpu_type": "torch.compile internals are not touched",
    "torch.npu.memory._record_memory_history": "an NPU function: CUDA code reaches it through "
    "torch.cuda.memory._record_memory_history (rule TP110)",
    "torch.npu.memory._snapshot": "an NPU function: CUDA code reaches it through torch.cuda.memory._snapshot "
    "(rule TP110)",
    "torch_npu.profiler._KinetoProfile.export_memory_timeline": "torch_npu's own profiler API, never called by CUDA code",
    "torch.profiler.schedule": "torch.profiler's own object works unchanged on the NPU",
    "torch.profiler.tensorboard_trace_handler": "torch.profiler's own object works unchanged on the NPU",
    "torch.profiler.ProfilerAction": "torch.profiler's own object works unchanged on the NPU",
    "torch.profiler.ProfilerActivity.CPU": "torch.profiler's own object works unchanged on the NPU",
    "torch.profiler.ProfilerActivity.CUDA": "rewritten where it is used: torch.profiler.profile(activities=...)",
    "torch.frombuffer": "has no device parameter in torch 2.13",
    "torch._sparse_coo_tensor_unsafe": "not a torch.* function in torch 2.13",
    "torch._sparse_csr_tensor_unsafe": "not a torch.* function in torch 2.13",
    "torch.cuda": "redirected name by name as the rule sets classify them (rules/torch_cuda.json, "
    "rules/amp.json), not by copying torch_npu.npu's __all__ wholesale",
    "third-party": "libraries with native NPU support are handled by the per-caller torch.cuda.is_available() "
    "policy (whole packages, any version) instead of 28 wrapped functions",
}


class Patcher:
    """Sets attributes and remembers how to undo each change, in reverse order."""

    _MISSING = object()

    def __init__(self) -> None:
        self._undo: list[tuple[object, str, object]] = []
        self.patched: dict[str, str] = {}  # qualified name -> what it does now (for docs/tests)

    def set(self, owner: object, name: str, value: object, label: str, what: str = "") -> None:
        previous = vars(owner).get(name, self._MISSING) if hasattr(owner, "__dict__") else self._MISSING
        self._undo.append((owner, name, previous))
        setattr(owner, name, value)
        self.patched[label] = what

    def wrap(self, owner: object, name: str, make, label: str, what: str = "") -> bool:
        """Replace ``owner.name`` with ``make(original)``; False if the attribute does not exist."""
        original = getattr(owner, name, None)
        if original is None:
            return False
        self.set(owner, name, make(original), label, what)
        return True

    def undo(self) -> None:
        while self._undo:
            owner, name, previous = self._undo.pop()
            if previous is self._MISSING:
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass
            else:
                setattr(owner, name, previous)
        self.patched.clear()


class _State:
    patcher: Patcher | None = None
    config: Config | None = None
    policy: CallerPolicy | None = None
    classification: CudaClassification | None = None
    lazy: list = []
    atexit_registered = False


STATE = _State()


# --------------------------------------------------------------------------- generic wrappers

def _converted_device(api: str, value, ints: bool = True):
    """The NPU spelling of a CUDA device ``value`` (str / torch.device / an int index when ``ints``), with
    the change counted in the change log; None when ``value`` is not a CUDA device.

    Every device-argument wrapper goes through here: one dict lookup on the hot path once a call site
    has been seen. Int indices are converted but not logged (they mean the same device on the NPU).
    """
    new = npu_device_cached(value) if ints else npu_device(value)
    if new is not None and value.__class__ is not int:
        hit = HITS.get((api, value, new))
        if hit is None:
            record(api, "device", value, new, depth=3)
        else:
            hit.count += 1
    return new


def _kw_device(original, api: str, names=("device",)):
    """Convert CUDA values (str / torch.device / int index) in the keyword arguments ``names``."""
    if len(names) == 1:
        key = names[0]

        @functools.wraps(original)
        def wrapper_one(*args, **kwargs):  # the factories' hot path: no loop
            if kwargs:
                value = kwargs.get(key)
                if value is not None:
                    new = _converted_device(api, value)
                    if new is not None:
                        kwargs[key] = new
            return original(*args, **kwargs)

        return wrapper_one

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if kwargs:
            for key in names:
                value = kwargs.get(key)
                if value is not None:
                    new = _converted_device(api, value)
                    if new is not None:
                        kwargs[key] = new
        return original(*args, **kwargs)

    return wrapper


def _first_arg_device(original, api: str, key: str = "device", index: int = 0, ints: bool = True):
    """Convert a device given positionally at ``index`` or as keyword ``key``."""

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        if len(args) > index:
            value = args[index]
            if value is not None:
                new = _converted_device(api, value, ints)
                if new is not None:
                    args = args[:index] + (new,) + args[index + 1:]
        elif kwargs:
            value = kwargs.get(key)
            if value is not None:
                new = _converted_device(api, value, ints)
                if new is not None:
                    kwargs[key] = new
        return original(*args, **kwargs)

    return wrapper


def _bound(original, api: str, converters: dict, defaults: dict | None = None):
    """For rarely called APIs with positional device parameters: bind, convert, call.

    ``converters`` maps parameter name -> (function returning the new value or None, kind).
    ``defaults`` gives replacements for parameters left at a CUDA default (GradScaler's 'cuda').
    """
    signature = inspect.signature(original)
    defaults = defaults or {}

    @functools.wraps(original)
    def wrapper(*args, **kwargs):
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError:
            return original(*args, **kwargs)  # let torch raise its own error message
        arguments = bound.arguments
        changed = False
        for name, (convert, kind) in converters.items():
            if name in arguments:
                value = arguments[name]
                if value is None:
                    continue
                new = convert(value)
                if new is not None:
                    arguments[name] = new
                    changed = True
                    record(api, kind, _hashable(value), _hashable(new))
            elif name in defaults:
                arguments[name] = defaults[name]
                changed = True
                record(api, "device", signature.parameters[name].default, defaults[name])
        if not changed:
            return original(*args, **kwargs)
        return original(*bound.args, **bound.kwargs)

    return wrapper


def _hashable(value):
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((str(k), str(v)) for k, v in value.items()))
    return value


def _device_list(value):
    """DDP ``device_ids``: a list or tuple of indices / devices; ints stay (they are indices)."""
    if not isinstance(value, (list, tuple)):
        return None
    converted = [npu_device(item) if item is not None and item.__class__ is not int else None for item in value]
    if all(item is None for item in converted):
        return None
    result = [new if new is not None else old for old, new in zip(value, converted)]
    return type(value)(result) if isinstance(value, tuple) else result


def _device_type(value):
    return "npu" if value == "cuda" else None


# --------------------------------------------------------------------------- class proxies

class _RedirectMeta(type):
    """Stands in for a class (``torch.cuda.Stream``, ``torch.Generator``): calls are redirected,
    ``isinstance``/``issubclass`` and class attributes are answered by the target class, and
    subclassing the proxy subclasses the target."""

    def __new__(mcls, name, bases, namespace, **kwargs):
        if any(isinstance(base, _RedirectMeta) for base in bases) and "__transplant_target__" not in namespace:
            bases = tuple(base.__transplant_target__ if isinstance(base, _RedirectMeta) else base for base in bases)
            return type(name, bases, namespace, **kwargs)
        return super().__new__(mcls, name, bases, namespace)

    def __call__(cls, *args, **kwargs):
        return cls.__transplant_call__(*args, **kwargs)

    def __instancecheck__(cls, instance):
        return isinstance(instance, cls.__transplant_target__)

    def __subclasscheck__(cls, subclass):
        return issubclass(subclass, cls.__transplant_target__)

    def __getattr__(cls, name):
        return getattr(cls.__transplant_target__, name)


def _proxy_class(name: str, module: str, target: type, call) -> type:
    namespace = {
        "__transplant_target__": target,
        "__transplant_call__": staticmethod(call),
        "__module__": module,
        "__qualname__": name,
        "__doc__": getattr(target, "__doc__", None),
    }
    return _RedirectMeta(name, (), namespace)


# --------------------------------------------------------------------------- patches

def _patch_factories(p: Patcher) -> None:
    # torch.set_default_device / `with torch.device(...)` recognise factories by identity in a cached
    # set: fill that cache with the real functions before they are wrapped.
    import torch.utils._device as device_context

    device_context._device_constructors()
    for name in FACTORIES:
        p.wrap(torch, name, lambda f, n=name: _kw_device(f, f"torch.{n}"), f"torch.{name}", "device=")
    for name in ("fftfreq", "rfftfreq"):
        p.wrap(torch.fft, name, lambda f, n=name: _kw_device(f, f"torch.fft.{n}"), f"torch.fft.{name}", "device=")
    for name in ("set_default_device", "get_device_module"):
        p.wrap(torch, name, lambda f, n=name: _first_arg_device(f, f"torch.{n}"), f"torch.{name}", "device")


def _to_wrapper(original_to, api: str):
    """``Tensor.to`` / ``Module.to``: the device may come first positionally (str, device, int index)
    or as ``device=``; dtypes, tensors and everything else pass through untouched."""
    device_cls = torch.device

    def to(self, *args, **kwargs):
        if args:
            value = args[0]
            cls = value.__class__
            if cls is str or cls is device_cls or cls is int:
                new = _converted_device(api, value)
                if new is not None:
                    args = (new,) + args[1:]
        if kwargs:
            value = kwargs.get("device")
            if value is not None:
                new = _converted_device(api, value)
                if new is not None:
                    kwargs["device"] = new
        return original_to(self, *args, **kwargs)

    return to


def _patch_tensor(p: Patcher, policy: CallerPolicy) -> None:
    Tensor = torch.Tensor
    original_to = Tensor.to
    to = _to_wrapper(original_to, "torch.Tensor.to")

    functools.update_wrapper(to, original_to)
    p.set(Tensor, "to", to, "torch.Tensor.to", "device (positional or keyword)")
    for name in TENSOR_NEW_METHODS:
        p.wrap(Tensor, name, lambda f, n=name: _kw_device(f, f"torch.Tensor.{n}"), f"torch.Tensor.{name}", "device=")
    for name in ("pin_memory", "is_pinned"):
        p.wrap(Tensor, name, lambda f, n=name: _first_arg_device(f, f"torch.Tensor.{n}", index=1, ints=False),
               f"torch.Tensor.{name}", "device")

    cuda_key = ("torch.Tensor.cuda", ".cuda()", ".npu()")

    def cuda(self, device=None, non_blocking=False, **kwargs):
        if device is not None:
            new = npu_device(device)
            if new is not None:
                device = new
        hit = HITS.get(cuda_key)
        if hit is None:
            record(*cuda_key[:1], "method", *cuda_key[1:])
        else:
            hit.count += 1
        return self.npu(device, non_blocking, **kwargs)

    functools.update_wrapper(cuda, Tensor.cuda)
    p.set(Tensor, "cuda", cuda, "torch.Tensor.cuda", "-> Tensor.npu")

    base_is_cuda = torch._C.TensorBase.is_cuda.__get__

    def is_cuda(self):
        if self.is_npu and not policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
            record("torch.Tensor.is_cuda", "attribute", ".is_cuda", ".is_npu")
            return True
        return base_is_cuda(self)

    p.set(Tensor, "is_cuda", property(is_cuda, doc="True on the NPU for user code (transplant.auto)."),
          "torch.Tensor.is_cuda", "-> is_npu for user code")

    for storage_cls in (torch.UntypedStorage, torch.TypedStorage):
        base = inspect.getattr_static(storage_cls, "is_cuda")
        getter = base.fget if isinstance(base, property) else base.__get__

        def storage_is_cuda(self, _getter=getter, _api=f"torch.{storage_cls.__name__}.is_cuda"):
            if self.device.type == "npu" and not policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
                record(_api, "attribute", ".is_cuda", ".is_npu")
                return True
            return _getter(self)

        p.set(storage_cls, "is_cuda", property(storage_is_cuda), f"torch.{storage_cls.__name__}.is_cuda",
              "-> is_npu for user code")

    _patch_tensor_type(p)


def _legacy_types() -> dict[str, tuple[str, torch.dtype, torch.dtype]]:
    """'torch.cuda.FloatTensor' -> ('torch.npu.FloatTensor', source dtype, target dtype) from the rules."""
    result = {}
    for source, target in (STATE.classification.renames if STATE.classification else {}).items():
        name = source.rpartition(".")[2]
        if not (source.startswith("torch.cuda.") and name.endswith("Tensor")):
            continue
        source_cls = _resolve(source)
        if source_cls is None or not hasattr(source_cls, "dtype"):
            continue
        target_cls = _resolve(target)
        target_dtype = getattr(target_cls, "dtype", None) or source_cls.dtype
        result[source] = (target, source_cls.dtype, target_dtype)
    return result


def _patch_tensor_type(p: Patcher) -> None:
    legacy = _legacy_types()
    if not legacy:
        return
    original_type = torch.Tensor.type

    def type_(self, dtype=None, non_blocking=False, **kwargs):
        key = dtype if isinstance(dtype, str) else getattr(dtype, "__transplant_api__", None)
        entry = legacy.get(key) if key is not None else None
        if entry is None:
            return original_type(self, dtype, non_blocking, **kwargs)
        target, source_dtype, target_dtype = entry
        classification = STATE.classification
        severity = classification.severities.get(key, "safe") if classification else "safe"
        record("torch.Tensor.type", "tensor_type", key, target,
               severity="review" if source_dtype != target_dtype else severity)
        if source_dtype != target_dtype:
            _warn_dtype(key, target, source_dtype, target_dtype)
        elif severity == "review":
            _warn_review(key, target, classification.messages.get(key, ""))
        device = self.device if self.device.type == "npu" else torch.device("npu", torch.npu.current_device())
        return self.to(device=device, dtype=target_dtype, non_blocking=non_blocking)

    functools.update_wrapper(type_, original_type)
    p.set(torch.Tensor, "type", type_, "torch.Tensor.type", "'torch.cuda.XTensor' -> NPU")

    original_default = getattr(torch, "set_default_tensor_type", None)
    if original_default is None:
        return

    def set_default_tensor_type(t):
        key = t if isinstance(t, str) else getattr(t, "__transplant_api__", None)
        entry = legacy.get(key) if key is not None else None
        if entry is None:
            return original_default(t)
        target, source_dtype, target_dtype = entry
        record("torch.set_default_tensor_type", "tensor_type", key, target)
        if source_dtype != target_dtype:
            _warn_dtype(key, target, source_dtype, target_dtype)
        # what a CUDA default tensor type means: this dtype, created on the accelerator
        torch.set_default_dtype(target_dtype)
        torch.set_default_device("npu")

    functools.update_wrapper(set_default_tensor_type, original_default)
    p.set(torch, "set_default_tensor_type", set_default_tensor_type, "torch.set_default_tensor_type",
          "'torch.cuda.XTensor' -> default dtype + default device npu")


def _warn_dtype(source: str, target: str, source_dtype, target_dtype) -> None:
    file, line, _ = _record.user_site(sys._getframe(2))
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename != file:
        frame = frame.f_back
    registry = frame.f_globals.setdefault("__warningregistry__", {}) if frame is not None else None
    warnings.warn_explicit(
        f"transplant.auto: {source} runs as {target} ({source_dtype} becomes {target_dtype}); "
        f"cast explicitly if the precision matters",
        TransplantAutoWarning, file, line, registry=registry,
    )


def _patch_module(p: Patcher) -> None:
    Module = torch.nn.Module
    original_to = Module.to
    to = _to_wrapper(original_to, "torch.nn.Module.to")

    functools.update_wrapper(to, original_to)
    p.set(Module, "to", to, "torch.nn.Module.to", "device (positional or keyword)")
    p.wrap(Module, "to_empty", lambda f: _kw_device(f, "torch.nn.Module.to_empty"), "torch.nn.Module.to_empty", "device=")

    def module_cuda(self, device=None):
        if device is not None:
            new = npu_device(device)
            if new is not None:
                device = new
        record("torch.nn.Module.cuda", "method", ".cuda()", ".npu()")
        return self.npu(device)

    functools.update_wrapper(module_cuda, Module.cuda)
    p.set(Module, "cuda", module_cuda, "torch.nn.Module.cuda", "-> Module.npu")

    packed = torch.nn.utils.rnn.PackedSequence

    def packed_cuda(self, *args, **kwargs):
        record("torch.nn.utils.rnn.PackedSequence.cuda", "method", ".cuda()", ".npu()")
        return self.npu(*args, **kwargs)

    p.set(packed, "cuda", packed_cuda, "torch.nn.utils.rnn.PackedSequence.cuda", "-> PackedSequence.npu")


def _patch_load(p: Patcher) -> None:
    original = torch.load

    def on_cuda_storage(tag, new):
        record("torch.load", "checkpoint", tag, new, depth=3,
               message=f"torch.load restored a storage saved on {tag} onto {new}")

    @functools.wraps(original)
    def load(f, map_location=None, *args, **kwargs):
        if map_location is None or isinstance(map_location, dict):
            map_location = CudaLocations(map_location, on_cuda_storage)
        elif not callable(map_location):
            new = npu_device_or_index(map_location)
            if new is not None:
                if map_location.__class__ is not int:
                    record("torch.load", "device", map_location, new)
                map_location = new
        return original(f, map_location, *args, **kwargs)

    p.set(torch, "load", load, "torch.load", "map_location; CUDA-tagged storages -> NPU")


def _patch_generator_stream_event(p: Patcher) -> None:
    for name, key in (("Generator", "device"), ("Stream", "device"), ("Event", "device")):
        target = getattr(torch, name, None)
        if target is None or isinstance(target, _RedirectMeta):
            continue
        call = _first_arg_device(target, f"torch.{name}", key=key)
        p.set(torch, name, _proxy_class(name, "torch", target, call), f"torch.{name}", "device")


def _patch_amp(p: Patcher) -> None:
    autocast = torch.amp.autocast_mode.autocast
    p.wrap(autocast, "__init__",
           lambda f: _bound(f, "torch.autocast", {"device_type": (_device_type, "device")}),
           "torch.autocast", "device_type 'cuda' -> 'npu'")
    scaler = torch.amp.grad_scaler.GradScaler
    p.wrap(scaler, "__init__",
           lambda f: _bound(f, "torch.amp.GradScaler", {"device": (_device_type, "device")},
                            defaults={"device": "npu"}),
           "torch.amp.GradScaler", "device 'cuda' (also the default) -> 'npu'")
    for name in ("custom_fwd", "custom_bwd"):
        p.wrap(torch.amp, name,
               lambda f, n=name: _bound(f, f"torch.amp.{n}", {"device_type": (_device_type, "device")}),
               f"torch.amp.{name}", "device_type")
    for name in ("get_autocast_dtype", "set_autocast_dtype"):
        p.wrap(torch, name, lambda f, n=name: _first_arg_device(f, f"torch.{n}", key="device_type", ints=False),
               f"torch.{name}", "device_type")
    _patch_legacy_autocast_queries(p, STATE.policy)


def _patch_legacy_autocast_queries(p: Patcher, policy: CallerPolicy) -> None:
    """The CUDA-era forms without a device type (``torch.is_autocast_enabled()``, ``*_gpu_dtype``) mean
    CUDA; from user code they now mean the NPU. torch itself keeps the original meaning."""
    is_enabled = torch.is_autocast_enabled
    is_enabled_typed = _first_arg_device(is_enabled, "torch.is_autocast_enabled", key="device_type", ints=False)

    @functools.wraps(is_enabled)
    def is_autocast_enabled(*args, **kwargs):
        if not args and not kwargs and not policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
            record("torch.is_autocast_enabled", "device", "torch.is_autocast_enabled()", "torch.is_autocast_enabled('npu')")
            return is_enabled("npu")
        return is_enabled_typed(*args, **kwargs)

    p.set(torch, "is_autocast_enabled", is_autocast_enabled, "torch.is_autocast_enabled", "device_type; () -> 'npu'")

    set_enabled = torch.set_autocast_enabled
    set_enabled_typed = _first_arg_device(set_enabled, "torch.set_autocast_enabled", key="device_type", ints=False)

    @functools.wraps(set_enabled)
    def set_autocast_enabled(*args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], bool) \
                and not policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
            record("torch.set_autocast_enabled", "device", "torch.set_autocast_enabled(enabled)",
                   "torch.set_autocast_enabled('npu', enabled)")
            return set_enabled("npu", args[0])
        return set_enabled_typed(*args, **kwargs)

    p.set(torch, "set_autocast_enabled", set_autocast_enabled, "torch.set_autocast_enabled", "device_type; (b) -> 'npu'")

    for name, replacement in (("get_autocast_gpu_dtype", lambda: torch.get_autocast_dtype("npu")),
                              ("set_autocast_gpu_dtype", lambda dtype: torch.set_autocast_dtype("npu", dtype))):
        original = getattr(torch, name, None)
        if original is None:
            continue

        def legacy(*args, _original=original, _replacement=replacement, _name=name, **kwargs):
            if policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
                return _original(*args, **kwargs)
            record(f"torch.{_name}", "device", f"torch.{_name}", f"torch.{_name.replace('_gpu', '')}('npu')")
            return _replacement(*args, **kwargs)

        functools.update_wrapper(legacy, original)
        p.set(torch, name, legacy, f"torch.{name}", "-> the NPU autocast dtype")


def _takes_device_type(target) -> bool:
    """torch.amp.autocast/GradScaler/custom_fwd/custom_bwd: the CUDA-era spelling must supply one."""
    if not (getattr(target, "__module__", "") or "").startswith("torch.amp"):
        return False
    try:
        signature = inspect.signature(target.__init__ if isinstance(target, type) else target)
    except (TypeError, ValueError):
        return False
    return any(name in ("device_type", "device") for name in signature.parameters)


def _amp_adapter(api: str, source, target, rule: str):
    """torch.cuda.amp.X -> torch.amp.X with the NPU device type, keeping X's CUDA-era signature."""
    signature = inspect.signature(source)
    target_signature = inspect.signature(target.__init__ if isinstance(target, type) else target)
    device_param = next((n for n in target_signature.parameters if n in ("device_type", "device")), "device_type")
    target_name = f"torch.amp.{target.__name__}"

    def arguments(args, kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        values = dict(bound.arguments)
        values[device_param] = "npu"
        return values

    if isinstance(target, type):
        def __init__(self, *args, **kwargs):
            record(api, "amp", api, f"{target_name}('npu')", rule=rule)
            target.__init__(self, **arguments(args, kwargs))

        adapter = type(source.__name__, (target,), {
            "__init__": __init__, "__module__": source.__module__,
            "__qualname__": source.__qualname__, "__doc__": source.__doc__,
        })
        return adapter

    @functools.wraps(source)
    def function(*args, **kwargs):
        record(api, "amp", api, f"{target_name}(device_type='npu')", rule=rule)
        return target(**arguments(args, kwargs))

    return function


def _resolve(qualified: str):
    """Attribute-walk a dotted name from ``torch``; None if any part is missing."""
    parts = qualified.split(".")
    if parts[0] != "torch":
        return None
    obj = torch
    for part in parts[1:]:
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def _owner(qualified: str):
    owner_name, _, attr = qualified.rpartition(".")
    return _resolve(owner_name), attr


def _warn_review(api: str, target_name: str, message: str) -> None:
    """Review-severity redirects change meaning a little (float64, graphs): say so once per call site."""
    file, line, _ = _record.user_site(sys._getframe(2))
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename != file:
        frame = frame.f_back
    registry = frame.f_globals.setdefault("__warningregistry__", {}) if frame is not None else None
    warnings.warn_explicit(f"transplant.auto: {api} runs as {target_name}: {message}",
                           TransplantAutoWarning, file, line, registry=registry)


def _npu_arguments(args: tuple, kwargs: dict, positional: int) -> tuple[tuple, dict]:
    """For redirected torch.cuda callables: CUDA devices (str / torch.device) among the first
    ``positional`` arguments and in ``device=`` become NPU ones; ints stay (they are indices)."""
    for index in range(min(positional, len(args))):
        value = args[index]
        if value.__class__ is str or value.__class__ is torch.device:
            new = npu_device(value)
            if new is not None:
                args = args[:index] + (new,) + args[index + 1:]
    if kwargs:
        value = kwargs.get("device")
        if value is not None and value.__class__ is not int:
            new = npu_device(value)
            if new is not None:
                kwargs["device"] = new
    return args, kwargs


def _redirect_function(api: str, target, target_name: str, policy: CallerPolicy, rule: str, severity: str,
                       message: str = ""):
    review = severity == "review"

    @functools.wraps(target)
    def redirect(*args, **kwargs):
        if args or kwargs:
            args, kwargs = _npu_arguments(args, kwargs, len(args))
        if not policy.is_internal(sys._getframe(1).f_globals.get("__name__", "")):
            record(api, "redirect", api, target_name, rule=rule, severity=severity)
            if review:
                _warn_review(api, target_name, message)
        return target(*args, **kwargs)

    redirect.__name__ = api.rpartition(".")[2]
    redirect.__qualname__ = redirect.__name__
    return redirect


def _availability(api: str, real, npu, target_name: str, policy: CallerPolicy, rule: str):
    @functools.wraps(real)
    def query(*args, **kwargs):
        if policy.sees_real_cuda(sys._getframe(1).f_globals.get("__name__", "")):
            return real(*args, **kwargs)
        record(api, "redirect", api, target_name, rule=rule)
        return npu(*args, **kwargs)

    return query


def _redirect_class(api: str, target: type, target_name: str, policy: CallerPolicy, rule: str, source=None,
                    severity: str = "safe", message: str = ""):
    with warnings.catch_warnings():
        # the legacy torch.cuda.XStorage classes warn "TypedStorage is deprecated" on any .dtype read
        warnings.simplefilter("ignore")
        source_dtype = getattr(source, "dtype", None)
        target_dtype = getattr(target, "dtype", None)
    dtype_changes = isinstance(source_dtype, torch.dtype) and isinstance(target_dtype, torch.dtype) \
        and source_dtype != target_dtype
    review = severity == "review" and not dtype_changes

    def call(*args, **kwargs):
        if args or kwargs:
            args, kwargs = _npu_arguments(args, kwargs, 1)
        if not policy.is_internal(sys._getframe(2).f_globals.get("__name__", "")):
            record(api, "redirect", api, target_name, depth=3, rule=rule,
                   severity="review" if dtype_changes else severity)
            if dtype_changes:
                _warn_dtype(api, target_name, source_dtype, target_dtype)
            elif review:
                _warn_review(api, target_name, message)
        return target(*args, **kwargs)

    owner, _, name = api.rpartition(".")
    proxy = _proxy_class(name, owner, target, call)
    proxy.__transplant_api__ = api
    return proxy


def _unsupported_function(api: str, original, tip: str, policy: CallerPolicy, rule: str):
    @functools.wraps(original)
    def unsupported(*args, **kwargs):
        caller = sys._getframe(1)
        if not policy.is_internal(caller.f_globals.get("__name__", "")):
            record(api, "unsupported", api, "", rule=rule, severity="review",
                   message=f"{api} has no NPU equivalent: {tip}")
            warnings.warn_explicit(
                f"transplant.auto: {api} has no NPU equivalent: {tip}", TransplantAutoWarning,
                caller.f_code.co_filename, caller.f_lineno,
                registry=caller.f_globals.setdefault("__warningregistry__", {}),
            )
        return original(*args, **kwargs)

    return unsupported


def _patch_cuda_namespace(p: Patcher, policy: CallerPolicy, classification: CudaClassification) -> None:
    renames = dict(classification.renames)
    # A module-level key ("torch.cuda.random": "torch.npu.random") renames its public members too.
    for source, target in list(renames.items()):
        source_obj, target_obj = _resolve(source), _resolve(target)
        if inspect.ismodule(source_obj) and inspect.ismodule(target_obj):
            for name in dir(source_obj):
                member = getattr(source_obj, name, None)
                if name.startswith("_") or inspect.ismodule(member) or not callable(member):
                    continue
                if hasattr(target_obj, name):
                    renames.setdefault(f"{source}.{name}", f"{target}.{name}")
                    classification.rule_ids.setdefault(f"{source}.{name}", classification.rule_ids.get(source, ""))

    availability = {"torch.cuda.is_available", "torch.cuda.device_count"}
    for source in sorted(renames):
        target_name = renames[source]
        owner, attr = _owner(source)
        original = getattr(owner, attr, None) if owner is not None else None
        target = _resolve(target_name)
        rule = classification.rule_ids.get(source, "")
        severity = classification.severities.get(source, "safe")
        if owner is None or target is None or inspect.ismodule(target) or inspect.ismodule(original):
            continue
        if original is target:
            continue  # a device-agnostic name re-exported by torch.cuda (torch.cuda.OutOfMemoryError)
        message = classification.messages.get(source, "")
        if original is not None and _takes_device_type(target):
            value = _amp_adapter(source, original, target, rule)
        elif source in availability and original is not None:
            value = _availability(source, original, target, target_name, policy, rule)
        elif isinstance(target, type) and issubclass(target, BaseException):
            value = target  # `except torch.cuda.X:` needs a real exception class, not a proxy
        elif isinstance(target, type):
            value = _redirect_class(source, target, target_name, policy, rule, original, severity, message)
        elif callable(target):
            value = _redirect_function(source, target, target_name, policy, rule, severity, message)
        else:
            value = target  # plain data (e.g. default_generators): the NPU object itself
        p.set(owner, attr, value, source, f"-> {target_name}")

    for name, tip in sorted(classification.unsupported.items()):
        if name in renames:
            continue
        obj = _resolve(name)
        rule = classification.rule_ids.get(name, "")
        if inspect.ismodule(obj):
            members = [(obj, n, m) for n, m in vars(obj).items()
                       if not n.startswith("_") and inspect.isfunction(m) and m.__module__ == obj.__name__]
        elif inspect.isfunction(obj) or inspect.isbuiltin(obj):
            owner, attr = _owner(name)
            members = [(owner, attr, obj)]
        else:
            continue
        for owner, attr, function in members:
            label = f"{name}.{attr}" if inspect.ismodule(obj) else name
            if label in p.patched:
                continue
            p.set(owner, attr, _unsupported_function(label, function, tip, policy, rule), label, "warns: unsupported")


def _patch_distributed(p: Patcher, policy: CallerPolicy) -> None:
    if not torch.distributed.is_available():
        return
    dist = torch.distributed
    c10d = dist.distributed_c10d
    backend = (npu_backend, "backend")
    for name, converters in (
        ("init_process_group", {"backend": backend, "device_id": (npu_device_or_index, "device")}),
        ("new_group", {"backend": backend, "device_id": (npu_device_or_index, "device")}),
    ):
        original = getattr(c10d, name)
        wrapped = _bound(original, f"torch.distributed.{name}", converters)
        p.set(c10d, name, wrapped, f"torch.distributed.{name}", "backend nccl -> hccl, device_id")
        if getattr(dist, name, None) is original:
            p.set(dist, name, wrapped, f"torch.distributed.{name}@dist", "")

    real_nccl = c10d.is_nccl_available

    def is_nccl_available():
        if policy.sees_real_cuda(sys._getframe(1).f_globals.get("__name__", "")):
            return real_nccl()
        record("torch.distributed.is_nccl_available", "backend", "nccl", "hccl")
        return dist.is_backend_available("hccl")

    functools.update_wrapper(is_nccl_available, real_nccl)
    p.set(c10d, "is_nccl_available", is_nccl_available, "torch.distributed.is_nccl_available", "-> hccl")
    if getattr(dist, "is_nccl_available", None) is real_nccl:
        p.set(dist, "is_nccl_available", is_nccl_available, "torch.distributed.is_nccl_available@dist", "")

    ddp = torch.nn.parallel.DistributedDataParallel
    p.wrap(ddp, "__init__",
           lambda f: _bound(f, "torch.nn.parallel.DistributedDataParallel",
                            {"device_ids": (_device_list, "device"), "output_device": (npu_device, "device")}),
           "torch.nn.parallel.DistributedDataParallel", "device_ids (list or tuple), output_device")

    mesh = getattr(dist, "device_mesh", None)
    if mesh is not None:
        device_type = (_device_type, "device")
        if hasattr(mesh, "init_device_mesh"):
            original = mesh.init_device_mesh
            wrapped = _bound(original, "torch.distributed.device_mesh.init_device_mesh", {"device_type": device_type})
            p.set(mesh, "init_device_mesh", wrapped, "torch.distributed.device_mesh.init_device_mesh", "device_type")
        if hasattr(mesh, "DeviceMesh"):
            p.wrap(mesh.DeviceMesh, "__init__",
                   lambda f: _bound(f, "torch.distributed.device_mesh.DeviceMesh", {"device_type": device_type}),
                   "torch.distributed.device_mesh.DeviceMesh", "device_type")


def _patch_fsdp(module) -> None:
    p = STATE.patcher
    if p is None:
        return
    fsdp = getattr(module, "FullyShardedDataParallel", None)
    if fsdp is not None:
        p.wrap(fsdp, "__init__",
               lambda f: _bound(f, "torch.distributed.fsdp.FullyShardedDataParallel",
                                {"device_id": (npu_device_or_index, "device")}),
               "torch.distributed.fsdp.FullyShardedDataParallel", "device_id")


def _patch_pipelining(module) -> None:
    p = STATE.patcher
    if p is None:
        return
    stage = getattr(module, "PipelineStage", None)
    if stage is not None:
        p.wrap(stage, "__init__",
               lambda f: _bound(f, "torch.distributed.pipelining.stage.PipelineStage", {"device": (npu_device_or_index, "device")}),
               "torch.distributed.pipelining.stage.PipelineStage", "device")
    if hasattr(module, "build_stage"):
        p.wrap(module, "build_stage",
               lambda f: _bound(f, "torch.distributed.pipelining.stage.build_stage", {"device": (npu_device_or_index, "device")}),
               "torch.distributed.pipelining.stage.build_stage", "device")


def _patch_device_context(module) -> None:
    p = STATE.patcher
    if p is None:
        return
    context = getattr(module, "DeviceContext", None)
    if context is not None:
        p.wrap(context, "__init__", lambda f: _first_arg_device(f, "torch.utils._device.DeviceContext", index=1),
               "torch.utils._device.DeviceContext", "device")


def _patch_data_and_profiler(p: Patcher) -> None:
    loader = torch.utils.data.DataLoader
    p.wrap(loader, "__init__", lambda f: _kw_device(f, "torch.utils.data.DataLoader", names=("pin_memory_device",)),
           "torch.utils.data.DataLoader", "pin_memory_device")

    activity = torch.profiler.ProfilerActivity
    supported = torch.profiler.supported_activities()
    replacement = activity.PrivateUse1 if activity.PrivateUse1 in supported else None

    def activities(value):
        if value is None or activity.CUDA not in list(value):
            return None
        result = []
        for item in value:
            if item == activity.CUDA:
                if replacement is not None and replacement not in result:
                    result.append(replacement)
            elif item not in result:
                result.append(item)
        return result

    p.wrap(torch.profiler.profile, "__init__",
           lambda f: _bound(f, "torch.profiler.profile", {"activities": (activities, "device")}),
           "torch.profiler.profile", "activities CUDA -> PrivateUse1 (NPU) or dropped")


def _patch_lazy_parameters(p: Patcher) -> None:
    """torch lists the Tensor methods an uninitialised (lazy) parameter accepts, by identity
    (``UninitializedTensorMixin._allowed_methods``): the wrappers that replaced them join the list, so
    ``LazyLinear(4).to('cuda')`` keeps working."""
    mixin = torch.nn.parameter.UninitializedTensorMixin
    allowed = list(mixin._allowed_methods)
    names = {getattr(method, "__name__", None) for method in allowed}
    extra = [getattr(torch.Tensor, label.rpartition(".")[2]) for label in list(p.patched)
             if label.startswith("torch.Tensor.") and label.count(".") == 2 and label.rpartition(".")[2] in names]
    extra = [method for method in extra if method not in allowed]
    if extra:
        p.set(mixin, "_allowed_methods", allowed + extra, "torch.nn.parameter.UninitializedTensorMixin._allowed_methods",
              "+ the patched Tensor methods (to, cuda)")


def _patch_profiler_kernel(p: Patcher) -> None:
    """``torch.autograd.profiler_util.Kernel(name, 'cuda', duration)``: the kernel ran on the NPU."""
    util = torch.autograd.profiler_util
    kernel = getattr(util, "Kernel", None)
    if kernel is None or not isinstance(kernel, type) or not issubclass(kernel, tuple):
        return

    def __new__(cls, name, device, duration):
        new = npu_device(device) if device is not None else None
        if new is not None:
            record("torch.autograd.profiler_util.Kernel", "device", device, str(new))
            device = str(new)
        return kernel.__new__(cls, name, device, duration)

    npu_kernel = type("Kernel", (kernel,), {"__new__": __new__, "__slots__": (), "__module__": kernel.__module__,
                                            "__doc__": kernel.__doc__})
    p.set(util, "Kernel", npu_kernel, "torch.autograd.profiler_util.Kernel", "device 'cuda' -> 'npu'")


# --------------------------------------------------------------------------- install / uninstall

def _import_torch_npu() -> None:
    try:
        import torch_npu  # noqa: F401 - registers the npu device (real package or the emulator's stand-in)
    except ImportError as error:
        raise ImportError(
            "transplant.auto needs torch_npu (Ascend's PyTorch adapter) to be importable; "
            "install the torch_npu matching your torch, or run under `transplant run` (emulated NPU)"
        ) from error


def install(config: Config | None = None) -> bool:
    """Patch torch so CUDA code runs on the NPU. Returns False if it was already installed."""
    if STATE.patcher is not None:
        return False
    _import_torch_npu()
    config = config or Config.from_environ()
    policy = CallerPolicy(config)
    classification = load_classification()
    p = Patcher()
    STATE.patcher, STATE.config, STATE.policy, STATE.classification = p, config, policy, classification
    try:
        _patch_factories(p)
        _patch_tensor(p, policy)
        _patch_module(p)
        _patch_load(p)
        _patch_generator_stream_event(p)
        _patch_amp(p)
        _patch_cuda_namespace(p, policy, classification)
        _patch_distributed(p, policy)
        _patch_data_and_profiler(p)
        _patch_profiler_kernel(p)
        _patch_lazy_parameters(p)
    except BaseException:
        p.undo()
        STATE.patcher = None
        raise
    STATE.lazy = [("torch.distributed.fsdp.fully_sharded_data_parallel", _patch_fsdp),
                  ("torch.distributed.pipelining.stage", _patch_pipelining)]
    _patch_device_context(sys.modules["torch.utils._device"])
    for name, callback in STATE.lazy:
        FINDER.register(name, callback)
    if not STATE.atexit_registered:
        atexit.register(_write_report_at_exit)
        STATE.atexit_registered = True
    _banner(config, classification)
    return True


def uninstall() -> bool:
    """Restore every patched attribute. Returns False if nothing was installed."""
    if STATE.patcher is None:
        return False
    for _, callback in STATE.lazy:
        FINDER.discard(callback)
    STATE.lazy = []
    STATE.patcher.undo()
    STATE.patcher = None
    return True


def patched_names() -> dict[str, str]:
    """Qualified name -> what the patch does, for the names currently patched."""
    return dict(STATE.patcher.patched) if STATE.patcher else {}


def _banner(config: Config, classification: CudaClassification) -> None:
    rank = os.environ.get("RANK", "0")
    if config.quiet or (rank.isdigit() and int(rank) != 0) or os.environ.get("TRANSPLANT_AUTO_BANNER_SHOWN"):
        return
    # Child processes inherit this, so a torchrun job or a DataLoader worker pool shows it once.
    os.environ["TRANSPLANT_AUTO_BANNER_SHOWN"] = "1"
    report = f"; change log -> {config.report}" if config.report else "; TRANSPLANT_AUTO_REPORT=changes.csv logs the changes"
    _log.warning("transplant.auto: CUDA calls run on the Ascend NPU%s (TRANSPLANT_AUTO_QUIET=1 hides this)", report)


def _write_report_at_exit() -> None:
    config = STATE.config
    path = (config.report if config else None) or os.environ.get("TRANSPLANT_AUTO_REPORT")
    if not path:
        return
    target = _record.report_path(path)
    # A launcher (torchrun) that hit nothing must not overwrite what its rank-0 worker wrote.
    if not _record.HITS and target.exists():
        return
    try:
        _record.write_report(target, rule_index())
    except OSError as error:
        _log.warning("transplant.auto: could not write %s: %s", target, error)
