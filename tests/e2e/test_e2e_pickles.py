"""torch.load after migration: storages come back where they were saved from, and pickled objects
(torch >= 2.6 refuses them by default) are reported, or loaded with ``--trust-pickles``.

Fixtures: ``fixtures/pickles/word_lm.py`` (pytorch/examples word_language_model: a whole model
pickled, restored and evaluated on accelerator data) and ``fixtures/pickles/cache_features.py``
(albert_pytorch: a list of feature objects cached by the first run, loaded by the second).
"""

from __future__ import annotations

import csv
import subprocess
from pathlib import Path

import pytest

from e2e_support import FIXTURES, PYTHON, ROOT, run_process

PICKLES = FIXTURES / "pickles"
LOAD_ROW = "TP171"


def _migrate(out: Path, *options: str) -> Path:
    done = subprocess.run([PYTHON, "-m", "transplant", "-i", str(PICKLES), "-o", str(out), "--quiet", *options],
                          capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    return out


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _emulated(script: Path, *args: str, cwd: Path):
    return run_process([PYTHON, "-m", "transplant", "run", str(script), *args], cwd=cwd,
                       env={"TRANSPLANT_NPU_COUNT": "2"})


def test_pickle_loads_are_reported_and_left_alone(tmp_path: Path) -> None:
    out = _migrate(tmp_path / "out")
    unsupported = [r for r in _rows(out / "unsupported_api.csv") if r["Rule"] == LOAD_ROW]
    assert {(r["File"], r["Start Line"]) for r in unsupported} == {("cache_features.py", "20"), ("word_lm.py", "101")}
    assert all("--trust-pickles" in r["Tips"] and "trusted" in r["Tips"] for r in unsupported)
    # No row edits a call that would still fail: both loads are byte for byte the original.
    assert not [r for r in _rows(out / "change_list.csv") if r["Rule"] in ("TP170", LOAD_ROW)]
    for name, line in (("cache_features.py", 20), ("word_lm.py", 101)):
        original = (PICKLES / name).read_text().splitlines()[line - 1]
        assert "torch.load(" in original and original in (out / name).read_text().splitlines()


@pytest.mark.slow
def test_word_language_model_restores_onto_the_npu(tmp_path: Path) -> None:
    out = _migrate(tmp_path / "out", "--trust-pickles")
    changes = [r for r in _rows(out / "change_list.csv") if r["File"] == "word_lm.py" and r["Start Line"] == "101"]
    assert sorted(r["Rule"] for r in changes) == ["TP170", LOAD_ROW]
    run = _emulated(out / "word_lm.py", "--cuda", "--epochs", "1", "--save", str(tmp_path / "model.pt"), cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip().splitlines()[-1].endswith(" on npu"), run.stdout


@pytest.mark.slow
def test_cached_feature_objects_load_on_the_second_run(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    # The problem: under torch >= 2.6 the unmigrated script fails on its second run.
    first = run_process([PYTHON, str(PICKLES / "cache_features.py"), "--cache_dir", str(cache)], cwd=tmp_path)
    assert first.returncode == 0, first.describe()
    second = run_process([PYTHON, str(PICKLES / "cache_features.py"), "--cache_dir", str(cache)], cwd=tmp_path)
    assert second.returncode != 0 and "UnpicklingError" in second.stderr, second.describe()

    out = _migrate(tmp_path / "out", "--trust-pickles")
    npu_cache = tmp_path / "npu_cache"
    npu_cache.mkdir()
    outputs = []
    for _ in range(2):
        run = _emulated(out / "cache_features.py", "--cache_dir", str(npu_cache), cwd=tmp_path)
        assert run.returncode == 0, run.describe()
        outputs.append(run.stdout.strip().splitlines())
    assert outputs[0][0].startswith("Saving") and outputs[1][0].startswith("Loading")
    assert outputs[0][-1] == outputs[1][-1] == "features 16 408 8 npu"


# Saves checkpoints whose storages are tagged as a CUDA host would tag them (a tagger ahead of torch's
# own), and one plain CPU checkpoint; no CUDA is needed to write the tags.
_SAVE_AS_CUDA = '''
import sys
import torch

def as_cuda(storage):
    return "cuda:1"

torch.save({"w": torch.arange(4.0)}, sys.argv[2])
torch.serialization.register_package(0, as_cuda, lambda storage, location: None)
torch.save({"w": torch.arange(4.0), "b": torch.ones(2)}, sys.argv[1])
'''

_LOADER = '''
import sys
import torch

model = torch.nn.Linear(2, 2)
if sys.argv[1] == "save-npu":
    torch.save({"w": torch.arange(4.0).cuda()}, sys.argv[2])
    sys.exit(0)
for path in sys.argv[1:]:
    state = torch.load(path, weights_only=True)
    print(path.rsplit("/", 1)[-1], sorted((k, str(v.device)) for k, v in state.items()), float(state["w"].sum()))
'''


@pytest.mark.slow
def test_map_location_keeps_each_storage_where_it_was_saved(tmp_path: Path) -> None:
    saver = tmp_path / "save_as_cuda.py"
    saver.write_text(_SAVE_AS_CUDA)
    done = run_process([PYTHON, str(saver), str(tmp_path / "cuda.pt"), str(tmp_path / "cpu.pt")], cwd=tmp_path)
    assert done.returncode == 0, done.describe()
    src = tmp_path / "src"
    src.mkdir()
    (src / "loader.py").write_text(_LOADER)
    out = tmp_path / "out"
    done = subprocess.run([PYTHON, "-m", "transplant", "-i", str(src), "-o", str(out), "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr
    assert "map_location=" in (out / "loader.py").read_text()
    saved = _emulated(out / "loader.py", "save-npu", str(tmp_path / "npu.pt"), cwd=tmp_path)
    assert saved.returncode == 0, saved.describe()

    run = _emulated(out / "loader.py", *(str(tmp_path / n) for n in ("cuda.pt", "cpu.pt", "npu.pt")), cwd=tmp_path)
    assert run.returncode == 0, run.describe()
    assert run.stdout.strip().splitlines() == [
        "cuda.pt [('b', 'npu:1'), ('w', 'npu:1')] 6.0",  # saved from cuda:1: back on npu:1
        "cpu.pt [('w', 'cpu')] 6.0",                     # saved from the CPU: stays there
        "npu.pt [('w', 'npu:0')] 6.0",                   # saved from the NPU: loads as it is
    ]
    # Unmigrated, the CUDA checkpoint cannot be loaded on this host at all.
    plain = run_process([PYTHON, str(src / "loader.py"), str(tmp_path / "cuda.pt")], cwd=tmp_path)
    assert plain.returncode != 0 and "CUDA" in plain.stderr, plain.describe()
