"""Kernels registered with the dispatcher for the emulated npu device.

* PrivateUse1 kernels for every aten factory (an op with a ``device`` argument and no tensor
  argument): ``torch.zeros(3, device='npu')`` never reaches the Python key, so it lands here.
* PrivateUse1 kernels for the few tensor ops torch runs with the Python key excluded
  (``torch.tensor(..., device='npu')``, ``as_tensor``, ``new_tensor``).
* Python versions of ``_thnn_fused_lstm_cell`` / ``_thnn_fused_gru_cell`` and their backward:
  core selects them for every non-CPU device and the CPU build has no kernel for them.
* A fast path for the whole ``aten::lstm`` / ``gru`` / ``rnn_*`` ops (AutogradPrivateUse1): one
  autograd node around the CPU implementation instead of hundreds of per-timestep dispatches.

A boxed Python fallback for PrivateUse1 would be simpler but trips an internal assert in torch
2.13 for any op that also has Python registrations, hence the per-op kernels.
"""

from __future__ import annotations

from typing import Any, List

import torch

from transplant.emulate import _state
from transplant.emulate import tensor as _tensor
from transplant.emulate.tensor import CPU_REPLACEMENTS, NpuTensor, _dispatch

_libs: List[torch.library.Library] = []
_CPU = torch.device("cpu")

# Tensor ops that torch internals run with the Python dispatch key excluded.
_DIRECT_OPS = [
    "copy_", "_to_copy", "_copy_from", "_copy_from_and_resize", "detach", "alias", "view",
    "as_strided", "_reshape_alias", "set_.source_Tensor", "lift_fresh", "clone",
    "_local_scalar_dense", "fill_.Scalar", "fill_.Tensor", "zero_", "resize_", "empty_like",
    "unsqueeze", "squeeze", "select.int", "slice.Tensor", "expand", "t", "transpose.int",
    "permute", "_unsafe_view", "index_put_", "is_pinned",
]


def factory_op_names() -> List[str]:
    """Every aten overload with a ``device`` argument and no tensor argument."""
    names = []
    for full in torch._C._dispatch_get_all_op_names():
        if not full.startswith("aten::"):
            continue
        name, _, overload = full.partition(".")
        try:
            schema = torch._C._get_schema(name, overload)
        except RuntimeError:
            continue
        if not any(a.name == "device" for a in schema.arguments):
            continue
        if any("Tensor" in str(a.type) for a in schema.arguments):
            continue
        names.append(full[len("aten::") :])
    return names


def _overload(name: str) -> Any:
    packet, _, overload = name.partition(".")
    return getattr(getattr(torch.ops.aten, packet), overload or "default")


# Public functions equivalent to common factory overloads (same arguments): calling them is about
# 1.3 us cheaper than the generic schema-parsing op call, and factories are frequent.
_FAST_FACTORIES = {
    "zeros": torch.zeros, "ones": torch.ones, "empty.memory_format": torch.empty, "full": torch.full,
    "empty_strided": torch.empty_strided, "rand": torch.rand, "rand.generator": torch.rand,
    "randn": torch.randn, "randn.generator": torch.randn, "scalar_tensor": torch.scalar_tensor,
    "arange": torch.arange, "arange.start": torch.arange, "arange.start_step": torch.arange,
}


def _make_factory_kernel(op: Any, name: str = ""):
    schema = op._schema
    device_pos = next(i for i, a in enumerate(schema.arguments) if a.name == "device")
    device_kwarg_only = schema.arguments[device_pos].kwarg_only
    seeded = torch.Tag.nondeterministic_seeded in op.tags
    has_generator = any(a.name == "generator" for a in schema.arguments)
    call = _FAST_FACTORIES.get(name) or getattr(op, "_op", op)  # _op: the bound C++ op

    def kernel(*args, **kwargs):
        if _tensor._record is not None:
            _tensor._record(op, args, kwargs)
        if device_kwarg_only or len(args) <= device_pos:
            device = kwargs.get("device")
            kwargs["device"] = _CPU
        else:
            args = list(args)
            device = args[device_pos]
            args[device_pos] = _CPU
        if device is None:
            index = _state.current_index()
        else:
            index = _state.resolve_index(device if type(device) is torch.device else torch.device(device))
        if kwargs.get("pin_memory"):
            kwargs["pin_memory"] = False
        if seeded and kwargs.get("generator") is None:
            result = _state.run_seeded(call, index, has_generator, list(args), kwargs)
        else:
            result = call(*args, **kwargs)
        return NpuTensor(result, index)

    return kernel


def _make_direct_kernel(op: Any):
    def kernel(*args, **kwargs):
        return _dispatch(op, args, kwargs)

    return kernel


def register_device_kernels() -> None:
    """Register the PrivateUse1 factory and direct kernels (once per process)."""
    lib = torch.library.Library("aten", "IMPL")
    _libs.append(lib)
    for name in factory_op_names():
        op = _overload(name)
        lib.impl(name, _make_factory_kernel(op, name), "PrivateUse1")
    for name in _DIRECT_OPS:
        op = _overload(name)
        if torch._C._dispatch_has_kernel_for_dispatch_key(op.name(), "CompositeImplicitAutograd"):
            # A backend kernel on such an op would hide its autograd formula (wrong gradients).
            raise RuntimeError(f"transplant.emulate: {name} became CompositeImplicitAutograd in this torch")
        lib.impl(name, _make_direct_kernel(op), "PrivateUse1")
    _register_rnn_cells()
    _register_rnn_fast_path(lib)
    # Real torch_npu registers its own kernel for this check, so that CPU and NPU dense tensors
    # are shallow-copy compatible: Module.cpu()/.npu() then move parameters in place (`param.data
    # = ...`) and an optimizer built earlier keeps training the module's own Parameters. Core's
    # composite answers False for PrivateUse1 and would replace the Parameter objects instead.
    lib.impl("_has_compatible_shallow_copy_type", _shallow_copy_compatible, "AutogradPrivateUse1")


def _shallow_copy_compatible(self: torch.Tensor, other: torch.Tensor) -> bool:
    def dense_cpu_or_npu(t: torch.Tensor) -> bool:
        return t.layout == torch.strided and t.device.type in ("cpu", _state.DEVICE_TYPE)

    if dense_cpu_or_npu(self) and dense_cpu_or_npu(other):
        return True
    with torch._C._ExcludeDispatchKeyGuard(torch._C.DispatchKeySet(torch._C.DispatchKey.AutogradPrivateUse1)):
        return torch.ops.aten._has_compatible_shallow_copy_type.default(self, other)



# ---------------------------------------------------------------------------------------------
# Fused RNN cells (the CUDA math, on CPU tensors)
# ---------------------------------------------------------------------------------------------


def _fused_lstm_cell(input_gates, hidden_gates, cx, input_bias=None, hidden_bias=None):
    gates = input_gates + hidden_gates
    if input_bias is not None:
        gates = gates + input_bias
    if hidden_bias is not None:
        gates = gates + hidden_bias
    i, f, g, o = gates.chunk(4, 1)
    i = i.sigmoid()
    f = f.sigmoid()
    g = g.tanh()
    o = o.sigmoid()
    cy = f * cx + i * g
    hy = o * cy.tanh()
    workspace = torch.cat([i, f, g, o], 1)
    return hy, cy, workspace


def _fused_lstm_cell_backward_impl(grad_hy, grad_cy, cx, cy, workspace, has_bias):
    i, f, g, o = workspace.chunk(4, 1)
    tanh_cy = cy.tanh()
    grad_c = torch.zeros_like(cy) if grad_cy is None else grad_cy.clone()
    if grad_hy is not None:
        grad_c = grad_c + grad_hy * o * (1 - tanh_cy * tanh_cy)
        grad_o = grad_hy * tanh_cy * o * (1 - o)
    else:
        grad_o = torch.zeros_like(o)
    grad_i = grad_c * g * i * (1 - i)
    grad_f = grad_c * cx * f * (1 - f)
    grad_g = grad_c * i * (1 - g * g)
    grad_gates = torch.cat([grad_i, grad_f, grad_g, grad_o], 1)
    grad_cx = grad_c * f
    grad_bias = grad_gates.sum(0) if has_bias else None
    return grad_gates, grad_cx, grad_bias


def _fused_gru_cell(input_gates, hidden_gates, hx, input_bias=None, hidden_bias=None):
    if input_bias is not None:
        input_gates = input_gates + input_bias
    if hidden_bias is not None:
        hidden_gates = hidden_gates + hidden_bias
    ir, ii, in_ = input_gates.chunk(3, 1)
    hr, hi, hn = hidden_gates.chunk(3, 1)
    r = (ir + hr).sigmoid()
    z = (ii + hi).sigmoid()
    n = (in_ + r * hn).tanh()
    hy = n + z * (hx - n)
    workspace = torch.cat([r, z, n, hx, hn], 1)
    return hy, workspace


def _fused_gru_cell_backward(grad_hy, workspace, has_bias):
    r, z, n, hx, hn = workspace.chunk(5, 1)
    grad_hx = grad_hy * z
    grad_n = grad_hy * (1 - z) * (1 - n * n)
    grad_z = grad_hy * (hx - n) * z * (1 - z)
    grad_r = grad_n * hn * r * (1 - r)
    grad_input_gates = torch.cat([grad_r, grad_z, grad_n], 1)
    grad_hidden_gates = torch.cat([grad_r, grad_z, grad_n * r], 1)
    if has_bias:
        return grad_input_gates, grad_hidden_gates, grad_hx, grad_input_gates.sum(0), grad_hidden_gates.sum(0)
    return grad_input_gates, grad_hidden_gates, grad_hx, None, None


def _register_rnn_cells() -> None:
    aten = torch.ops.aten
    CPU_REPLACEMENTS[aten._thnn_fused_lstm_cell.default] = _fused_lstm_cell
    CPU_REPLACEMENTS[aten._thnn_fused_lstm_cell_backward_impl.default] = _fused_lstm_cell_backward_impl
    CPU_REPLACEMENTS[aten._thnn_fused_gru_cell.default] = _fused_gru_cell
    CPU_REPLACEMENTS[aten._thnn_fused_gru_cell_backward.default] = _fused_gru_cell_backward


# ---------------------------------------------------------------------------------------------
# RNN fast path
# ---------------------------------------------------------------------------------------------


class _CpuComposite(torch.autograd.Function):
    """One autograd node that runs a composite op on the inner CPU tensors.

    Forward records a CPU autograd graph over detached copies of the inputs; backward replays it
    with ``torch.autograd.grad``. Numerically this is exactly the CPU implementation.
    """

    @staticmethod
    def forward(ctx, op, spec, kwargs, index, *tensors):
        leaves = []
        for t in tensors:
            leaf = t._elem.detach() if isinstance(t, NpuTensor) else t.detach()
            if t.requires_grad:
                leaf.requires_grad_(True)
            leaves.append(leaf)
        args = _unflatten(spec, leaves)
        with torch.enable_grad():
            outputs = _state.run_seeded(op, index, False, args, kwargs)
        single = isinstance(outputs, torch.Tensor)
        outputs = (outputs,) if single else tuple(outputs)
        ctx.cpu_inputs = leaves
        ctx.cpu_outputs = outputs
        ctx.index = index
        wrapped = tuple(NpuTensor(o.detach(), index) for o in outputs)
        for w, o in zip(wrapped, outputs):
            if not o.requires_grad:
                ctx.mark_non_differentiable(w)
        return wrapped[0] if single else wrapped

    @staticmethod
    def backward(ctx, *grads):
        if torch.is_grad_enabled():
            raise RuntimeError(
                "double backward (create_graph=True) through RNN or scaled-dot-product-attention ops is "
                "not supported by the emulated NPU"
            )
        if ctx.cpu_inputs is None:
            raise RuntimeError(
                "Trying to backward through the graph a second time (or directly access saved tensors "
                "after they have already been freed). Specify retain_graph=True if you need to backward "
                "through the graph a second time."
            )
        inputs = [x for x in ctx.cpu_inputs if x.requires_grad]
        outs, grad_outs = [], []
        for o, g in zip(ctx.cpu_outputs, grads):
            if g is not None and o.requires_grad:
                outs.append(o)
                grad_outs.append(g._elem if isinstance(g, NpuTensor) else g)
        result = [None, None, None, None]
        if not inputs or not outs:
            return tuple(result + [None] * len(ctx.cpu_inputs))
        # keep the CPU graph when the caller's backward keeps its graph (retain_graph=True)
        retain = torch._C._autograd._get_current_graph_task_keep_graph()
        computed = iter(torch.autograd.grad(outs, inputs, grad_outs, allow_unused=True, retain_graph=retain))
        for x in ctx.cpu_inputs:
            if x.requires_grad:
                g = next(computed)
                result.append(None if g is None else NpuTensor(g, ctx.index))
            else:
                result.append(None)
        if not retain:
            ctx.cpu_inputs = ctx.cpu_outputs = None
        return tuple(result)


def _flatten(args):
    """Split an aten argument list into its tensors and a spec to rebuild it."""
    tensors, spec = [], []
    for a in args:
        if isinstance(a, torch.Tensor):
            spec.append(("t", len(tensors)))
            tensors.append(a)
        elif isinstance(a, (list, tuple)) and a and isinstance(a[0], torch.Tensor):
            spec.append(("l", len(tensors), len(a)))
            tensors.extend(a)
        else:
            spec.append(("v", a))
    return tensors, spec


def _unflatten(spec, tensors):
    args = []
    for item in spec:
        if item[0] == "t":
            args.append(tensors[item[1]])
        elif item[0] == "l":
            args.append(list(tensors[item[1] : item[1] + item[2]]))
        else:
            args.append(item[1])
    return args


def _make_rnn_fast_kernel(op: Any):
    # PackedSequence batch_sizes and CTC lengths are CPU tensors on every device.
    cpu_ok = op._overloadname == "data" or op._schema.name == "aten::ctc_loss"

    def kernel(*args, **kwargs):
        if _tensor._record is not None:
            _tensor._record(op, args, kwargs)
        tensors, spec = _flatten(args)
        index = -1
        for t in tensors:
            if isinstance(t, NpuTensor):
                if index < 0:
                    index = t._npu_index
                elif t._npu_index != index:
                    raise RuntimeError(
                        "Expected all tensors to be on the same device, but found at least two devices, "
                        f"npu:{index} and npu:{t._npu_index}! (when checking argument for {op._schema.name})"
                    )
            elif t.dim() != 0 and not (cpu_ok and t.dtype == torch.int64):
                from transplant.emulate.tensor import device_mismatch_error

                raise device_mismatch_error(f"npu:{max(index, 0)}", str(t.device), op)
        return _CpuComposite.apply(op, spec, kwargs, max(index, 0), *tensors)

    return kernel


# Also attention: on CPU it takes the flash kernel, on other devices the math path; running the
# CPU choice keeps npu numerics identical to CPU ones. CTC's composite mixes in CPU length tensors.
_FAST_OPS = ["lstm.input", "lstm.data", "gru.input", "gru.data", "rnn_tanh.input", "rnn_tanh.data",
             "rnn_relu.input", "rnn_relu.data", "scaled_dot_product_attention", "ctc_loss.Tensor",
             "ctc_loss.IntList"]


def _register_rnn_fast_path(lib: torch.library.Library) -> None:
    for name in _FAST_OPS:
        lib.impl(name, _make_rnn_fast_kernel(_overload(name)), "AutogradPrivateUse1")
