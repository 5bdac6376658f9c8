"""Shared helpers of the command-line tests: source trees written into tmp_path, tree snapshots.

Imported by bare name (pytest puts this folder on sys.path), so keep the module name distinctive.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path


REPO = Path(__file__).resolve().parents[2]
PYTHON = sys.executable

# A small CUDA training project; every rewrite asserted in these tests is in the specified behaviour.
TRAIN_PY = b'''import argparse

import torch


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--cuda", action="store_true", help="use cuda")
    args = parser.parse_args()
    torch.cuda.set_device(0)
    print(args)


if __name__ == "__main__":
    main()
'''
MODEL_PY = b'''import torch


class Net(torch.nn.Module):
    def forward(self, x):
        return x * 2
'''
UTILS_PY = b'''import torch


def to_device(x):
    return x.to("cuda")
'''


def write_tree(root: Path, files: Mapping[str, bytes | str]) -> Path:
    """Create ``files`` (POSIX relative path -> content) under ``root``; returns ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    for rel, content in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return root


def tree_bytes(root: Path) -> dict[str, bytes | str]:
    """Every entry under ``root``: file bytes, or ``"-> target"`` for a symlink (not followed)."""
    out: dict[str, bytes | str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            out[rel] = f"-> {os.readlink(path)}" if path.is_symlink() else path.read_bytes()
    return out
