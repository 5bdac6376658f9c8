"""Find the operators a project defines in its own C++/CUDA sources (``cuda_op_list.csv``).

Such operators are compiled for CUDA and have no NPU build: each one needs a hand port (an Ascend C
kernel or a composition of torch ops). We only *list* them. The scan is textual on purpose: the
sources usually do not compile here (no CUDA toolkit), and the registration macros are regular enough.

Recognised registrations:

* ``PYBIND11_MODULE(name, m) { m.def("op", ...); py::class_<T>(m, "Cls") ... }`` -> ``op``, ``Cls``
* ``TORCH_LIBRARY(ns, m) { m.def("op(Tensor x) -> Tensor"); m.impl("op", ...); }`` -> ``torch.ops.ns.op``
* ``TORCH_LIBRARY_IMPL(ns, CUDA, m) { m.impl("op", ...); }`` -> ``torch.ops.ns.op``
* ``TORCH_LIBRARY_FRAGMENT`` like ``TORCH_LIBRARY``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: File suffixes scanned for operator registrations.
NATIVE_SUFFIXES = (".cu", ".cuh", ".cpp", ".cc", ".cxx", ".c++", ".hpp", ".h")


@dataclass(frozen=True)
class NativeOp:
    """One operator registered from C++/CUDA; one row of cuda_op_list.csv."""

    path: str   # POSIX path relative to SRC
    api: str    # how Python reaches it: "my_op" (pybind11) or "torch.ops.ns.my_op" (TORCH_LIBRARY)
    line: int   # 1-based line of the registration


_MACRO = re.compile(
    r"\b(?P<macro>PYBIND11_MODULE|TORCH_LIBRARY_IMPL|TORCH_LIBRARY_FRAGMENT|TORCH_LIBRARY)\s*\((?P<args>[^()]*)\)\s*\{"
)


def _string(group: str) -> str:
    """A C string literal captured as ``group`` (escapes kept as written)."""
    return rf'"(?P<{group}>(?:[^"\\\n]|\\.)*)"'


def _blank_comments(text: str) -> str:
    """Replace comments with spaces (newlines kept) so offsets and line numbers stay valid.

    String and character literals are skipped so that ``"//"`` inside a string is not a comment.
    """
    out = list(text)
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            i = _literal_end(text, i)
        elif text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out[i:j] = " " * (j - i)
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out[i:j] = [ch if ch == "\n" else " " for ch in text[i:j]]
            i = j
        else:
            i += 1
    return "".join(out)


def _literal_end(text: str, quote_at: int) -> int:
    """Offset just past the string/character literal opened at ``quote_at`` (or past its line)."""
    quote, j, n = text[quote_at], quote_at + 1, len(text)
    while j < n and text[j] != quote and text[j] != "\n":
        j += 2 if text[j] == "\\" else 1
    return j + 1


def _block_end(text: str, open_brace: int) -> int:
    """Offset just past the brace matching ``text[open_brace]`` (end of text if unbalanced)."""
    depth = 0
    i, n = open_brace, len(text)
    while i < n:
        c = text[i]
        if c == '"' or c == "'":
            i = _literal_end(text, i)
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return n


def _op_name(schema_or_name: str) -> str:
    """``"ns::op.overload(Tensor x) -> Tensor"`` -> ``"op"``."""
    name = schema_or_name.split("(", 1)[0].strip()
    name = name.rsplit("::", 1)[-1]
    return name.split(".", 1)[0]


def scan_native_ops(text: str, path: str) -> list[NativeOp]:
    """Operators registered in one C++/CUDA source, in source order, each reported once per file."""
    clean = _blank_comments(text)
    found: list[NativeOp] = []
    seen: set[str] = set()

    def add(api: str, offset: int) -> None:
        if api and api not in seen:
            seen.add(api)
            found.append(NativeOp(path=path, api=api, line=clean.count("\n", 0, offset) + 1))

    for macro in _MACRO.finditer(clean):
        args = [a.strip() for a in macro.group("args").split(",")]
        if len(args) < 2 or not args[-1].isidentifier():
            continue
        var = re.escape(args[-1])
        body_start = macro.end() - 1
        body = clean[body_start:_block_end(clean, body_start)]
        if macro.group("macro") == "PYBIND11_MODULE":
            pattern = re.compile(
                rf"\b{var}\s*\.\s*def\s*\(\s*{_string('fn')}"
                rf"|\bpy(?:bind11)?::class_\s*<[^;{{]*?>\s*\(\s*{var}\s*,\s*{_string('cls')}"
            )
            for m in pattern.finditer(body):
                add(m.group("fn") or m.group("cls") or "", body_start + m.start())
        else:
            namespace = args[0]
            pattern = re.compile(rf"\b{var}\s*\.\s*(?:def|impl)\s*\(\s*{_string('name')}")
            for m in pattern.finditer(body):
                op = _op_name(m.group("name"))
                if op:
                    add(f"torch.ops.{namespace}.{op}", body_start + m.start())
    return found
