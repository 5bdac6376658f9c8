"""Every rewrite target exists in the real API, and every apex argument we keep is accepted there.

In the spirit of tf_upgrade_v2's introspection tests: torch targets are checked against the installed
torch; torch_npu targets against the names read from the torch_npu wheel (transplant/data).
"""

from __future__ import annotations

import importlib
import inspect
import json

import pytest

from transplant._paths import data_dir
from transplant.rewrite.apex_native import _ANY, NORMS, OPTIMIZERS, PARALLEL, Target

torch = pytest.importorskip("torch")

ALL = {f"{package}.{name}": target for package, table in
       (("normalization", NORMS), ("optimizers", OPTIMIZERS), ("parallel", PARALLEL))
       for name, target in table.items()}


def _resolve(dotted: str) -> object:
    module, _, attr = dotted.rpartition(".")
    try:
        return getattr(importlib.import_module(module), attr)
    except ModuleNotFoundError:
        owner, _, cls = module.rpartition(".")
        return getattr(getattr(importlib.import_module(owner), cls), attr)


@pytest.mark.parametrize("key", sorted(k for k, t in ALL.items() if t.module.startswith("torch.")))
def test_torch_target_exists_and_accepts_the_kept_arguments(key: str) -> None:
    target: Target = ALL[key]
    obj = _resolve(target.dotted)
    signature = inspect.signature(obj.__init__ if inspect.isclass(obj) else obj)
    accepted = set(signature.parameters)
    kept = [p for p in target.params if p not in target.drop_if]
    missing = [p for p in kept if p not in accepted]
    assert not missing, f"{target.dotted} does not take {missing}"
    for name in target.add_if_absent:
        assert name in accepted


def test_torch_npu_targets_exist_in_the_wheel() -> None:
    names = set(json.loads((data_dir() / "torch_npu_names.json").read_text())["qualified_names"])
    npu_targets = [t for t in ALL.values() if t.module.startswith("torch_npu")]
    assert npu_targets
    for target in npu_targets:
        assert target.dotted in names


def test_positional_prefix_means_the_same_in_torch() -> None:
    """Positionals kept as positionals must sit at the same index in the torch signature."""
    for key, target in ALL.items():
        if not target.module.startswith("torch."):
            continue
        obj = _resolve(target.dotted)
        params = [p for p in inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters
                  if p != "self"]
        keep = target.params[:target.keep_positional]
        assert params[:len(keep)] == list(keep), (key, params[:len(keep)], keep)


def test_dropped_arguments_are_not_silently_meaningful() -> None:
    """An argument dropped for any value (``_ANY``) must be apex-only tuning, never a torch parameter."""
    for key, target in ALL.items():
        if not target.module.startswith("torch."):
            continue
        obj = _resolve(target.dotted)
        accepted = set(inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters)
        for name, values in target.drop_if.items():
            if _ANY in values:
                assert name not in accepted, (key, name)
