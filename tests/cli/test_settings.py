"""[tool.transplant] in pyproject.toml: found from SRC upwards, overridden by the command line, shown."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cli_helpers import UTILS_PY, write_tree

TWO_RULES = "import torch\nx = torch.zeros(2).cuda()\ntorch.cuda.synchronize()\n"


def rules_of(out: Path) -> set[str]:
    with (out / "change_list.csv").open(newline="") as handle:
        return {row["Rule"] for row in csv.DictReader(handle)}


def test_config_from_a_parent_folder_applies(invoke, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {
        "pyproject.toml": '[project]\nname = "x"\n\n[tool.transplant]\nselect = ["TP120"]\nexclude = ["vendor"]\n',
        "src/train.py": TWO_RULES,
        "src/vendor/v.py": UTILS_PY,
    })
    out = tmp_path / "out"
    result = invoke("-i", project / "src", "-o", out)
    assert result.exit_code == 0, result.output
    assert rules_of(out) == {"TP120", "TP190"}  # --select brings the import rule (TP190) its output needs
    assert (out / "vendor/v.py").read_bytes() == UTILS_PY
    report = json.loads((out / "transplant_report.json").read_text())
    assert report["options"]["select"] == ["TP120"] and report["options"]["exclude"] == ["vendor"]


def test_command_line_overrides_the_file(invoke, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {
        "pyproject.toml": '[tool.transplant]\nselect = ["TP120"]\n', "train.py": TWO_RULES})
    out = tmp_path / "out"
    assert invoke("-i", project, "-o", out, "--select", "TP101").exit_code == 0
    assert rules_of(out) == {"TP101", "TP190"}  # and its import rule


def test_nearest_file_with_the_table_wins_and_others_are_skipped(invoke, tmp_path: Path) -> None:
    write_tree(tmp_path / "outer", {"pyproject.toml": '[tool.transplant]\nignore = ["TP1"]\n'})
    inner = write_tree(tmp_path / "outer/inner", {"pyproject.toml": '[project]\nname = "no-table"\n',
                                                  "train.py": TWO_RULES})
    shown = invoke("--show-settings", "-i", inner)
    assert shown.exit_code == 0
    assert f"# configuration file: {tmp_path / 'outer' / 'pyproject.toml'}" in shown.stdout
    ignore_line = next(line for line in shown.stdout.splitlines() if line.startswith("ignore "))
    assert '["TP1"]' in ignore_line and ignore_line.endswith(f"# {tmp_path / 'outer' / 'pyproject.toml'}")


def test_show_settings_names_every_origin(invoke, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {
        "pyproject.toml": '[tool.transplant]\namp = "bf16"\nrules = ["my_rules.json"]\nbaseline = "b.json"\n'})
    result = invoke("-i", project, "--show-settings", "--select", "TP5", "--no-ignore")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.stdout.splitlines() if not line.startswith("#")}
    assert lines["select"].endswith("# command line") and '["TP5"]' in lines["select"]
    assert lines["respect-gitignore"].split("=")[1].split()[0] == "false"
    assert lines["respect-gitignore"].endswith("# command line")
    assert lines["amp"].endswith(str(project / "pyproject.toml")) and '"bf16"' in lines["amp"]
    assert str(project / "my_rules.json") in lines["rules"]  # relative to the file's folder
    assert str(project / "b.json") in lines["baseline"]
    assert lines["ignore"].endswith("# default") and lines["copy-vcs"].endswith("# default")


def test_bad_table_is_a_one_line_usage_error(invoke, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {"pyproject.toml": '[tool.transplant]\nselekt = ["TP1"]\n',
                                             "a.py": "x = 1\n"})
    result = invoke("-i", project, "--check")
    assert result.exit_code == 2
    assert len(result.stderr.splitlines()) == 1 and "unknown key [tool.transplant] selekt" in result.stderr
    (project / "pyproject.toml").write_text('[tool.transplant]\namp = "fp8"\n')
    assert "must be" in invoke("-i", project, "--check").stderr
    (project / "pyproject.toml").write_text('[tool.transplant\nbroken')
    broken = invoke("-i", project, "--check")
    assert broken.exit_code == 2 and "not valid TOML" in broken.stderr


def test_baseline_from_the_file_gates_check(invoke, tmp_path: Path) -> None:
    project = write_tree(tmp_path / "proj", {"pyproject.toml": '[tool.transplant]\nbaseline = "tp-baseline.json"\n',
                                             "src/a.py": TWO_RULES})
    assert invoke("-i", project / "src", "--write-baseline", project / "tp-baseline.json").exit_code == 0
    result = invoke("-i", project / "src", "--check")
    assert result.exit_code == 0, result.output
    assert "in the baseline" in result.stderr
    # A migration (not --check) never reads the baseline.
    assert invoke("-i", project / "src", "-o", tmp_path / "out").exit_code == 0
