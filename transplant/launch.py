"""``run_distributed_npu.sh``: a real torchrun launcher for the migrated project.

msFmkTransplt writes a template whose command is a placeholder for the user to fill in. Ours runs:
the entry script is known (``--entry`` or detected), the process count follows the visible NPUs, and
every setting a cluster launcher needs is overridable from the environment.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from transplant.atomic import atomic_path

LAUNCH_SCRIPT_NAME = "run_distributed_npu.sh"

_MAIN_GUARD = re.compile(rb"""^if\s+__name__\s*==\s*['"]__main__['"]\s*:""", re.MULTILINE)
_ARGPARSE = re.compile(rb"^\s*(?:import\s+argparse|from\s+argparse\s+import)\b", re.MULTILINE)


def is_entry_candidate(source: bytes) -> bool:
    """True for a script that runs as ``__main__`` and parses its arguments with argparse."""
    return b"__main__" in source and b"argparse" in source and bool(
        _MAIN_GUARD.search(source) and _ARGPARSE.search(source)
    )


def choose_entry(candidates: list[str]) -> str | None:
    """The entry script when exactly one candidate (POSIX path) was found, else None.

    Several candidates (pytorch/examples holds a trainer per folder) are never guessed between: the
    migration lists them and writes the launcher only when ``--entry`` names one.
    """
    return candidates[0] if len(candidates) == 1 else None


def render_launch_script(entry: str | None) -> str:
    """The launcher's text; ``entry`` is the entry script's POSIX path relative to the script's folder."""
    # shlex.quote gives a single-quoted bash word, safe for any character in a file name.
    return _TEMPLATE.replace("@DEFAULT_ENTRY@", shlex.quote(entry or ""))


def write_launch_script(out_dir: Path, entry: str | None) -> Path:
    """Write ``OUT/run_distributed_npu.sh`` (mode 0755) atomically and return its path."""
    target = out_dir / LAUNCH_SCRIPT_NAME
    with atomic_path(target, 0o755) as tmp:
        # surrogateescape: an entry file name that is not UTF-8 is written back as its original bytes.
        with open(tmp, "w", encoding="utf-8", errors="surrogateescape", newline="\n") as handle:
            handle.write(render_launch_script(entry))
    return target


# Kept as data rather than built line by line: it is a fixed script with a single substituted word,
# and shellcheck runs over the rendered result in the tests.
_TEMPLATE = """\
#!/usr/bin/env bash
# Launch the migrated training script on Ascend NPUs with torchrun (written by transplant).
#
# Usage:  ./run_distributed_npu.sh [arguments of the training script...]
#
# Settings, all overridable from the environment:
#   ENTRY_SCRIPT          training script, relative to this folder (default: chosen by transplant)
#   NPROC_PER_NODE        processes on this node (default: number of ASCEND_RT_VISIBLE_DEVICES, else 8)
#   NNODES, NODE_RANK     number of nodes and this node's rank (default: 1 and 0)
#   MASTER_ADDR, MASTER_PORT  rendezvous address of node 0 (default: 127.0.0.1 and 29500)
#   HCCL_CONNECT_TIMEOUT  seconds HCCL waits for peers when building links (default: 1200)
#   TORCHRUN              launcher command (default: torchrun), e.g. "python -m torch.distributed.run"
#
# Example, two nodes of 8 NPUs (run on each node with its own NODE_RANK):
#   NNODES=2 NODE_RANK=0 MASTER_ADDR=10.0.0.1 ./run_distributed_npu.sh --epochs 10
set -euo pipefail

here="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)"
# The entry path is a literal file name: nothing in it is meant to expand.
# shellcheck disable=SC2016
default_entry=@DEFAULT_ENTRY@
entry="${ENTRY_SCRIPT:-$default_entry}"
if [[ -z "$entry" ]]; then
    echo "run_distributed_npu.sh: no entry script was detected when this project was migrated." >&2
    echo "Set ENTRY_SCRIPT=path/relative/to/this/folder.py, or re-run transplant with --entry FILE." >&2
    exit 1
fi
if [[ ! -f "$here/$entry" ]]; then
    echo "run_distributed_npu.sh: entry script not found: $here/$entry" >&2
    exit 1
fi

if [[ -z "${NPROC_PER_NODE:-}" ]]; then
    if [[ -n "${ASCEND_RT_VISIBLE_DEVICES:-}" ]]; then
        IFS=',' read -r -a visible_devices <<< "$ASCEND_RT_VISIBLE_DEVICES"
        NPROC_PER_NODE=0
        for device in "${visible_devices[@]}"; do
            if [[ -n "${device// /}" ]]; then
                NPROC_PER_NODE=$((NPROC_PER_NODE + 1))
            fi
        done
    else
        NPROC_PER_NODE=8
    fi
fi
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
MASTER_ADDR="${MASTER_ADDR:-127.0.0.1}"
MASTER_PORT="${MASTER_PORT:-29500}"
export HCCL_CONNECT_TIMEOUT="${HCCL_CONNECT_TIMEOUT:-1200}"

read -r -a launcher <<< "${TORCHRUN:-torchrun}"
command=("${launcher[@]}"
    --nnodes="$NNODES"
    --node_rank="$NODE_RANK"
    --nproc_per_node="$NPROC_PER_NODE"
    --master_addr="$MASTER_ADDR"
    --master_port="$MASTER_PORT"
    "$here/$entry" "$@")
# Say what runs (on stderr, so the training script's own output stays clean).
printf 'run_distributed_npu.sh: running:' >&2
printf ' %q' "${command[@]}" >&2
printf '\\n' >&2
exec "${command[@]}"
"""

__all__ = [
    "LAUNCH_SCRIPT_NAME",
    "choose_entry",
    "is_entry_candidate",
    "render_launch_script",
    "write_launch_script",
]
