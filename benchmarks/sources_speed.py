"""How fast are the non-Python front ends? Measured beside floors taken in the same run.

Not a test: run it by hand (``.venv/bin/python benchmarks/sources_speed.py``) and read the figures.

1. **Notebooks**: ``migrate_notebook`` on a notebook of many training-style code cells (with magics)
   against the bare libcst parse+print of the same code (the Python engine's floor), as a ratio.
2. **Shell**: ``migrate_shell`` on the shell fixtures concatenated into one long script, against a
   bare ``bashlex.parse`` of the same text (the shell front end's floor), and in lines/s beside the
   bare libcst parse+print speed of the Python fixtures (the floor every figure of migrate_speed.py
   is measured against).
3. Peak Python heap (tracemalloc; libcst's native parser is not traced) of each front end on its input.
"""

from __future__ import annotations

import json
import sys
import time
import tracemalloc
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def _peak(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def main() -> None:
    import bashlex
    import libcst

    from transplant.rules import load_ruleset
    from transplant.sources.notebook import cell_source, migrate_notebook
    from transplant.sources.shell import migrate_shell

    ruleset = load_ruleset()
    fixtures = REPO / "fixtures" / "sources"

    # 1. notebooks: the fixture's code cells repeated into a 200-cell notebook
    nb = json.loads((fixtures / "notebook" / "tiny_train.in.ipynb").read_text(encoding="utf-8"))
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    nb["cells"] = (nb["cells"][:1] + code) * 33
    source = (json.dumps(nb, indent=1, ensure_ascii=False) + "\n").encode()
    # the floor: libcst parse+print of exactly the Python the front end hands the engine
    from transplant.sources.notebook import _scan_cell

    scanned = [_scan_cell(n, cell_source(c)) for n, c in enumerate(nb["cells"], 1) if c["cell_type"] == "code"]
    python = "".join(c.masked if c.masked.endswith("\n") else c.masked + "\n" for c in scanned if c.python)
    nb_lines = sum(cell_source(c).count("\n") + 1 for c in nb["cells"] if c["cell_type"] == "code")
    floor = _best(lambda: libcst.parse_module(python).code)
    t_nb = _best(lambda: migrate_notebook(source, "bench.ipynb", ruleset))
    print(f"notebook: {len(nb['cells'])} cells, {nb_lines} code lines: {t_nb * 1000:.0f} ms "
          f"({nb_lines / t_nb:.0f} lines/s); libcst parse+print floor of its Python "
          f"{floor * 1000:.0f} ms -> ratio {t_nb / floor:.1f}x the floor; "
          f"peak {_peak(lambda: migrate_notebook(source, 'bench.ipynb', ruleset)):.1f} MiB")

    # 2. shell: every .sh fixture, repeated to ~3000 lines
    scripts = "".join(p.read_text(encoding="utf-8") for p in sorted((fixtures / "shell").glob("*.in.sh"))
                      if "unparsed" not in p.name)
    text = scripts * max(1, 3000 // scripts.count("\n"))
    data = text.encode()
    lines = text.count("\n")
    t_sh = _best(lambda: migrate_shell(data, "bench.sh", ruleset), repeat=2)
    t_bash = _best(lambda: bashlex.parse(text.replace("<<'DOC'", "<<DOC  ")), repeat=2)
    pyfiles = [p.read_text(encoding="utf-8") for p in sorted((REPO / "fixtures" / "selfmm").rglob("*.py"))][:20]
    py_lines = sum(s.count("\n") for s in pyfiles)
    t_cst = _best(lambda: [libcst.parse_module(s).code for s in pyfiles])
    print(f"shell: {lines} lines: {t_sh * 1000:.0f} ms ({lines / t_sh:.0f} lines/s); bare bashlex.parse "
          f"{t_bash * 1000:.0f} ms -> ratio {t_sh / t_bash:.2f}x; libcst parse+print floor "
          f"{py_lines / t_cst:.0f} lines/s -> shell at {lines / t_sh / (py_lines / t_cst):.2f}x that speed; "
          f"peak {_peak(lambda: migrate_shell(data, 'bench.sh', ruleset)):.1f} MiB")


if __name__ == "__main__":
    main()
