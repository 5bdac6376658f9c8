"""Regenerate ``transplant/data/npu_ops.json``: which aten operators torch_npu 2.13 runs on the NPU.

Read from the wheel as a zip (never installed, never imported):

* ``torch_npu/csrc/aten/npu_native_functions_by_codegen.yaml`` and ``npu_native_functions.yaml``: the
  aten overloads torch_npu registers an NPU kernel for (sections ``supported``, ``symint``,
  ``autograd``, ``quant``) and its own custom ``npu_*`` operators (section ``custom``);
* ``torch_npu/lib/libtorch_npu.so``: the printable strings of the CPU-fallback warning
  (``CAUTION: The operator '...' is not currently supported ...``), the error raised with
  ``TORCH_NPU_FALLBACK_CPU_DISABLE=1``, and the per-operator CAUTION messages of the kernels that
  torch_npu itself routes to the CPU (``aten::_masked_softmax``, ``aten::logit`` ...).

The YAML files are read with a small reader of their two shapes (a list of names, or of mappings with a
``func:`` key) so the generator needs nothing beyond the standard library.

Usage (from the repository root)::

    pip download --no-deps torch-npu==2.13.0 -d /tmp/npuwheel
    python tools/gen_npu_ops.py --wheel /tmp/npuwheel/torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl
    python tools/gen_npu_ops.py --wheel WHEEL --check     # exit 1 if the committed file is stale

Without the wheel ``tests/analysis/test_npu_ops_facts.py`` still checks the committed file's own
checksum and its consistency; with it (``TRANSPLANT_TORCH_NPU_WHEEL`` or the default path) it regenerates
and compares byte for byte.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import zipfile
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional

DATA_FILE = Path(__file__).resolve().parent.parent / "transplant" / "data" / "npu_ops.json"
YAML_FILES = (
    "torch_npu/csrc/aten/npu_native_functions_by_codegen.yaml",
    "torch_npu/csrc/aten/npu_native_functions.yaml",
)
LIBRARY = "torch_npu/lib/libtorch_npu.so"
# Sections whose entries are aten overloads with an NPU kernel.
KERNEL_SECTIONS = ("supported", "symint", "autograd", "quant")

# The fragments of torch_npu's generic fallback messages as they appear in libtorch_npu.so; the
# templates below are checked against them, so a wheel that changes the wording fails regeneration.
WARNING_TEMPLATE = (
    "CAUTION: The operator '{op}' is not currently supported on the NPU backend and will fall back to run "
    "on the CPU. This may have performance implications."
)
WARNING_FRAGMENTS = ("CAUTION: The operator '", "' is not currently supported ",
                     "on the NPU backend and will fall back to run on the CPU.")
# {through} is one of FALLBACK_KINDS (torch_npu's CpuFallbackKind: the boxed dispatcher fallback for an
# operator without an NPU kernel, or an NPU kernel that itself calls the CPU implementation).
DISABLED_TEMPLATE = (
    "The operator '{op}' would execute its main computation on CPU through {through}, "
    "but CPU fallback is disabled by TORCH_NPU_FALLBACK_CPU_DISABLE=1."
)
FALLBACK_KINDS = {"dispatcher": "dispatcher backend fallback", "explicit": "explicit CPU kernel"}
DISABLED_FRAGMENTS = ("' would execute its main computation on CPU through ", "dispatcher backend fallback",
                      "explicit CPU kernel", ", but CPU fallback is disabled by TORCH_NPU_FALLBACK_CPU_DISABLE=1.")
_SPECIFIC = re.compile(r"CAUTION: The operator '?(aten::[A-Za-z0-9_.]+)'?(?:,| and| is| need)")
_OP_IN_TEXT = re.compile(r"aten::([A-Za-z0-9_]+(?:\.[A-Za-z0-9_]+)?)")


def dumps(obj: Any) -> str:
    """The canonical serialisation (sorted keys, one-space indent, trailing newline)."""
    return json.dumps(obj, indent=1, sort_keys=True, ensure_ascii=False) + "\n"


def _op_name(entry: str) -> str:
    """``add.Tensor(Tensor self, ...) -> Tensor`` or ``add.Tensor`` -> ``add.Tensor``."""
    return entry.split("(", 1)[0].strip()


def read_yaml_sections(text: str) -> Dict[str, List[str]]:
    """The operator names per top-level section of an npu_native_functions YAML file.

    Entries are either ``- name`` or a mapping whose ``func:`` value is a name or a full schema; keys
    other than ``func`` (``impl_ns``, ``dispatch`` ...) are not needed here.
    """
    sections: Dict[str, List[str]] = {}
    current: Optional[str] = None
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            key, _, value = line.partition(":")
            current = key.strip() if not value.strip() else None
            if current is not None:
                sections.setdefault(current, [])
            continue
        if current is None:
            continue
        stripped = line.strip()
        if stripped.startswith("- "):
            item = stripped[2:].strip()
            if item.startswith("func:"):
                sections[current].append(_op_name(item[len("func:"):]))
            elif ":" not in item:
                sections[current].append(_op_name(item))
            continue
        if stripped.startswith("func:"):
            sections[current].append(_op_name(stripped[len("func:"):]))
    return sections


def library_strings(data: bytes, minimum: int = 6) -> List[str]:
    """Printable ASCII runs of at least ``minimum`` characters (what ``strings`` prints)."""
    return [m.group().decode("ascii") for m in re.finditer(rb"[\x20-\x7e]{%d,}" % minimum, data)]


def generate(wheel: Path) -> str:
    """The text of ``npu_ops.json`` for ``wheel``."""
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    match = re.match(r"torch_npu-([^-]+)-", wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        kernels: set = set()
        custom: set = set()
        for member in YAML_FILES:
            sections = read_yaml_sections(archive.read(member).decode("utf-8"))
            for section in KERNEL_SECTIONS:
                kernels.update(sections.get(section, ()))
            custom.update(sections.get("custom", ()))
        strings = library_strings(archive.read(LIBRARY))
    text = set(strings)
    missing = [f for f in WARNING_FRAGMENTS + DISABLED_FRAGMENTS if f not in text]
    if missing:
        raise SystemExit(f"{LIBRARY}: fallback message fragments not found (torch_npu changed them): {missing}")
    specific: Dict[str, List[str]] = {}
    for s in strings:
        if not s.startswith("CAUTION: The operator ") or "fall" not in s or "CPU" not in s:
            continue
        if not _SPECIFIC.match(s):
            continue
        head = s.split(" is ", 1)[0].split(" need ", 1)[0]
        for op in _OP_IN_TEXT.findall(head):
            specific.setdefault(op, [])
            if s not in specific[op]:
                specific[op].append(s)
    facts = {
        "about": (
            "Generated by tools/gen_npu_ops.py from the torch_npu wheel; do not edit. npu_kernels: aten "
            "overloads with an NPU kernel (YAML sections " + ", ".join(KERNEL_SECTIONS) + "); custom_ops: "
            "torch_npu's own operators; explicit_cpu_fallback: operators whose NPU kernel routes to the CPU, "
            "with torch_npu's own message; messages: the generic fallback warning and the "
            "TORCH_NPU_FALLBACK_CPU_DISABLE=1 error."
        ),
        "wheel": {"file": wheel.name, "sha256": digest, "version": match.group(1) if match else ""},
        "sources": list(YAML_FILES) + [LIBRARY],
        "npu_kernels": sorted(kernels),
        "custom_ops": sorted(custom),
        "explicit_cpu_fallback": {op: sorted(msgs) for op, msgs in sorted(specific.items())},
        "messages": {"fallback_warning": WARNING_TEMPLATE, "fallback_disabled": DISABLED_TEMPLATE,
                     "fallback_kinds": FALLBACK_KINDS},
    }
    return dumps(facts)


def main(argv: Optional[Iterable[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, required=True, help="torch_npu wheel (.whl) to read; never installed")
    parser.add_argument("--check", action="store_true", help="compare with the committed file; write nothing")
    parser.add_argument("--out", type=Path, default=DATA_FILE, help="output file (default: transplant/data/npu_ops.json)")
    args = parser.parse_args(list(argv) if argv is not None else None)
    text = generate(args.wheel)
    if args.check:
        if not args.out.is_file() or args.out.read_text(encoding="utf-8") != text:
            sys.stderr.write(f"stale: {args.out.name} (rerun tools/gen_npu_ops.py --wheel ...)\n")
            return 1
        return 0
    args.out.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
