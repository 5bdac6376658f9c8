"""Per-file concerns of rewrite_source: encodings, BOM, line endings, failures, round-trip safety."""

from __future__ import annotations

import ast

import pytest

from transplant.results import Operation, Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset


@pytest.fixture(scope="module")
def ruleset():
    return load_ruleset()


def test_pep263_latin1_is_kept(ruleset) -> None:
    source = "# -*- coding: latin-1 -*-\nimport torch\nname = 'café'\nx = torch.zeros(1).cuda()\n".encode("latin-1")
    result = rewrite_source(source, "l1.py", ruleset)
    assert result.status is Status.CHANGED
    assert b"caf\xe9" in result.new_source  # still latin-1, not UTF-8
    assert result.new_source.decode("latin-1").endswith("x = torch.zeros(1).npu()\n")


def test_utf8_bom_is_kept(ruleset) -> None:
    source = b"\xef\xbb\xbfimport torch\nx = torch.zeros(1).cuda()\n"
    result = rewrite_source(source, "bom.py", ruleset)
    assert result.status is Status.CHANGED
    assert result.new_source.startswith(b"\xef\xbb\xbfimport torch\n")
    assert result.new_source.count(b"\xef\xbb\xbf") == 1


def test_crlf_is_kept(ruleset) -> None:
    source = b"import torch\r\n\r\nx = torch.zeros(1).cuda()\r\n"
    result = rewrite_source(source, "crlf.py", ruleset)
    assert result.status is Status.CHANGED
    assert result.new_source == b"import torch\r\nimport torch_npu\r\n\r\nx = torch.zeros(1).npu()\r\n"


def test_trailing_whitespace_lines_survive(ruleset) -> None:
    # libcst's native parser drops whitespace-only lines at the end of a file; they must survive
    source = b"import torch\nx = torch.zeros(1).cuda()\n  \n  \n"
    result = rewrite_source(source, "tail.py", ruleset)
    assert result.status is Status.CHANGED
    assert result.new_source.endswith(b"x = torch.zeros(1).npu()\n  \n  \n")


def test_syntax_error_fails_with_path_and_line(ruleset) -> None:
    result = rewrite_source(b"import torch\nx = torch.zeros(1).cuda(\n", "bad.py", ruleset)
    assert result.status is Status.FAILED
    assert result.reason.startswith("bad.py:")
    assert result.new_source is None


def test_python2_is_reported(ruleset) -> None:
    source = b"import torch\nprint 'using cuda'\nx = torch.zeros(1).cuda()\n"
    result = rewrite_source(source, "py2.py", ruleset)
    assert result.status is Status.FAILED
    assert result.reason.startswith("py2.py:2:")
    assert "Python 2" in result.reason


def test_undecodable_fails(ruleset) -> None:
    result = rewrite_source(b"import torch\nx = '\xff\xfe cuda'\n", "bin.py", ruleset)
    assert result.status is Status.FAILED
    assert "bin.py" in result.reason and "decode" in result.reason


def test_bad_cookie_fails(ruleset) -> None:
    result = rewrite_source(b"# -*- coding: no-such-codec -*-\nx = 'cuda'\n", "cookie.py", ruleset)
    assert result.status is Status.FAILED


def test_rows_use_original_lines(ruleset) -> None:
    source = b"import torch\n\n\n# comment\nif torch.cuda.is_available():\n    y = torch.zeros(1).cuda()\n"
    result = rewrite_source(source, "lines.py", ruleset)
    rows = {(c.rule, c.line, c.operation) for c in result.changes}
    assert ("TP190", 2, Operation.INSERT) in rows  # inserted after line 1
    assert any(r[1] == 5 and r[0].startswith("TP1") for r in rows)  # is_available on line 5
    assert any(r == ("TP120", 6, Operation.MODIFY) for r in rows)
    new = result.new_source.decode().splitlines()
    assert new[1] == "import torch_npu" and ast.parse(result.new_source)


def test_unsupported_only_file_is_unchanged_with_rows(ruleset) -> None:
    source = b"import pynvml\npynvml.nvmlInit()\n"
    result = rewrite_source(source, "nvml.py", ruleset)
    assert result.status is Status.UNCHANGED and result.new_source is None
    assert [(u.line, u.rule) for u in result.unsupported] == [(1, "TP542"), (2, "TP542")]
    assert all(u.tip for u in result.unsupported)


def test_project_module_named_cuda_is_not_an_extension(ruleset) -> None:
    source = b"import my_ops_cuda\n"
    assert rewrite_source(source, "a.py", ruleset).unsupported
    assert not rewrite_source(source, "a.py", ruleset, project_modules={"my_ops_cuda"}).unsupported


def test_idempotent_torch_npu_insertion(ruleset) -> None:
    source = b"import torch\nimport torch_npu\nx = torch.zeros(1).cuda()\n"
    result = rewrite_source(source, "twice.py", ruleset)
    assert result.new_source.count(b"import torch_npu") == 1


def test_cross_file_flow_facts(ruleset) -> None:
    from transplant.rewrite.literals import FlowFacts

    source = b"import torch\ntarget = 'cuda'\nbackend_choice = 'nccl'\n"
    assert rewrite_source(source, "cfg.py", ruleset).status is Status.UNCHANGED
    facts = FlowFacts(device_names={"target"}, backend_names={"backend_choice"})
    result = rewrite_source(source, "cfg.py", ruleset, flow=facts)
    assert result.new_source == b"import torch\nimport torch_npu\ntarget = 'npu'\nbackend_choice = 'hccl'\n"


def test_rewriter_never_imports_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from transplant.rules import load_ruleset\n"
        "from transplant.rewrite import rewrite_source\n"
        "r = rewrite_source(b'import torch\\nfrom apex import amp\\nx = torch.zeros(1).cuda()\\n', 'a.py', load_ruleset())\n"
        "assert r.status.value == 'changed', r\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'torch_npu'))\n"
        "assert not bad, bad\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr


def test_deeply_nested_expression_does_not_crash(ruleset) -> None:
    source = b"import torch\nx = " + b"(" * 5000 + b"torch.zeros(1).cuda()" + b")" * 5000 + b"\n"
    # libcst's native parser would overflow its stack on this (killing the worker); CPython refuses it
    result = rewrite_source(source, "deep.py", ruleset)
    assert result.status is Status.FAILED
    assert result.reason.startswith("deep.py:2:")


def test_unsupported_method_chains(tmp_path) -> None:
    import json

    rules = tmp_path / "chains.json"
    rules.write_text(json.dumps({"name": "chains", "rules": [
        {"id": "TP980", "kind": "unsupported", "severity": "review", "message": "m", "tip": "save a CPU copy",
         "names": {}, "method_chains": {"cpu.state_dict": ""}}]}))
    source = b"import torch\ntorch.save(model.cpu().state_dict(), 'p')\nsd = model.state_dict()\nx = model.cpu()\n"
    result = rewrite_source(source, "c.py", load_ruleset([rules]))
    assert result.status is Status.UNCHANGED
    assert [(u.line, u.rule, u.op, u.tip) for u in result.unsupported] == [(2, "TP980", ".cpu().state_dict()", "save a CPU copy")]


# -- issue 9 §3: every parseable file is migrated (edits are patches of the original text) ---------------

def test_trailing_indented_comment_after_blank_line_at_eof(ruleset) -> None:
    source = b"x = torch.zeros(1).cuda()\n\n #c\n"  # libcst prints this file without the blank line
    result = rewrite_source(source, "tail_comment.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert result.new_source.endswith(b"x = torch.zeros(1).npu()\n\n #c\n")
    assert [c.rule for c in result.changes if c.rule == "TP120"] == ["TP120"]


def test_cr_only_line_endings(ruleset) -> None:
    source = b"import torch\rx = torch.zeros(1).cuda()\rif x:\r    y = torch.cuda.device_count()\r"
    result = rewrite_source(source, "mac.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert result.new_source == (b"import torch\rimport torch_npu\rx = torch.zeros(1).npu()\rif x:\r"
                                 b"    y = torch.npu.device_count()\r")
    assert sorted((c.rule, c.line) for c in result.changes) == [("TP101", 4), ("TP120", 2), ("TP190", 2)]
    assert rewrite_source(result.new_source, "mac.py", ruleset).status is Status.UNCHANGED


def test_a_500_term_sum_is_migrated(ruleset) -> None:
    source = b"import torch\nx = torch.zeros(1).cuda()\ny = " + b" + ".join([b"a"] * 500) + b"\n"
    result = rewrite_source(source, "sum.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert result.new_source == source.replace(b".cuda()", b".npu()").replace(b"torch\n", b"torch\nimport torch_npu\n", 1)


def test_140_nested_calls_are_migrated(ruleset) -> None:
    source = b"import torch\nx = torch.zeros(1).cuda()\ny = " + b"f(" * 140 + b")" * 140 + b"\n"
    result = rewrite_source(source, "calls.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert b"x = torch.zeros(1).npu()\n" in result.new_source and source.splitlines()[-1] in result.new_source


def test_untouched_bytes_stay_identical_around_an_edit(ruleset) -> None:
    # odd spacing, tabs, form feeds, a backslash continuation: only `.cuda()` may change
    source = b"import torch\n\x0c\nx  =\ttorch.zeros( 1 ) \\\n   .cuda( )  # keep\n\n\n"
    result = rewrite_source(source, "odd.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert result.new_source == b"import torch\nimport torch_npu\n\x0c\nx  =\ttorch.zeros( 1 ) \\\n   .npu( )  # keep\n\n\n"


def test_a_statement_too_deep_to_analyse_is_a_row_and_the_rest_is_migrated(ruleset) -> None:
    deep = b"y = (" + b" +\n     ".join([b"a"] * 5000) + b")\n"
    source = b"import torch\nx = torch.zeros(1).cuda()\n" + deep + b"z = torch.cuda.device_count()\n"
    result = rewrite_source(source, "sum5000.py", ruleset)
    assert result.status is Status.CHANGED, result.reason
    assert result.new_source == (b"import torch\nimport torch_npu\nx = torch.zeros(1).npu()\n" + deep
                                 + b"z = torch.npu.device_count()\n")
    assert [(u.rule, u.line, u.end_line) for u in result.unsupported] == [("TP590", 3, 5002)]
    assert ("TP101", 5003) in {(c.rule, c.line) for c in result.changes}
