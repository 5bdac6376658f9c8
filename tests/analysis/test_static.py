"""Static API analysis: name resolution, classification per rule id (a use that triggers it and one that does
not), the CSVs in a real `transplant -i` run, --no-analysis, determinism."""

from __future__ import annotations

import csv
import textwrap
from pathlib import Path

import pytest

from transplant.analysis.resolve import resolve_calls
from transplant.analysis.static import analyse_source, project_rows


def _names(source: str) -> list:
    return [(c.name, c.line) for c in resolve_calls(textwrap.dedent(source))]


def test_imports_aliases_and_receiver_types():
    source = """
    import torch
    import torch.nn as nn
    from torch import optim
    from torch.nn.utils import clip_grad_norm_ as clip
    from torch.optim import AdamW as A

    class Trainer:
        def __init__(self, model):
            self.optimizer = optim.Adam(model.parameters())
            self.loss = nn.CrossEntropyLoss()

        def step(self, model, loss):
            clip(model.parameters(), 1.0)
            self.optimizer.step()

    opt = A([], lr=1.0)
    opt.step()
    other = make_optimizer()
    other.step()
    """
    names = _names(source)
    assert ("torch.optim.Adam", 10) in names and ("torch.nn.CrossEntropyLoss", 11) in names
    assert ("torch.nn.utils.clip_grad_norm_", 14) in names
    assert ("torch.optim.Adam.step", 15) in names
    assert ("torch.optim.AdamW", 17) in names and ("torch.optim.AdamW.step", 18) in names
    assert not any(n.endswith(".step") and line == 20 for n, line in names)  # unknown receiver: not guessed


def test_a_receiver_bound_to_two_types_has_none():
    names = _names("""
    import torch
    opt = torch.optim.SGD([], lr=1)
    opt = torch.optim.Adam([])
    opt.step()
    """)
    assert [n for n, _ in names if n.endswith(".step")] == []


def _rules(source: str, covered=()) -> list:
    return [(r.rule, r.severity, r.op, r.line) for r in analyse_source(textwrap.dedent(source).lstrip(), "t.py",
                                                                        covered=covered)]


@pytest.mark.parametrize("call, rule, severity", [
    ("torch.nn.utils.clip_grad_norm_(p, 1.0)", "TP702", "info"),        # Huawei-unsupported, kernels in 2.13
    ("torch.compile(model)", "TP701", "review"),                         # Huawei-unsupported, nothing maps
    ("torch.heaviside(x, y)", "TP701", "review"),                        # no NPU kernel (heaviside.out)
    ("torch.distributed.destroy_process_group()", "TP703", "info"),    # in neither list
    ("torch.baddbmm(a, b, c)", "TP710", "review"),                       # precision: concrete overflow + fix
    ("torch.matmul(a, b)", "TP710", "info"),                             # precision: generic advice
    ("torch.optim.AdamW(p)", "TP720", "info"),                           # fused NPU optimizer exists (optional)
    ("torch.optim.Adam(p, fused=True)", "TP721", "review"),              # _fused_adam_ runs on the CPU
    ("torch.autograd.set_detect_anomaly(True)", "TP722", "review"),
    ("torch.utils.data.DataLoader(ds, batch_size=8)", "TP723", "info"),  # pin_memory / num_workers
    ("torch.nn.Linear(4, 4)", "TP725", "info"),
    ("torch.nn.functional.scaled_dot_product_attention(q, k, v)", "TP730", "info"),
])
def test_each_rule_triggers(call, rule, severity):
    rows = _rules(f"import torch\n{call}\n")
    assert (rule, severity) in [(r, s) for r, s, _, _ in rows], rows
    assert all(line == 2 for *_, line in rows)


@pytest.mark.parametrize("call", [
    "torch.zeros(3)",                                                     # supported, no advice
    "torch.optim.AdamW(p, fused=True)",                                  # _fused_adamw_ has an NPU kernel
    "torch.utils.data.DataLoader(ds, pin_memory=True, num_workers=4)",
    "torch.nn.ReLU()",
    "x.matmul(y)",                                                       # receiver unknown: no guess
])
def test_clean_uses_have_nothing_to_review(call):
    rows = _rules(f"import torch\n{call}\n")
    assert [r for r in rows if r[0] in ("TP701", "TP721", "TP722", "TP723", "TP710")
            or (r[0] == "TP720" and "fused" in call)] == [], rows


def test_adam_fused_false_is_fine_and_its_step_is_info():
    rows = _rules("import torch\nopt = torch.optim.Adam(p, fused=False)\nopt.step()\n")
    assert ("TP721", "review") not in [(r, s) for r, s, _, _ in rows]
    assert ("TP702", "info", "torch.optim.Adam.step", 3) in rows


def test_lines_covered_by_a_migration_rule_are_left_to_it():
    source = "import torch\nm = torch.nn.DataParallel(model)\n"
    assert [r[0] for r in _rules(source)] == ["TP701"]
    assert _rules(source, covered=[(2, "torch.nn.DataParallel")]) == []


def test_every_row_has_a_tip_and_a_source():
    rows = project_rows([("a.py", "import torch\ntorch.compile(m)\ntorch.nn.parallel.DistributedDataParallel(m)\n",
                          [])])
    assert rows and all(r.tip and r.source for r in rows)
    assert {r.op for r in rows if r.file == "NA"} >= {"no_sync", "TASK_QUEUE_ENABLE", "HCCL_OP_BASE_FFTS_MODE_ENABLE"}


def test_project_without_distributed_gets_no_hccl_hint():
    rows = project_rows([("a.py", "import torch\ntorch.nn.Linear(2, 2)\n", [])])
    assert "HCCL_OP_BASE_FFTS_MODE_ENABLE" not in {r.op for r in rows}


def test_unparseable_file_is_skipped():
    assert project_rows([("bad.py", "def (:\n", [])]) == []


# ------------------------------------------------------------------------------------------ CLI


def _read(path: Path) -> list:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.reader(handle))


def test_cli_writes_the_four_csvs(tmp_path: Path):
    from transplant.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text(
        "import torch\nmodel = torch.nn.Linear(2, 2).cuda()\nopt = torch.optim.Adam(model.parameters(), fused=True)\n"
        "torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)\nopt.step()\n", encoding="utf-8")
    outs = []
    for tag in ("a", "b"):
        out = tmp_path / tag
        with pytest.raises(SystemExit) as done:
            main(["-i", str(src), "-o", str(out), "-q"])
        assert done.value.code == 0
        outs.append(out)
    header = _read(outs[0] / "unknown_api.csv")[0]
    assert header == ["File", "Start Line", "End Line", "OP", "Tips", "Rule", "Severity", "Source"]
    assert _read(outs[0] / "affinity_api_call.csv")[0][:6] == [
        "File", "Start Line", "End Line", "Api Type", "Api Call Name", "Affinity Api Name"]
    perf = _read(outs[0] / "api_performance_advice.csv")
    assert ["train.py", "3", "3", "torch.optim.Adam"] == perf[1][:4] or any(
        r[:4] == ["train.py", "3", "3", "torch.optim.Adam"] and r[5] == "TP721" for r in perf)
    for name in ("unknown_api.csv", "api_precision_advice.csv", "api_performance_advice.csv", "affinity_api_call.csv"):
        assert (outs[0] / name).read_bytes() == (outs[1] / name).read_bytes(), name  # deterministic


def test_no_analysis_skips_the_csvs(tmp_path: Path):
    from transplant.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import torch\ntorch.compile(None)\n", encoding="utf-8")
    with pytest.raises(SystemExit) as done:
        main(["-i", str(src), "-o", str(tmp_path / "out"), "-q", "--no-analysis"])
    assert done.value.code == 0
    assert not (tmp_path / "out" / "unknown_api.csv").exists()
    assert (tmp_path / "out" / "change_list.csv").exists()


def test_no_analysis_keeps_a_same_named_file_of_src(tmp_path: Path):
    """With --no-analysis the analysis file names are not transplant's: a project's own copy is mirrored."""
    from transplant.cli import main

    src = tmp_path / "src"
    src.mkdir()
    (src / "train.py").write_text("import torch\n", encoding="utf-8")
    (src / "unknown_api.csv").write_text("mine\n", encoding="utf-8")
    with pytest.raises(SystemExit):
        main(["-i", str(src), "-o", str(tmp_path / "kept"), "-q", "--no-analysis"])
    assert (tmp_path / "kept" / "unknown_api.csv").read_text(encoding="utf-8") == "mine\n"
    with pytest.raises(SystemExit):
        main(["-i", str(src), "-o", str(tmp_path / "replaced"), "-q"])
    assert (tmp_path / "replaced" / "unknown_api.csv").read_text(encoding="utf-8").startswith("File,Start Line")
