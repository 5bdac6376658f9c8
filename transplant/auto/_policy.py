"""Who is asking: the per-caller policy behind ``torch.cuda.is_available()`` and friends.

transfer_to_npu makes ``torch.cuda.is_available()`` return True for everybody, so libraries that
already support Ascend (transformers, accelerate, ...) take their CUDA code paths (nccl,
MULTI_GPU). We answer per calling module instead: the user's script sees the accelerator,
torch itself and libraries with native NPU support see the truth.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

# Libraries that detect Ascend themselves (``is_torch_npu_available()`` and the like); lying to them
# sends them down CUDA-only paths. torch/torch_npu/transplant are internal: they must see the truth.
NATIVE_NPU_PACKAGES = frozenset(
    {
        "accelerate",
        "deepspeed",
        "diffusers",
        "lightning",
        "lightning_fabric",
        "mmcv",
        "mmengine",
        "peft",
        "pytorch_lightning",
        "sentence_transformers",
        "transformers",
        "trl",
        "vllm",
        "vllm_ascend",
    }
)
INTERNAL_PACKAGES = frozenset({"torch", "torch_npu", "transplant", "torchgen", "functorch"})

CUDA_AVAILABLE_POLICIES = ("auto", "npu", "cuda")


@dataclass
class Config:
    """Auto-mode settings; defaults come from the ``TRANSPLANT_AUTO_*`` environment variables."""

    # "auto": user code sees the NPU, torch and native-NPU libraries see the real CUDA answer;
    # "npu": everybody sees the NPU (transfer_to_npu's behaviour); "cuda": nobody is lied to.
    cuda_available: str = "auto"
    native_packages: frozenset = field(default_factory=lambda: NATIVE_NPU_PACKAGES)
    quiet: bool = False
    report: str | None = None

    @classmethod
    def from_environ(cls, environ=os.environ) -> "Config":
        """Read ``TRANSPLANT_AUTO_CUDA_AVAILABLE``, ``_NATIVE``, ``_QUIET`` and ``_REPORT``."""
        policy = environ.get("TRANSPLANT_AUTO_CUDA_AVAILABLE", "auto").strip().lower() or "auto"
        if policy not in CUDA_AVAILABLE_POLICIES:
            raise ValueError(
                f"TRANSPLANT_AUTO_CUDA_AVAILABLE={policy!r}: expected one of {', '.join(CUDA_AVAILABLE_POLICIES)}"
            )
        packages = set(NATIVE_NPU_PACKAGES)
        for item in environ.get("TRANSPLANT_AUTO_NATIVE", "").split(","):
            item = item.strip()
            if item.startswith("-"):
                packages.discard(item[1:])
            elif item:
                packages.add(item.lstrip("+"))
        return cls(
            cuda_available=policy,
            native_packages=frozenset(packages),
            quiet=environ.get("TRANSPLANT_AUTO_QUIET", "") not in ("", "0"),
            report=environ.get("TRANSPLANT_AUTO_REPORT") or None,
        )


class CallerPolicy:
    """Classifies calling modules by their top-level package, with a cache (this runs per call)."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._internal: dict[str, bool] = {}
        self._sees_cuda: dict[str, bool] = {}

    def is_internal(self, module_name: str) -> bool:
        """True for torch, torch_npu, transplant and the native-NPU libraries."""
        known = self._internal.get(module_name)
        if known is None:
            top = module_name.partition(".")[0]
            known = top in INTERNAL_PACKAGES or top in self.config.native_packages
            self._internal[module_name] = known
        return known

    def sees_real_cuda(self, module_name: str) -> bool:
        """Whether ``torch.cuda.is_available()`` called from ``module_name`` gets the real answer."""
        policy = self.config.cuda_available
        if policy == "npu":
            return False
        if policy == "cuda":
            return True
        return self.is_internal(module_name)
