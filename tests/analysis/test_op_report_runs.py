"""``transplant run --op-report``: each finding kind from a tiny script that triggers it, none from one that
does not; the call sites are the user's lines. Also torch_npu's CAUTION warning and
``TORCH_NPU_FALLBACK_CPU_DISABLE=1``."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TRIGGERS = """
import torch
from torch.nn.utils.rnn import pack_padded_sequence
torch.manual_seed(0)
lstm = torch.nn.LSTM(4, 3, batch_first=True).npu()
w = torch.nn.Parameter(torch.rand(4).npu())
opt = torch.optim.Adam([w] + list(lstm.parameters()), fused=True)
for step in range(4):
    x = torch.rand(2, 3 + step, 4).npu()
    y = torch.lgamma(x + 1).sum()
    d = x.double().sum()
    i = torch.arange(6).npu() * 3
    packed = pack_padded_sequence(x, torch.tensor([3 + step, 2]), batch_first=True)
    out, _ = lstm(packed)
    loss = y + (x * w).sum() + out.data.sum()
    opt.zero_grad(); loss.backward(); opt.step()
    print(loss.item())
"""

CLEAN = """
import torch
torch.manual_seed(0)
lstm = torch.nn.LSTM(4, 3, batch_first=True).npu()
w = torch.nn.Parameter(torch.rand(4).npu())
opt = torch.optim.Adam([w] + list(lstm.parameters()))
total = torch.zeros((), device="npu")
for step in range(4):
    x = torch.rand(2, 5, 4).npu()
    y = torch.relu(x + 1).sum()
    d = x.float().sum()
    i = torch.arange(6, dtype=torch.int32).npu() * 3
    out, _ = lstm(x)
    loss = y + (x * w).sum() + out.sum()
    opt.zero_grad(); loss.backward(); opt.step()
    total += loss.detach()
print(total.item())
"""


def _by_rule(report: dict) -> dict:
    found: dict = {}
    for f in report["findings"]:
        found.setdefault(f["rule"], []).append(f)
    return found


def test_every_finding_kind_with_its_call_site(run_script, tmp_path: Path):
    done, report = run_script(TRIGGERS)
    assert done.returncode == 0, done.stderr
    assert report["steps"] == 4 and report["processes"] == 1
    found = _by_rule(report)
    lines = {rule: {(f["file"], f["line"]) for f in rows} for rule, rows in found.items()}
    assert [f["op"] for f in found["TP750"]] == ["aten::lgamma.out"]  # lgamma -> its out= kernel, none on NPU
    assert lines["TP750"] == {("script.py", 9)}
    assert [f["op"] for f in found["TP751"]] == ["aten::_fused_adam_"]
    assert lines["TP751"] == {("script.py", 15)}
    assert ("script.py", 10) in lines["TP752"]  # x.double().sum()
    assert all(f["line"] == 10 for f in found["TP752"])
    assert lines["TP753"] == {("script.py", 11)}  # int64 * 3 (Muls)
    causes = [f for f in found["TP754"] if f["severity"] == "review"]
    assert {f["line"] for f in causes} >= {8, 12}, causes  # the upload of new shapes; pack_padded_sequence
    assert "_pack_padded_sequence" in next(f for f in causes if f["line"] == 12)["tip"]
    syncs = [f for f in found["TP755"] if f["severity"] == "review"]
    assert [(f["line"], f["per_step"]) for f in syncs] == [(16, "1.00")]
    # the CSV carries the same findings, msFmkTransplt-like OP/Tips columns and a non-empty tip
    with (tmp_path / "report.csv").open(newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [r["Rule"] for r in rows] == [f["rule"] for f in report["findings"]]
    assert all(r["Tips"] for r in rows)
    assert (tmp_path / "report_ops.csv").is_file()
    # the summary on stderr names the top offenders with their call sites
    assert "TP750 aten::lgamma.out" in done.stderr and "at script.py:9" in done.stderr
    # every recorded operator has a count, dtypes and shapes
    mm = [o for o in report["ops"] if o["qualified"] == "aten::lgamma"]
    assert mm and mm[0]["line"] == 9 and mm[0]["count"] == 4 and mm[0]["signatures"][0]["inputs"][0]["dtype"] == "float32"


def test_clean_script_has_no_findings_to_act_on(run_script):
    done, report = run_script(CLEAN)
    assert done.returncode == 0, done.stderr
    assert report["steps"] == 4
    acted = [f for f in report["findings"] if f["severity"] != "info"]
    assert acted == [], acted
    assert "CAUTION" not in done.stderr


def test_fallback_warns_once_like_torch_npu(run_script):
    code = """
    import torch
    x = torch.rand(3).npu()
    for _ in range(3):
        torch.lgamma(x)
    print("done")
    """
    done, _ = run_script(code, op_report=False)
    assert done.returncode == 0, done.stderr
    warning = ("CAUTION: The operator 'aten::lgamma.out' is not currently supported on the NPU backend and will "
               "fall back to run on the CPU. This may have performance implications.")
    assert done.stderr.count(warning) == 1, done.stderr
    assert "script.py:4" in done.stderr  # the warning points at the user's line


def test_fallback_disabled_raises_torch_npu_error(run_script):
    code = """
    import torch
    x = torch.rand(3).npu()
    torch.relu(x)
    torch.lgamma(x)
    print("not reached")
    """
    done, _ = run_script(code, op_report=False, env={"TORCH_NPU_FALLBACK_CPU_DISABLE": "1"})
    assert done.returncode == 1
    assert ("RuntimeError: The operator 'aten::lgamma.out' would execute its main computation on CPU through "
            "dispatcher backend fallback, but CPU fallback is disabled by TORCH_NPU_FALLBACK_CPU_DISABLE=1.") in done.stderr
    assert "not reached" not in done.stdout


def test_supported_ops_neither_warn_nor_raise_when_disabled(run_script):
    code = """
    import torch
    m = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.LayerNorm(4), torch.nn.GELU()).npu()
    opt = torch.optim.AdamW(m.parameters())
    loss = m(torch.rand(2, 4).npu()).sum()
    loss.backward(); opt.step()
    print("ok")
    """
    done, _ = run_script(code, op_report=False, env={"TORCH_NPU_FALLBACK_CPU_DISABLE": "1"})
    assert done.returncode == 0, done.stderr
    assert "CAUTION" not in done.stderr and done.stdout.strip() == "ok"


def test_explicit_cpu_kernel_refused_when_disabled(run_script):
    code = """
    import torch
    p = torch.nn.Parameter(torch.rand(3).npu())
    opt = torch.optim.Adam([p], fused=True)
    p.sum().backward()
    opt.step()
    """
    done, _ = run_script(code, op_report=False, env={"TORCH_NPU_FALLBACK_CPU_DISABLE": "1"})
    assert done.returncode == 1
    assert "'aten::_fused_adam_' would execute its main computation on CPU through explicit CPU kernel" in done.stderr
