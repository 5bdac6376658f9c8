"""What does the cross-file analysis cost? The project index beside the bare libcst floor, and whole runs.

Not a test: run it by hand (``.venv/bin/python benchmarks/cross_file_cost.py [PATH]``). Measured in
this one run, on this machine:

1. CPU seconds of ``build_index`` (transplant/project/index.py) over every Python file of the corpus,
   beside a bare ``libcst.parse_module(src).code`` of the same files (the floor every figure of
   ``migrate_speed.py`` is relative to);
2. the whole command line (``transplant -i SRC -o OUT -j 1``), with and without ``--no-cross-file``,
   CPU seconds of the child process (best of ``--repeat``).

Target (issue 11): the whole run within 1.3x of the run without the index.
Default corpus: the project's fixtures plus training-flavoured slices of the installed torch sources
(the same corpus as migrate_speed.py).
"""

from __future__ import annotations

import argparse
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from migrate_speed import count_lines, default_corpus, python_files  # noqa: E402


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = cpu()
        fn()
        times.append(cpu() - start)
    return min(times)


def run_cli(src: Path, work: Path, *extra: str) -> float:
    out = work / "out"
    if out.exists():
        shutil.rmtree(out)
    before = child_cpu()
    subprocess.run([sys.executable, "-m", "transplant", "-i", str(src), "-o", str(out), "-j", "1", "-q", *extra],
                   check=True, cwd=str(REPO))
    return child_cpu() - before


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", nargs="?", type=Path, help="corpus folder (default: fixtures + torch slices)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    import libcst

    from transplant.project.index import SlotFacts, build_index
    from transplant.rules import load_ruleset

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        src = args.path or default_corpus(work / "corpus")
        files = python_files(src)
        sources = {p.relative_to(src).as_posix(): data for p, data in files}
        lines = count_lines(files)
        slots = SlotFacts.from_ruleset(load_ruleset())

        def floor() -> None:
            for data in sources.values():
                try:
                    libcst.parse_module(data).code
                except Exception:
                    pass

        t_floor = best(floor, args.repeat)
        index_holder = []
        t_index = best(lambda: index_holder.append(build_index(sources, slots)), args.repeat)
        index = index_holder[-1]
        t_with = min(run_cli(src, work) for _ in range(args.repeat))
        t_without = min(run_cli(src, work, "--no-cross-file") for _ in range(args.repeat))
        print(f"corpus: {len(files)} files, {lines} lines ({src})")
        print(f"index: {len(index.callables)} callables with device/backend parameters, "
              f"{sum(len(v) for v in index.exported.values())} exported names, complete={index.complete}")
        print(f"bare libcst parse+print: {t_floor:.2f} CPU-s")
        print(f"build_index:             {t_index:.2f} CPU-s = {t_index / t_floor:.2f}x the floor")
        print(f"whole run -j 1 with index:    {t_with:.2f} CPU-s")
        print(f"whole run -j 1 --no-cross-file: {t_without:.2f} CPU-s")
        print(f"ratio with/without: {t_with / t_without:.2f}x (target <= 1.3x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
