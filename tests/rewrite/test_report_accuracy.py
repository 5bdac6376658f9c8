"""Issue 9 §5: one edit, one row; rows that add up; no stale CUDA import; device strings by construction."""

from __future__ import annotations

from transplant.results import Operation, Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset


def _run(source: bytes, **kw):
    result = rewrite_source(source, "t.py", load_ruleset(**kw))
    assert result.status is Status.CHANGED, result.reason
    return result.new_source.decode(), result.changes


def test_stale_cuda_module_alias_is_removed_when_every_use_was_rewritten() -> None:
    text, rows = _run(b"import torch\nimport torch.cuda as tc\n\nn = tc.device_count()\ntc.synchronize()\n")
    assert "torch.cuda" not in text and "tc" not in text.replace("torch", "")
    assert "n = torch.npu.device_count()\ntorch.npu.synchronize()\n" in text
    assert ("TP101", 2, Operation.DELETE) in {(c.rule, c.line, c.operation) for c in rows}


def test_an_alias_still_used_as_a_value_stays() -> None:
    # without the rule that migrates the module used as a value (TP112), that use needs the import
    text, _ = _run(b"import torch\nimport torch.cuda as tc\n\nn = tc.device_count()\nregister(tc)\n",
                   ignore=["TP112"])
    assert "import torch.cuda as tc\n" in text and "register(tc)" in text


def test_an_alias_used_as_a_value_goes_when_the_value_is_migrated_too() -> None:
    text, rows = _run(b"import torch\nimport torch.cuda as tc\n\nn = tc.device_count()\nregister(tc)\n")
    assert text == "import torch\nimport torch_npu\n\nn = torch.npu.device_count()\nregister(torch.npu)\n"
    assert (2, Operation.DELETE) in {(c.line, c.operation) for c in rows}


def test_alias_alone_in_a_block_becomes_pass() -> None:
    text, _ = _run(b"import torch\ntry:\n    import torch.cuda as tc\nexcept ImportError:\n    pass\ntc.synchronize()\n")
    assert "try:\n    pass\nexcept ImportError:" in text and "torch.npu.synchronize()" in text
    compile(text, "t.py", "exec")


def test_string_that_can_only_be_a_device_is_one_whatever_its_name() -> None:
    source = (b"import torch\n\n\ndef target(rank):\n    s = 'cuda:' + str(rank)\n    return s\n\n\n"
              b"def other(rank):\n    return 'cuda:%d' % rank\n\n\ndef label(rank):\n    msg = 'cuda is slow'\n"
              b"    return 'using cuda ' + str(rank)\n")
    text, rows = _run(source)
    assert "s = 'npu:' + str(rank)" in text and "return 'npu:%d' % rank" in text
    assert "msg = 'cuda is slow'" in text and "'using cuda ' + str(rank)" in text  # text, not devices


def test_two_rows_on_one_line_add_up_to_the_line_as_it_ends_up() -> None:
    text, rows = _run(b"import torch\nscaler = torch.cuda.amp.GradScaler(enabled=(dtype == 'float16'))\n")
    line = "scaler = torch.amp.GradScaler('npu', enabled=(dtype == 'float16'))"
    assert line in text
    on_line = {c.rule: c for c in rows if c.line == 2 and c.operation is Operation.MODIFY}
    assert set(on_line) == {"TP420", "TP421"}
    assert on_line["TP421"].after in line and on_line["TP420"].after in on_line["TP421"].after


def test_rows_of_one_edit_are_one_row() -> None:
    text, rows = _run(b"import torch\nfrom torch.cuda import amp\nwith amp.autocast():\n    pass\n")
    keys = [(c.rule, c.line, c.column, c.before, c.after) for c in rows]
    assert len(keys) == len(set(keys))


def test_selected_rule_brings_the_import_its_output_needs() -> None:
    text, rows = _run(b"import torch\nx = torch.zeros(1).cuda()\n", select=["TP120"])
    assert text == "import torch\nimport torch_npu\nx = torch.zeros(1).npu()\n"
    assert {c.rule for c in rows} == {"TP120", "TP190"}
    ignored = rewrite_source(b"import torch\nx = torch.zeros(1).cuda()\n", "t.py",
                             load_ruleset(select=["TP120"], ignore=["TP190"]))
    assert b"torch_npu" not in ignored.new_source
