"""``apply_edits``: untouched text is copied, edits are applied once, overlaps are refused loudly."""

from __future__ import annotations

import pytest

from transplant.rewrite.edits import Edit, Fix, OverlappingEdits, apply_edits


def test_untouched_slices_are_copied() -> None:
    assert apply_edits("a.cuda()\r\n# c\r", [Fix("TP120", (Edit(2, 6, "npu"),))]) == "a.npu()\r\n# c\r"


def test_no_fixes_is_identity() -> None:
    assert apply_edits("x \t\f\n", []) == "x \t\f\n"


def test_edits_apply_in_position_order_whatever_the_fix_order() -> None:
    fixes = [Fix("B", (Edit(4, 5, "Y"),)), Fix("A", (Edit(0, 1, "X"),))]
    assert apply_edits("a + b", fixes) == "X + Y"


def test_insertions_and_deletions() -> None:
    fixes = [Fix("I", (Edit(0, 0, "import torch_npu\n"),)), Fix("D", (Edit(6, 12, ""),))]
    assert apply_edits("x = 1\ny = 2\nz = 3\n", fixes) == "import torch_npu\nx = 1\nz = 3\n"


def test_two_insertions_at_one_offset_keep_their_order() -> None:
    fixes = [Fix("A", (Edit(1, 1, "1"),)), Fix("B", (Edit(1, 1, "2"),))]
    assert apply_edits("ab", fixes) == "a12b"


def test_an_insertion_before_a_replacement_at_the_same_offset() -> None:
    fixes = [Fix("R", (Edit(1, 2, "B"),)), Fix("I", (Edit(1, 1, "_"),))]
    assert apply_edits("abc", fixes) == "a_Bc"


def test_one_edit_shared_by_two_rows_is_applied_once() -> None:
    shared = Edit(0, 3, "new")
    assert apply_edits("old!", [Fix("A", (shared,)), Fix("B", (shared,))]) == "new!"


@pytest.mark.parametrize("first, second", [((0, 3), (2, 5)), ((1, 4), (1, 4)), ((0, 5), (1, 2))])
def test_overlapping_edits_are_refused(first, second) -> None:
    fixes = [Fix("A", (Edit(*first, "x"),)), Fix("B", (Edit(*second, "y"),))]
    with pytest.raises(OverlappingEdits):
        apply_edits("abcdef", fixes)


def test_adjacent_edits_do_not_overlap() -> None:
    assert apply_edits("abcd", [Fix("A", (Edit(0, 2, "X"),)), Fix("B", (Edit(2, 4, "Y"),))]) == "XY"


def test_an_edit_past_the_end_is_refused() -> None:
    with pytest.raises(ValueError):
        apply_edits("ab", [Fix("A", (Edit(1, 3, "x"),))])
    with pytest.raises(ValueError):
        Edit(3, 1, "x")


def test_a_fix_carries_its_row_severity() -> None:
    fix = Fix("TP401", (Edit(0, 1, "x"),), None, "review")
    assert fix.severity == "review" and fix.rule == "TP401"
