"""`transplant rules`, `transplant run`, `python -m transplant` and the top-level help."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path

import pytest

from cli_helpers import PYTHON, REPO, write_tree
from transplant.rules import load_ruleset


def test_help_documents_everything(invoke) -> None:
    result = invoke("--help")
    assert result.exit_code == 0
    for word in ("-i, --input", "-o, --output", "--rules", "--select", "--ignore", "--exclude", "--diff",
                 "--check", "--jobs", "--force", "--entry", "--amp", "--npu-fused-optimizers", "--quiet",
                 "--baseline", "--write-baseline", "--statistics", "--output-format", "--show-settings",
                 "--no-ignore", "--copy-vcs", "transplant: ignore", "rules", "run"):
        assert word in result.stdout, word


def test_python_dash_m(tmp_path: Path) -> None:
    src = write_tree(tmp_path / "src", {"a.py": b"import torch\ntorch.cuda.set_device(0)\n"})
    proc = subprocess.run([PYTHON, "-m", "transplant", "-i", str(src), "-o", str(tmp_path / "out"), "-q"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "torch.npu.set_device(0)" in (tmp_path / "out" / "a.py").read_text()
    usage = subprocess.run([PYTHON, "-m", "transplant", "--help"], capture_output=True, text=True, cwd=REPO)
    assert usage.returncode == 0 and usage.stdout.startswith("Usage: transplant ")


def test_rules_lists_every_rule(invoke) -> None:
    ruleset = load_ruleset()
    result = invoke("rules")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert len(lines) == len(ruleset.rules)
    ids = [line.split()[0] for line in lines]
    assert ids == sorted(rule.id for rule in ruleset.rules)
    for line, rule in zip(lines, sorted(ruleset.rules, key=lambda r: r.id)):
        assert line.split()[1:3] == [rule.kind, rule.severity]
        assert line.endswith(rule.message)


def test_rules_shows_one_rule_in_full(invoke) -> None:
    ruleset = load_ruleset()
    if not len(ruleset.rules):
        pytest.fail("no bundled rules")
    rule = sorted(ruleset.rules, key=lambda r: r.id)[0]
    result = invoke("rules", rule.id)
    assert result.exit_code == 0
    assert result.stdout.startswith(f"{rule.id}  ({rule.kind}, {rule.severity})")
    assert rule.message in result.stdout
    for text in (rule.tip, rule.reference):
        if text:
            assert text in result.stdout


def test_rules_prefix_and_unknown(invoke) -> None:
    result = invoke("rules", "TP1")
    assert result.exit_code == 0
    assert result.stdout and all(line.startswith("TP1") for line in result.stdout.splitlines())
    missing = invoke("rules", "TP000")
    assert missing.exit_code == 2 and missing.stderr.startswith("transplant: error: no rule TP000")


def test_rules_includes_user_rule_file(invoke, tmp_path: Path) -> None:
    extra = tmp_path / "mine.json"
    extra.write_text('{"name": "mine", "description": "d", "rules": [{"id": "TP998", "kind": "rename",'
                     ' "severity": "review", "message": "my rename", "tip": "check it",'
                     ' "map": {"mylib.cuda_thing": "mylib.npu_thing"}}]}')
    listing = invoke("rules", "-r", extra)
    assert listing.exit_code == 0, listing.output
    assert any(line.startswith("TP998") and line.endswith("my rename") for line in listing.stdout.splitlines())
    shown = invoke("rules", "-r", extra, "TP998")
    assert "tip:         check it" in shown.stdout
    assert "mylib.cuda_thing -> mylib.npu_thing" in shown.stdout


def test_run_passes_everything_through(invoke, monkeypatch) -> None:
    calls = []
    fake = types.ModuleType("transplant.emulate.runner")

    def run(argv, *, strict_cuda=False, nproc=None):
        calls.append((argv, strict_cuda, nproc))
        return 7

    fake.run = run
    monkeypatch.setitem(sys.modules, "transplant.emulate.runner", fake)
    result = invoke("run", "--strict-cuda", "--nproc", "2", "train.py", "--epochs", "3", "-q", "--nproc", "9")
    assert result.exit_code == 7
    assert calls == [(["train.py", "--epochs", "3", "-q", "--nproc", "9"], True, 2)]
    calls.clear()
    assert invoke("run", "s.py", "--help").exit_code == 7
    assert calls == [(["s.py", "--help"], False, None)]


def test_run_refusal_is_one_line_usage_error(invoke, monkeypatch) -> None:
    fake = types.ModuleType("transplant.emulate.runner")

    def run(argv, *, strict_cuda=False, nproc=None):
        raise RuntimeError("transplant.emulate: the real torch_npu is installed (/x)")

    fake.run = run
    monkeypatch.setitem(sys.modules, "transplant.emulate.runner", fake)
    result = invoke("run", "train.py")
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [
        "transplant: error: transplant.emulate: the real torch_npu is installed (/x)"
    ]


@pytest.mark.slow
def test_run_on_the_emulator(tmp_path: Path) -> None:
    script = write_tree(tmp_path, {"s.py": b"import sys\nprint('args', sys.argv[1:])\nsys.exit(3)\n"}) / "s.py"
    proc = subprocess.run([PYTHON, "-m", "transplant", "run", str(script), "--x", "y"], capture_output=True,
                          text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert "args ['--x', 'y']" in proc.stdout


def test_version(invoke) -> None:
    from transplant import __version__

    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.stdout


def test_no_arguments_prints_help(invoke) -> None:
    result = invoke()
    assert result.exit_code == 2
    assert result.stdout.startswith("Usage: transplant ")


def test_a_clash_with_the_unrelated_transplant_package_is_named(monkeypatch, capsys) -> None:
    """The unrelated `transplant` distribution imports under our name: the command says so in one line."""
    import transplant
    from transplant import cli

    assert transplant.__distribution__ == "transplant-npu"
    monkeypatch.delattr(transplant, "__distribution__")
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "pip uninstall transplant" in lines[0] and "transplant-npu" in lines[0]
