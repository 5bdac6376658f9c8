"""Auto mode's import hook (issue #15): the user's own modules are rewritten with the offline rules as
they are imported, line numbers kept, results cached; libraries are never touched.

Every case runs a small project in a subprocess on the emulated NPU (auto mode never enters pytest).
"""

from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent / "scripts"


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))


def _run(auto_env, cwd: Path, args: list[str], timeout: int = 300, **extra: str) -> subprocess.CompletedProcess:
    env = auto_env(TRANSPLANT_AUTO_QUIET="1", **extra)
    if "PYTHONDONTWRITEBYTECODE" not in extra:
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # the cache is written unless the user says otherwise
    return subprocess.run([sys.executable, *args], cwd=str(cwd), env=env, capture_output=True, text=True,
                          timeout=timeout)


def _rows(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


DEVICE_CHECKS = {
    "helpers.py": '''
        import torch


        def describe(x):
            return {
                "type_is_cuda": x.device.type == 'cuda',
                "in_str": 'cuda' in str(x.device),
                "equals_device": x.device == torch.device('cuda', 0),
                "is_cuda": x.is_cuda,
            }
    ''',
    "main.py": '''
        import json
        import sys

        import torch

        import helpers

        x = torch.ones(2).cuda()
        result = helpers.describe(x)
        result["main_type_is_cuda"] = x.device.type == 'cuda'
        result["device"] = str(x.device)
        result["libcst_imported"] = "libcst" in sys.modules
        json.dump(result, open(sys.argv[1], "w"))
    ''',
}


@pytest.mark.parametrize("start", ["environment", "launcher", "import"])
def test_device_type_comparisons_hold_on_the_npu(auto_env, tmp_path, start):
    """``x.device.type == 'cuda'`` and friends are True for NPU tensors in the user's modules, however
    auto mode is started: TRANSPLANT_AUTO=1, ``python -m transplant.auto``, ``import transplant.auto``."""
    files = dict(DEVICE_CHECKS)
    if start == "import":
        files["main.py"] = "import transplant.auto\n" + textwrap.dedent(files["main.py"]).lstrip("\n")
    _write(tmp_path, files)
    out = tmp_path / "out.json"
    if start == "environment":
        proc = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    elif start == "launcher":
        proc = _run(auto_env, tmp_path, ["-m", "transplant.auto", "main.py", str(out)])
    else:
        proc = _run(auto_env, tmp_path, ["main.py", str(out)])
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result == {"type_is_cuda": True, "in_str": True, "equals_device": True, "is_cuda": True,
                      "main_type_is_cuda": True, "device": "npu:0", "libcst_imported": True}


def test_rewrite_off_keeps_runtime_patches_only(auto_env, tmp_path):
    """TRANSPLANT_AUTO_REWRITE=0: today's behaviour; the comparisons see the NPU device as it is."""
    _write(tmp_path, DEVICE_CHECKS)
    out = tmp_path / "out.json"
    proc = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1", TRANSPLANT_AUTO_REWRITE="0")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["device"] == "npu:0" and result["is_cuda"] is True  # runtime patches
    assert result["type_is_cuda"] is False and result["main_type_is_cuda"] is False
    assert result["libcst_imported"] is False
    assert not list(tmp_path.rglob("*transplant*.pyc"))


def test_static_edits_are_logged_with_the_runtime_hits(auto_env, tmp_path):
    """The change log lists every static edit per module, in change_list.csv's columns."""
    files = dict(DEVICE_CHECKS)
    # a device computed at run time (the command line) is the runtime patches' job
    files["main.py"] = textwrap.dedent(files["main.py"]) + "torch.zeros(1, device=sys.argv[2])\n"
    _write(tmp_path, files)
    report = tmp_path / "changes.csv"
    proc = _run(auto_env, tmp_path, ["main.py", str(tmp_path / "out.json"), "cuda:0"], TRANSPLANT_AUTO="1",
                TRANSPLANT_AUTO_REPORT=str(report))
    assert proc.returncode == 0, proc.stderr
    header = report.read_text(encoding="utf-8").splitlines()[0].split(",")
    from transplant.report import CHANGE_COLUMNS

    assert header[: len(CHANGE_COLUMNS)] == list(CHANGE_COLUMNS)
    rows = _rows(report)
    static = {(r["File"], r["Start Line"], r["Rule"], r["Before"], r["After"]) for r in rows
              if r["Message"].endswith("(auto mode, rewritten at import)")}
    assert ("helpers.py", "6", "TP130", "'cuda'", "'npu'") in static
    assert ("helpers.py", "8", "TP130", "'cuda'", "'npu'") in static
    assert ("main.py", "8", "TP120", "torch.ones(2).cuda", "torch.ones(2).npu") in static
    runtime = [r for r in rows if r["Message"].startswith("torch.zeros")]
    assert [(r["File"], r["Start Line"], r["Before"], r["After"], r["Count"]) for r in runtime] == [
        ("main.py", "14", "'cuda:0'", "'npu:0'", "1")]


TRAINER = '''
    import torch


    def train(model, optimizer, fp16):
        if fp16:
            from apex import amp
            model, optimizer = amp.initialize(model, optimizer, opt_level="O1")
        loss = model(torch.ones(2, 2, device='cuda')).sum()
        if fp16:
            with amp.scale_loss(loss, optimizer) as scaled_loss:
                scaled_loss.backward()
        else:
            loss.backward()
        optimizer.step()
        raise RuntimeError("marker")
'''


def test_tracebacks_and_inspect_point_at_the_original_lines(auto_env, tmp_path):
    """The apex rewrite adds and removes lines; the module still reports the original numbers."""
    _write(tmp_path, {
        "trainer.py": TRAINER,
        "main.py": '''
            import inspect
            import json
            import sys
            import traceback

            import torch

            import trainer

            model = torch.nn.Linear(2, 2).cuda()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            try:
                trainer.train(model, optimizer, True)
            except RuntimeError as error:
                frame = traceback.extract_tb(error.__traceback__)[-1]
                info = {"line": frame.lineno, "text": frame.line, "name": frame.name,
                        "first_line": inspect.getsourcelines(trainer.train)[1],
                        "code_first_line": trainer.train.__code__.co_firstlineno}
            json.dump(info, open(sys.argv[1], "w"))
        ''',
    })
    original_lines = (tmp_path / "trainer.py").read_text().splitlines()
    marker = original_lines.index('    raise RuntimeError("marker")') + 1
    out = tmp_path / "out.json"
    proc = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    assert proc.returncode == 0, proc.stderr
    info = json.loads(out.read_text())
    assert info == {"line": marker, "text": 'raise RuntimeError("marker")', "name": "train",
                    "first_line": 4, "code_first_line": 4}


def test_apex_is_rewritten_at_import(auto_env, tmp_path):
    """``from apex import amp`` (no apex here) runs as native AMP on the NPU."""
    _write(tmp_path, {
        "trainer.py": TRAINER.replace('    raise RuntimeError("marker")\n', "    return float(loss)\n"),
        "main.py": '''
            import sys

            import torch

            import trainer

            model = torch.nn.Linear(2, 2).cuda()
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            print(trainer.train(model, optimizer, True), next(model.parameters()).device)
        ''',
    })
    proc = _run(auto_env, tmp_path, ["main.py"], TRANSPLANT_AUTO="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split()[1] == "npu:0"


def test_cache_is_reused_and_invalidated_by_an_edit(auto_env, tmp_path):
    """Second start: no parse (libcst is never imported); edit a module: it is rewritten again."""
    _write(tmp_path, DEVICE_CHECKS)
    out = tmp_path / "out.json"
    first = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    assert first.returncode == 0, first.stderr
    assert json.loads(out.read_text())["libcst_imported"] is True
    caches = sorted(p.name for p in (tmp_path / "__pycache__").glob("*transplant*.pyc"))
    assert [name.split(".")[0] for name in caches] == ["helpers", "main"]

    second = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    assert second.returncode == 0, second.stderr
    result = json.loads(out.read_text())
    assert result["libcst_imported"] is False and result["type_is_cuda"] is True

    helpers = tmp_path / "helpers.py"
    helpers.write_text(helpers.read_text().replace('"is_cuda": x.is_cuda,', '"is_cuda": x.is_cuda, "edited": 1,'))
    third = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    assert third.returncode == 0, third.stderr
    result = json.loads(out.read_text())
    assert result["edited"] == 1 and result["type_is_cuda"] is True and result["libcst_imported"] is True


def test_no_cache_written_with_pythondontwritebytecode(auto_env, tmp_path):
    _write(tmp_path, DEVICE_CHECKS)
    out = tmp_path / "out.json"
    proc = _run(auto_env, tmp_path, ["main.py", str(out)], TRANSPLANT_AUTO="1", PYTHONDONTWRITEBYTECODE="1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["type_is_cuda"] is True
    assert not list(tmp_path.rglob("*transplant*.pyc"))


def test_read_only_tree_compiles_in_memory(auto_env, tmp_path):
    """No cache can be written (``__pycache__`` is a file here, which even root cannot write into):
    the modules are rewritten in memory and run."""
    project = tmp_path / "ro"
    _write(project, DEVICE_CHECKS)
    (project / "__pycache__").write_text("not a directory")
    out = tmp_path / "out.json"
    proc = _run(auto_env, project, ["main.py", str(out)], TRANSPLANT_AUTO="1")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out.read_text())["type_is_cuda"] is True
    assert (project / "__pycache__").read_text() == "not a directory"
    assert "Traceback" not in proc.stderr


def test_library_under_site_packages_is_left_untouched(auto_env, tmp_path):
    """A module under site-packages (here a venv inside the project) keeps its own code."""
    site = tmp_path / ".venv" / "lib" / "python3" / "site-packages"
    _write(tmp_path, {
        str(site.relative_to(tmp_path) / "vendored.py"): '''
            def is_cuda_type(x):
                return x.device.type == 'cuda'
        ''',
        "main.py": '''
            import sys

            import torch

            sys.path.insert(0, sys.argv[1])
            import vendored

            x = torch.ones(1).cuda()
            print(vendored.is_cuda_type(x), x.device.type == 'cuda')
        ''',
    })
    proc = _run(auto_env, tmp_path, ["main.py", str(site)], TRANSPLANT_AUTO="1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["False", "True"]
    assert not list(site.rglob("*transplant*.pyc"))


@pytest.mark.slow
def test_imagenet_style_ddp_with_mp_spawn_two_ranks(auto_env, tmp_path):
    """pytorch/examples imagenet-style: torch.accelerator + ``device.type == 'cuda'`` branches, mp.spawn,
    nccl. Without the rewrite rank 0 dies with mixed devices; with it both ranks train on their NPU."""
    project = tmp_path / "imagenet"
    shutil.copytree(SCRIPTS / "imagenet_style", project, ignore=shutil.ignore_patterns("__pycache__"))
    out = tmp_path / "run"
    args = ["main.py", "--multiprocessing-distributed", "--out", str(out), "--dist-url",
            f"tcp://127.0.0.1:{_free_port()}"]
    proc = _run(auto_env, project, args, timeout=600, TRANSPLANT_AUTO="1", TRANSPLANT_NPU_COUNT="2")
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads(Path(f"{out}.rank{rank}").read_text()) for rank in (0, 1)]
    assert [r["device"] for r in ranks] == ["npu:0", "npu:1"]
    assert ranks[0]["losses"] != ranks[1]["losses"]  # each rank its own data ...
    assert ranks[0]["weights_sum"] == ranks[1]["weights_sum"]  # ... and DDP kept the weights equal

    off = _run(auto_env, project, args[:-1] + [f"tcp://127.0.0.1:{_free_port()}"], timeout=600,
               TRANSPLANT_AUTO="1", TRANSPLANT_NPU_COUNT="2", TRANSPLANT_AUTO_REWRITE="0")
    assert off.returncode != 0
    assert "Expected all tensors to be on the same device" in off.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
