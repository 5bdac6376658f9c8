"""Per-file bounds (``--max-memory``, ``--file-timeout``): what a pathological file costs, and what the
worker processes cost on ordinary files.

Not a test: generates a Python file of ``--megabytes`` MB (realistic statements), migrates it together
with a few small files under each memory bound given, and prints for each run the wall time, the
outcome of the big file (migrated, or skipped with the reason) and the peak resident memory of the
worker processes (``RUSAGE_CHILDREN`` of a process that runs only the migration). Issue 9's target:
the file is skipped or migrated within the bound, and no worker's memory exceeds it.

    .venv/bin/python benchmarks/bounded_files.py [--megabytes 10] [--bounds 512 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_CHILD = """
import json, resource, sys, time
from pathlib import Path
from transplant.migrate import MigrationOptions, migrate
from transplant.workers import Bounds
src, out, memory, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
started = time.monotonic()
migration = migrate(MigrationOptions(src=Path(src), out=Path(out), jobs=2, bounds=Bounds(timeout, memory)))
print(json.dumps({"seconds": time.monotonic() - started,
                  "workers_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "results": {r.path: [r.status.value, r.reason] for r in migration.results}}))
"""


def generate(path: Path, megabytes: float) -> None:
    """A file of repetitive but realistic statements (the kind code generators emit)."""
    lines, total, i = ["import torch", ""], 0, 0
    while total < megabytes * (1 << 20):
        line = (f"layer_{i} = torch.nn.Linear({i % 97 + 1}, {i % 89 + 1}).cuda()\n"
                f"out_{i} = layer_{i}(torch.randn(2, {i % 97 + 1}, device='cuda'))\n")
        lines.append(line)
        total += len(line)
        i += 1
    path.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=float, default=10.0)
    parser.add_argument("--bounds", type=int, nargs="+", default=[512, 2048], metavar="MiB")
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "src"
        (src / "gen").mkdir(parents=True)
        generate(src / "gen" / "big.py", args.megabytes)
        for i in range(4):
            (src / f"small{i}.py").write_text("import torch\nx = torch.zeros(1).cuda()\n")
        print(f"generated file: {(src / 'gen' / 'big.py').stat().st_size / (1 << 20):.1f} MB")
        for bound in args.bounds:
            out = Path(tmp) / f"out{bound}"
            started = time.monotonic()
            done = subprocess.run([sys.executable, "-c", _CHILD, str(src), str(out), str(bound), str(args.timeout)],
                                  capture_output=True, text=True, env=env)
            if done.returncode != 0:
                print(f"--max-memory {bound}: failed ({done.returncode}): {done.stderr[-500:]}")
                continue
            measured = json.loads(done.stdout)
            status, reason = measured["results"]["gen/big.py"]
            print(f"--max-memory {bound} MiB, --file-timeout {args.timeout:g} s: {measured['seconds']:.1f} s "
                  f"(process {time.monotonic() - started:.1f} s), worker peak {measured['workers_peak_mib']:.0f} MiB, "
                  f"big file {status}{': ' + reason if reason else ''}")


if __name__ == "__main__":
    main()
