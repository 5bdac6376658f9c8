"""The project index (transplant/project/index.py): what crosses file boundaries, and its bounds."""

from __future__ import annotations

import pickle

from transplant.project.index import (
    CallableSlots,
    ParamSlot,
    SlotFacts,
    build_index,
    merge_callables,
    module_name,
)
from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

RULESET = load_ruleset()
SLOTS = SlotFacts.from_ruleset(RULESET)


def _index(files: dict[str, str], **kwargs):
    return build_index({k: v.encode() for k, v in files.items()}, SLOTS, **kwargs)


def _rewrite(index, rel: str, text: str, project_modules=()):
    return rewrite_source(text.encode(), rel, RULESET, flow=index.flow_for(rel), project_modules=project_modules)


def test_module_names():
    assert module_name("pkg/sub/mod.py") == "pkg.sub.mod"
    assert module_name("pkg/__init__.py") == "pkg"
    assert module_name("run.py") == "run"


def test_parameter_reaching_a_slot_through_self():
    index = _index({"models/seq.py": (
        "import torch\n"
        "class Seq2Seq:\n"
        "    def __init__(self, enc, dec, device, lengths=None):\n"
        "        self.device = device\n"
        "    def forward(self, x):\n"
        "        return torch.zeros(3).to(self.device)\n")})
    slots = index.callables["models.seq.Seq2Seq"]
    assert [(s.param, s.index, s.domain) for s in slots.params] == [("device", 2, "device")]
    assert "through self.device" in slots.params[0].why


def test_parameter_that_only_prints_or_builds_paths_is_not_a_device():
    index = _index({"util.py": (
        "import os\n"
        "def log(name, where):\n"
        "    print(name, where)\n"
        "def path(root, tag):\n"
        "    return os.path.join(root, tag)\n")})
    assert index.callables == {}


def test_parameter_passed_on_to_another_project_callable():
    index = _index({
        "a.py": "from b import inner\ndef outer(x, dev):\n    return inner(x, dev)\n",
        "b.py": "import torch\ndef inner(x, where):\n    return torch.ones(2, device=where)\n",
    })
    outer = index.callables["a.outer"]
    assert outer.slot_for(1, None) is not None
    assert "inner(where)" in outer.params[0].why


def test_relative_imports_and_package_reexports():
    index = _index({
        "pkg/__init__.py": "from .models import Net\n",
        "pkg/models.py": "class Net:\n    def __init__(self, device):\n        self.w = 1\n        x.to(device)\n",
        "pkg/train.py": "from . import models\nfrom pkg import Net\nNet('cuda')\nmodels.Net('cuda')\n",
    })
    result = _rewrite(index, "pkg/train.py", "from . import models\nfrom pkg import Net\nNet('cuda')\nmodels.Net('cuda')\n")
    assert result.status is Status.CHANGED
    assert result.new_source.count(b"'npu'") == 2


def test_ambiguous_module_suffix_resolves_to_nothing():
    index = _index({
        "a/utils.py": "def f(device):\n    x.to(device)\n",
        "b/utils.py": "def f(label):\n    print(label)\n",
    })
    assert "utils" not in index.aliases
    assert index.resolve("utils.f") is None
    assert index.resolve("a.utils.f") is not None


def test_module_level_name_used_as_device_elsewhere():
    index = _index({
        "settings.py": "GPU = 'cuda:1'\nNAME = 'cuda'\n",
        "train.py": "import torch\nimport settings\nx = torch.zeros(1).to(settings.GPU)\nprint(settings.NAME)\n",
    })
    result = _rewrite(index, "settings.py", "GPU = 'cuda:1'\nNAME = 'cuda'\n")
    assert result.status is Status.CHANGED
    assert result.new_source == b"GPU = 'npu:1'\nNAME = 'cuda'\n"
    assert "used as a device by .to() at train.py:3" in result.changes[0].message


def test_dict_table_of_model_classes():
    files = {
        "zoo.py": ("from m1 import A\nfrom m2 import B\nMODELS = {'a': A, 'b': B}\n"),
        "m1.py": "class A:\n    def __init__(self, n, device):\n        x.to(device)\n",
        "m2.py": "class B:\n    def __init__(self, n, label):\n        print(label)\n",
        "run.py": "from zoo import MODELS\nMODELS['a'](1, 'cuda')\nMODELS['b'](1, 'cuda')\nMODELS[k](1, 'cuda')\n",
    }
    index = _index(files)
    result = _rewrite(index, "run.py", files["run.py"])
    # only the literal key 'a' is known to be a device: B's second parameter is a label
    assert result.new_source == b"from zoo import MODELS\nMODELS['a'](1, 'npu')\nMODELS['b'](1, 'cuda')\nMODELS[k](1, 'cuda')\n"


def test_merge_callables_needs_agreement():
    a = CallableSlots("m.A", "m.py", 1, (ParamSlot("device", "device", 1, "why"),), ("n", "device"))
    b = CallableSlots("m.B", "m.py", 5, (), ("n",))
    c = CallableSlots("m.C", "m.py", 9, (), ("n", "label"))
    assert merge_callables([a, b], "T[...]").slot_for(1, None) is not None
    assert merge_callables([a, c], "T[...]") is None


def test_forwarded_argument_tuples():
    files = {
        "shard.py": "class Shard:\n    def __init__(self, device, n):\n        self.d = device\n        x.to(self.d)\n",
        "main.py": ("import functools\nimport torch.distributed.rpc as rpc\nfrom shard import Shard\n"
                    "args = ('cuda:0', 3)\n"
                    "rpc.remote('w', Shard, args=args)\n"
                    "rpc.remote('w', Shard, args=('cuda:1',) + rest)\n"
                    "rpc.remote('w', Shard, args=(3, 'cuda:1'))\n"
                    "functools.partial(Shard, 'cuda')\n"),
    }
    index = _index(files)
    result = _rewrite(index, "main.py", files["main.py"])
    text = result.new_source.decode()
    assert "args = ('npu:0', 3)" in text
    assert "args=('npu:1',) + rest" in text
    assert "args=(3, 'cuda:1')" in text       # position 1 is n, not the device
    assert "functools.partial(Shard, 'npu')" in text


def test_bounds_degrade_to_not_a_device():
    files = {"m.py": "def f(device):\n    x.to(device)\n", "r.py": "from m import f\nf('cuda')\n"}
    index = _index(files, max_seconds=0.0)
    assert not index.complete
    result = _rewrite(index, "r.py", files["r.py"], project_modules={"m", "r"})
    assert result.status is Status.UNCHANGED
    assert [(u.rule, u.op) for u in result.unsupported] == [("TP581", "f(..., 'cuda', ...)")]


def test_call_chain_beyond_the_depth_bound_is_reported_not_guessed():
    # f0 -> f1 -> ... -> f6 -> .to(): deeper than MAX_DEPTH hops, analysed in an order that needs them all
    files = {f"m{i}.py": f"from m{i + 1} import f{i + 1}\ndef f{i}(d):\n    return f{i + 1}(d)\n" for i in range(6)}
    files["m6.py"] = "def f6(d):\n    return x.to(d)\n"
    files["a.py"] = "from m0 import f0\nf0('cuda')\n"
    files["b.py"] = "from m5 import f5\nf5('cuda')\n"
    index = _index(files)
    result = _rewrite(index, "a.py", files["a.py"])
    assert result.status is Status.UNCHANGED
    assert [u.rule for u in result.unsupported] == ["TP581"]
    near = _rewrite(index, "b.py", files["b.py"])
    assert near.status is Status.CHANGED


def test_unparsable_file_is_skipped():
    index = _index({"bad.py": "def (:\n", "ok.py": "def f(device):\n    x.to(device)\n"})
    assert "ok.f" in index.callables and "bad" not in index.module_of_path.values()


def test_index_pickles_for_the_workers():
    index = _index({"m.py": "def f(device):\n    x.to(device)\n"})
    again = pickle.loads(pickle.dumps(index))
    assert again.callables == index.callables


def test_external_package_keyword_is_reported():
    text = ("from somelib.train import Trainer\nimport torch\n"
            "Trainer(device='cuda:0')\nTrainer(backend='nccl')\nTrainer(name='cuda')\n"
            "import pytest\npytest.param('cuda')\n")
    result = rewrite_source(text.encode(), "t.py", RULESET)
    rows = [(u.line, u.rule, u.op) for u in result.unsupported]
    assert rows == [(3, "TP580", "somelib.train.Trainer(device='cuda:0')"),
                    (4, "TP580", "somelib.train.Trainer(backend='nccl')")]
