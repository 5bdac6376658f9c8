"""Cost of the static API analysis (part of every ``transplant -i`` run) beside a bare libcst parse+print.

Not a test: over the same corpus as benchmarks/migrate_speed.py (fixtures/ plus parts of the installed
torch, or the PATHs given), times ``transplant.analysis.static.project_rows`` and a bare libcst
parse+print of the same files, best of N, and reports the ratio and the analysis's peak memory.

    .venv/bin/python benchmarks/analysis_speed.py [PATH ...] [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import libcst

from transplant.analysis.static import project_rows

sys.path.insert(0, str(Path(__file__).resolve().parent))
from migrate_speed import default_corpus  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", type=Path)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    roots = args.paths or [default_corpus(Path(tempfile.mkdtemp(prefix="analysis-speed-")))]
    files = []
    for root in roots:
        for path in sorted(root.rglob("*.py")):
            try:
                files.append((path.relative_to(root).as_posix(), path.read_text(encoding="utf-8"), []))
            except (UnicodeDecodeError, OSError):
                continue
    lines = sum(source.count("\n") + 1 for _, source, _ in files)

    def floor() -> None:
        for _, source, _ in files:
            try:
                libcst.parse_module(source).code
            except libcst.ParserSyntaxError:
                pass

    def analysis() -> int:
        return len(project_rows(files))

    best_floor = best_analysis = float("inf")
    rows = 0
    for _ in range(args.repeat):
        start = time.perf_counter(); floor(); best_floor = min(best_floor, time.perf_counter() - start)
        start = time.perf_counter(); rows = analysis(); best_analysis = min(best_analysis, time.perf_counter() - start)
    tracemalloc.start()
    analysis()
    peak = tracemalloc.get_traced_memory()[1]
    print(f"{len(files)} files, {lines} lines, {rows} analysis rows")
    print(f"libcst parse+print: {best_floor:.2f} s ({lines / best_floor:,.0f} lines/s)")
    print(f"static analysis:    {best_analysis:.2f} s ({lines / best_analysis:,.0f} lines/s) = "
          f"{best_analysis / best_floor:.2f}x the libcst floor; peak {peak / 1e6:.1f} MB")


if __name__ == "__main__":
    main()
