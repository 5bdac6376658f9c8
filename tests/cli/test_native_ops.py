"""Operators registered from C++/CUDA sources (cuda_op_list.csv)."""

from __future__ import annotations

from transplant.native_ops import scan_native_ops


def apis(text: str) -> list[tuple[str, int]]:
    return [(op.api, op.line) for op in scan_native_ops(text, "x.cu")]


def test_pybind11_module() -> None:
    text = """#include <torch/extension.h>
// m.def("commented_out", &f);
/* PYBIND11_MODULE(old, m) { m.def("in_block_comment", &f); } */
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &lltm_forward, "LLTM forward (CUDA) // not a comment");
  m.def(
      "backward", &lltm_backward, "with a { brace");
  py::class_<Box, std::shared_ptr<Box>>(m, "Box").def("size", &Box::size);
}
"""
    assert apis(text) == [("forward", 5), ("backward", 6), ("Box", 8)]


def test_torch_library_and_impl() -> None:
    text = """TORCH_LIBRARY(myops, m) {
  m.def("myadd(Tensor a, Tensor b) -> Tensor");
  m.def("myops::mymul.out(Tensor a, *, Tensor(a!) out) -> Tensor(a!)");
}
TORCH_LIBRARY_IMPL(myops, CUDA, m) {
  m.impl("myadd", &myadd_cuda);
  m.impl("other", TORCH_FN(other_cuda));
}
TORCH_LIBRARY_FRAGMENT(more, lib) { lib.def("extra(Tensor x) -> Tensor"); }
"""
    assert apis(text) == [("torch.ops.myops.myadd", 2), ("torch.ops.myops.mymul", 3),
                          ("torch.ops.myops.other", 7), ("torch.ops.more.extra", 9)]


def test_nothing_registered() -> None:
    assert apis("__global__ void k(float* x) { x[0] = 1; }\nint main() { return 0; }\n") == []
    assert apis('m.def("outside_a_module", &f);\n') == []
