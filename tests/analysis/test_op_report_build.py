"""transplant.analysis.op_report on hand-made records (no torch, no emulator)."""

from __future__ import annotations

from transplant.analysis.op_report import build


def _op(op, line, sigs, **extra):
    return dict({"op": op, "overload": "default", "file": "/p/train.py", "line": line, "function": "main",
                 "count": sum(s["count"] for s in sigs), "order": line, "signatures": sigs, "more_signatures": 0,
                 "fallback": None, "fallback_message": "", "fallback_op": "", "sync": ""}, **extra)


def _sig(shape, step, count=1, dtype="float32"):
    return {"inputs": [{"dtype": dtype, "shape": shape, "device": "npu"}], "first_step": step, "count": count}


def test_records_merge_over_processes_and_empty_ones_do_not_count():
    a = {"steps": 3, "ops": [_op("aten::mm", 5, [_sig([2, 2], 0, 3)])]}
    b = {"steps": 3, "ops": [_op("aten::mm", 5, [_sig([2, 2], 0, 3)])]}
    launcher = {"steps": 0, "ops": []}
    report = build([a, b, launcher])
    assert report.processes == 2 and report.steps == 3
    assert [(o.qualified, o.count) for o in report.ops] == [("aten::mm", 6)]
    assert report.findings == []


def test_shapes_seen_within_the_first_step_are_not_dynamic():
    ops = [_op("aten::addmm", 7, [_sig([4, 8], 0, 5), _sig([4, 16], 0, 5)])]  # two layer widths, every step
    assert build([{"steps": 5, "ops": ops}]).findings == []


def test_a_new_shape_after_the_first_step_is_dynamic():
    ops = [_op("aten::addmm", 7, [_sig([4, 8], 0, 4), _sig([3, 8], 4, 1)])]  # the smaller last batch
    found = build([{"steps": 5, "ops": ops}]).findings
    assert [(f.rule, f.line) for f in found] == [("TP754", 7)]
    assert "drop_last" in found[0].tip


def test_fallback_rows_name_the_missing_kernel():
    ops = [_op("aten::lgamma", 9, [_sig([3], 0, 2)], fallback="dispatcher",
               fallback_message="CAUTION: The operator 'aten::lgamma.out' is not currently supported",
               fallback_op="aten::lgamma.out")]
    found = build([{"steps": 1, "ops": ops}]).findings
    assert [(f.rule, f.op, f.severity, f.count) for f in found] == [("TP750", "aten::lgamma.out", "error", 2)]


def test_float64_movement_is_not_compute():
    ops = [_op("aten::_to_copy", 3, [_sig([3], 0, 1, "float64")]),
           _op("aten::mul", 4, [_sig([3], 0, 1, "float64")])]
    found = build([{"steps": 1, "ops": ops}]).findings
    assert [(f.rule, f.line) for f in found] == [("TP752", 4)]
