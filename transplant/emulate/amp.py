"""Autocast for the emulated npu device (``torch.autocast('npu', dtype=float16|bfloat16)``).

torch core registers nothing at the AutocastPrivateUse1 key, so inside an npu autocast region
every op would fail. We register a fallthrough for all ops plus per-op kernels implementing the
CUDA autocast policy (lower precision / fp32 / fp32 with dtype argument / promote). torch_npu's
own lists may differ in details; these are CUDA's, as documented in docs/emulator.md.
"""

from __future__ import annotations

from typing import Any, Callable, List

import torch

from transplant.emulate import _state

_libs: List[torch.library.Library] = []

LOWER_PRECISION = [
    "_convolution", "conv1d", "conv2d", "conv3d", "conv_tbc", "conv_transpose1d",
    "conv_transpose2d", "conv_transpose3d", "convolution", "prelu", "addmm", "addmv", "addr",
    "matmul", "einsum", "mm", "mv", "linalg_vecdot", "linear", "addbmm", "baddbmm", "bmm",
    "chain_matmul", "linalg_multi_dot", "_thnn_fused_lstm_cell", "_thnn_fused_gru_cell",
    "lstm_cell", "gru_cell", "rnn_tanh_cell", "rnn_relu_cell", "_scaled_dot_product_flash_attention",
    "scaled_dot_product_attention",
]
FP32 = [
    "acos", "asin", "cosh", "erfinv", "exp", "expm1", "log", "log10", "log2", "log1p", "reciprocal",
    "rsqrt", "sinh", "tan", "pow", "softplus", "layer_norm", "native_layer_norm", "group_norm",
    "frobenius_norm", "nuclear_norm", "cosine_similarity", "poisson_nll_loss",
    "cosine_embedding_loss", "nll_loss", "nll_loss2d", "hinge_embedding_loss", "kl_div", "l1_loss",
    "smooth_l1_loss", "huber_loss", "mse_loss", "margin_ranking_loss", "multilabel_margin_loss",
    "soft_margin_loss", "triplet_margin_loss", "multi_margin_loss", "binary_cross_entropy_with_logits",
    "dist", "pdist", "cdist", "renorm", "logsumexp", "upsample_nearest1d", "_upsample_nearest_exact1d",
    "upsample_nearest2d", "_upsample_nearest_exact2d", "upsample_nearest3d", "_upsample_nearest_exact3d",
    "upsample_linear1d", "upsample_bilinear2d", "_upsample_bilinear2d_aa", "upsample_trilinear3d",
    "upsample_bicubic2d", "_upsample_bicubic2d_aa", "norm",
]
# Ops with an optional dtype argument: run them with dtype=float32 when none is given.
FP32_SET_OPT_DTYPE = [
    "prod", "softmax", "log_softmax", "cumprod", "cumsum", "linalg_vector_norm", "linalg_matrix_norm", "sum",
]
PROMOTE = [
    "addcdiv", "addcmul", "atan2", "bilinear", "cross", "dot", "vdot", "grid_sampler", "index_put",
    "scatter_add", "tensordot", "cat", "stack", "index_copy",
]
BANNED = ["binary_cross_entropy"]

_EXCLUDE = torch._C.DispatchKeySet(torch._C.DispatchKey.AutocastPrivateUse1)
_CASTABLE = (torch.float32, torch.float16, torch.bfloat16)


def _is_npu_float(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and t.device.type == _state.DEVICE_TYPE and t.dtype in _CASTABLE


def _cast(value: Any, dtype: torch.dtype) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if _is_npu_float(value) and value.dtype != dtype else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _widest(args: Any, kwargs: dict) -> torch.dtype:
    widest = None
    for value in list(args) + list(kwargs.values()):
        items = value if isinstance(value, (list, tuple)) else [value]
        for t in items:
            if _is_npu_float(t):
                if widest is None or torch.promote_types(widest, t.dtype) != widest:
                    widest = t.dtype if widest is None else torch.promote_types(widest, t.dtype)
    return widest if widest is not None else torch.float32


def _kernel(op: Any, policy: str) -> Callable[..., Any]:
    dtype_pos = next((i for i, a in enumerate(op._schema.arguments) if a.name == "dtype"), None)

    def kernel(*args: Any, **kwargs: Any) -> Any:
        if policy == "lower":
            dtype = torch.get_autocast_dtype(_state.DEVICE_TYPE)
            args, kwargs = _cast(args, dtype), {k: _cast(v, dtype) for k, v in kwargs.items()}
        elif policy == "fp32":
            args, kwargs = _cast(args, torch.float32), {k: _cast(v, torch.float32) for k, v in kwargs.items()}
        elif policy == "set_opt_dtype":
            if dtype_pos is not None and args and _is_npu_float(args[0]):
                if len(args) > dtype_pos:
                    if args[dtype_pos] is None:
                        args = args[:dtype_pos] + (torch.float32,) + args[dtype_pos + 1 :]
                elif kwargs.get("dtype") is None:
                    kwargs = dict(kwargs)
                    kwargs["dtype"] = torch.float32
        elif policy == "promote":
            dtype = _widest(args, kwargs)
            args, kwargs = _cast(args, dtype), {k: _cast(v, dtype) for k, v in kwargs.items()}
        else:
            raise RuntimeError(
                "torch.nn.functional.binary_cross_entropy and torch.nn.BCELoss are unsafe to autocast.\n"
                "Many models use a sigmoid layer right before the binary cross entropy layer.\n"
                "In this case, combine the two layers using torch.nn.functional.binary_cross_entropy_with_logits\n"
                "or torch.nn.BCEWithLogitsLoss.  binary_cross_entropy_with_logits and BCEWithLogits are\n"
                "safe to autocast."
            )
        with torch._C._ExcludeDispatchKeyGuard(_EXCLUDE):
            return op(*args, **kwargs)

    return kernel


def _overloads(name: str) -> List[Any]:
    packet = getattr(torch.ops.aten, name, None)
    if packet is None:
        return []
    return [getattr(packet, o) for o in packet.overloads()]


def register() -> None:
    """Register the AutocastPrivateUse1 fallthrough and the per-op policy kernels (once)."""
    if _libs:
        return
    fallback = torch.library.Library("_", "IMPL")
    fallback.fallback(torch.library.fallthrough_kernel, "AutocastPrivateUse1")
    lib = torch.library.Library("aten", "IMPL")
    _libs.extend([fallback, lib])
    for names, policy in (
        (LOWER_PRECISION, "lower"),
        (FP32, "fp32"),
        (FP32_SET_OPT_DTYPE, "set_opt_dtype"),
        (PROMOTE, "promote"),
        (BANNED, "banned"),
    ):
        for name in names:
            for op in _overloads(name):
                if op._schema.is_mutable:
                    continue  # out= and in-place variants are not autocast (as on CUDA)
                overload = op._overloadname
                qualified = name if overload == "default" else f"{name}.{overload}"
                lib.impl(qualified, _kernel(op, policy), "AutocastPrivateUse1")
