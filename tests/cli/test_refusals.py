"""Refusals: a one-line error, exit status 2, and nothing written (least of all into SRC)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cli_helpers import tree_bytes, write_tree


def assert_refused(result, fragment: str) -> None:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("transplant: error: ")
    assert fragment in lines[0]
    assert result.stdout == ""


def test_out_inside_src(invoke, project: Path) -> None:
    before = tree_bytes(project)
    assert_refused(invoke("-i", project, "-o", project / "out"), "OUT is inside SRC")
    assert tree_bytes(project) == before


def test_out_equal_to_src(invoke, project: Path) -> None:
    before = tree_bytes(project)
    assert_refused(invoke("-i", project, "-o", project, "--force"), "OUT is inside SRC")
    assert tree_bytes(project) == before


def test_src_inside_out(invoke, project: Path) -> None:
    before = tree_bytes(project)
    assert_refused(invoke("-i", project / "models", "-o", project, "--force"), "SRC is inside OUT")
    assert tree_bytes(project) == before


def test_single_file_out_is_its_folder(invoke, project: Path) -> None:
    before = tree_bytes(project)
    assert_refused(invoke("-i", project / "train.py", "-o", project, "--force"), "overwrite SRC")
    assert tree_bytes(project) == before


def test_out_inside_src_through_a_symlink(invoke, project: Path, tmp_path: Path) -> None:
    (tmp_path / "alias").symlink_to(project / "models")
    assert_refused(invoke("-i", project, "-o", tmp_path / "alias" / "out"), "OUT is inside SRC")
    assert not (project / "models" / "out").exists()


def test_out_not_empty(invoke, project: Path, tmp_path: Path) -> None:
    out = write_tree(tmp_path / "out", {"keep.txt": b"mine"})
    assert_refused(invoke("-i", project, "-o", out), "OUT is not empty")
    assert tree_bytes(out) == {"keep.txt": b"mine"}


def test_out_is_a_file(invoke, project: Path, tmp_path: Path) -> None:
    (tmp_path / "out").write_text("x")
    assert_refused(invoke("-i", project, "-o", tmp_path / "out", "--force"), "not a directory")


def test_src_missing(invoke, tmp_path: Path) -> None:
    assert_refused(invoke("-i", tmp_path / "nowhere", "-o", tmp_path / "out"), "SRC does not exist")
    assert not (tmp_path / "out").exists()


def test_src_not_python(invoke, tmp_path: Path) -> None:
    write_tree(tmp_path, {"notes.txt": b"cuda"})
    assert_refused(invoke("-i", tmp_path / "notes.txt", "-o", tmp_path / "out"), ".py file")


def test_missing_output(invoke, project: Path) -> None:
    assert_refused(invoke("-i", project), "missing -o/--output")


def test_missing_input(invoke, tmp_path: Path) -> None:
    assert_refused(invoke("-o", tmp_path / "out"), "missing -i/--input")


def test_bad_rule_file_shows_pointer(invoke, project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "description": "d", "rules": [
        {"id": "TP999", "kind": "rename", "severity": "sometimes", "message": "m", "map": {}}]}))
    result = invoke("-i", project, "-o", tmp_path / "out", "-r", bad)
    assert_refused(result, "bad rule file: ")
    assert str(bad) in result.stderr and "/rules/0" in result.stderr
    assert not (tmp_path / "out").exists()


def test_rule_of_unknown_kind_is_refused(invoke, project: Path, tmp_path: Path) -> None:
    # A misspelled kind loads as a structural rule that no pass handles: it would silently do nothing.
    bad = tmp_path / "typo.json"
    bad.write_text(json.dumps({"name": "x", "rules": [
        {"id": "TP998", "kind": "rename", "severity": "safe", "message": "m", "map": {"a.b": "a.c"}},
        {"id": "TP999", "kind": "renmae", "severity": "safe", "message": "m", "map": {"a.b": "a.c"}}]}))
    result = invoke("-i", project, "-o", tmp_path / "out", "-r", bad)
    assert_refused(result, "bad rule file: ")
    assert f"{bad}: /rules/1/kind: a known rule kind (" in result.stderr and "not 'renmae'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_unreadable_json_rule_file(invoke, project: Path, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    result = invoke("-i", project, "-o", tmp_path / "out", "-r", bad)
    assert_refused(result, "valid JSON")


def test_missing_rule_file(invoke, project: Path, tmp_path: Path) -> None:
    result = invoke("-i", project, "-o", tmp_path / "out", "-r", tmp_path / "absent.json")
    assert_refused(result, "absent.json")


def test_entry_outside_src(invoke, project: Path, tmp_path: Path) -> None:
    other = write_tree(tmp_path / "elsewhere", {"main.py": b"x = 1\n"})
    assert_refused(invoke("-i", project, "-o", tmp_path / "out", "--entry", other / "main.py"), "--entry")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("args", [["-j", "0"], ["--amp", "fp8"]])
def test_bad_option_values_are_usage_errors(invoke, project: Path, tmp_path: Path, args: list[str]) -> None:
    result = invoke("-i", project, "-o", tmp_path / "out", *args)
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


def test_subcommand_with_migration_options(invoke, project: Path) -> None:
    assert_refused(invoke("-i", project, "rules"), "migration options")


def test_symlink_in_out_is_not_written_through(invoke, project: Path, tmp_path: Path) -> None:
    """With --force, a symlink in OUT where SRC has a folder would let us write elsewhere: refused."""
    elsewhere = write_tree(tmp_path / "elsewhere", {"x.txt": b"x"})
    out = tmp_path / "out"
    out.mkdir()
    (out / "models").symlink_to(elsewhere)
    assert_refused(invoke("-i", project, "-o", out, "--force"), "symlink")
    assert tree_bytes(elsewhere) == {"x.txt": b"x"}


@pytest.mark.parametrize("text", [
    "[" * 5000 + "]" * 5000,                                        # deeper than the JSON decoder recurses
    '{"rules": [{"id": "TP999", "kind": "rename", "message": "m", "map": '
    + '{"a": ' * 500 + "1" + "}" * 500 + "}]}",                    # parses, but no rule file is that deep
    '{"rules": [' + "9" * 5000 + "]}",                             # an integer Python will not convert
])
def test_pathological_rule_file_is_one_line(invoke, project: Path, tmp_path: Path, text: str) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    result = invoke("-i", project, "-o", tmp_path / "out", "-r", bad)
    assert_refused(result, f"bad rule file: {bad}: ")
    assert not (tmp_path / "out").exists()
    listing = invoke("rules", "-r", bad)
    assert_refused(listing, f"bad rule file: {bad}: ")


def test_model_without_distributed(invoke, project: Path, tmp_path: Path) -> None:
    assert_refused(invoke("-i", project, "-o", tmp_path / "out", "--model", "net"), "--model goes with --distributed")
    assert not (tmp_path / "out").exists()
