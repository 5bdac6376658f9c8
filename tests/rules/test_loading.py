"""Rule loading: schema validation with path + JSON pointer, select/ignore, overriding ids, pickling."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest

from transplant.rules import DeviceRule, MethodRule, RuleFileError, load_ruleset


def _write(tmp_path: Path, rules: list, name: str = "user.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps({"name": "user", "rules": rules}), encoding="utf-8")
    return path


def _rule(**over) -> dict:
    base = {"id": "TP900", "kind": "rename", "severity": "safe", "message": "m", "map": {"a.b": "a.c"}}
    base.update(over)
    return base


def test_bundled_sets_load_and_are_typed() -> None:
    rs = load_ruleset()
    assert isinstance(rs.get("TP120"), MethodRule)
    assert isinstance(rs.get("TP130"), DeviceRule)
    assert len({r.id for r in rs.rules}) == len(rs.rules)
    assert rs.options == {"amp": None, "npu_fused_optimizers": False, "trust_pickles": False, "distributed": False,
                          "model": None, "entry": None}


def test_rules_behind_an_option_are_listed_but_inert() -> None:
    off = load_ruleset()
    assert off.get("TP430") is not None and off.get("TP430").requires_option == "amp"
    assert "TP430" not in {r.id for r in off} and "TP431" not in {r.id for r in off}
    # Without --amp, a file whose only trigger is `backward` is not even parsed.
    assert not off.may_apply(b"loss.backward()\n")
    on = load_ruleset(options={"amp": "fp16"})
    assert {"TP430", "TP431"} <= {r.id for r in on}
    assert on.may_apply(b"loss.backward()\n")
    # --distributed rules likewise: listed, inert without the option
    assert off.get("TP200") is not None and off.get("TP200").requires_option == "distributed"
    assert "TP200" not in {r.id for r in off}
    assert "TP200" in {r.id for r in load_ruleset(options={"distributed": True})}


@pytest.mark.parametrize(
    "bad, pointer, expected",
    [
        (_rule(severity="maybe"), "/rules/0/severity", "is not one of"),
        (_rule(id="X1"), "/rules/0/id", "does not match"),
        ({k: v for k, v in _rule().items() if k != "map"}, "/rules/0", "'map' is a required property"),
        (_rule(map={"a.b": 3}), "/rules/0/map/a.b", "is not of type 'string'"),
        (_rule(kind="device", **{"from": "cuda", "to": "npu"}), "/rules/0", "'keywords' is a required property"),
        (_rule(extra=1), "/rules/0", "extra"),
        (_rule(kind="unsupported", map=None, names={"pynvml": ""}), "/rules/0", ""),
    ],
)
def test_schema_errors_name_path_pointer_and_expectation(tmp_path, bad, pointer, expected) -> None:
    if bad.get("map", 1) is None:
        del bad["map"]
    path = _write(tmp_path, [bad])
    with pytest.raises(RuleFileError) as err:
        load_ruleset([path])
    text = str(err.value)
    assert text.startswith(f"{path}: {pointer}")
    assert expected in text


def test_unsupported_needs_a_tip(tmp_path) -> None:
    path = _write(tmp_path, [{"id": "TP901", "kind": "unsupported", "severity": "review", "message": "m",
                              "names": {"pynvml": ""}}])
    with pytest.raises(RuleFileError, match=r"/rules/0/names/pynvml: a non-empty tip"):
        load_ruleset([path])


def test_invalid_json_and_missing_file(tmp_path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{", encoding="utf-8")
    with pytest.raises(RuleFileError, match=r"broken.json: /: valid JSON"):
        load_ruleset([bad])
    with pytest.raises(RuleFileError, match=r"nope.json: /: an existing rule file"):
        load_ruleset([tmp_path / "nope.json"])


def test_duplicate_id_in_one_file(tmp_path) -> None:
    path = _write(tmp_path, [_rule(), _rule()])
    with pytest.raises(RuleFileError, match=r"/rules/1/id: a unique id"):
        load_ruleset([path])


def test_bad_argument_expression(tmp_path) -> None:
    path = _write(tmp_path, [{"id": "TP902", "kind": "arguments", "severity": "safe", "message": "m",
                              "callable": "torch.load", "add": {"map_location": "'cpu"}}])
    with pytest.raises(RuleFileError, match=r"/rules/0/add/map_location: a Python expression"):
        load_ruleset([path])


def test_select_and_ignore_by_prefix() -> None:
    only = load_ruleset(select=["TP12"])
    # TP190 comes along: `.npu()` needs `import torch_npu` (issue 9 §5: a selected rule brings what it needs)
    assert {r.id for r in only} == {"TP120", "TP121", "TP190"}
    assert {r.id for r in load_ruleset(select=["TP12"], ignore=["TP19"])} == {"TP120", "TP121"}
    without = load_ruleset(ignore=["TP12", "TP5"])
    assert "TP120" not in without and "TP130" in without
    assert not any(r.id.startswith("TP5") for r in without)


def test_user_rule_overrides_bundled_id(tmp_path) -> None:
    bundled = load_ruleset()
    path = _write(tmp_path, [{"id": "TP120", "kind": "method", "severity": "review", "message": "mine",
                              "calls": {"cuda": "to_npu"}}, _rule()])
    rs = load_ruleset([path])
    assert rs.get("TP120").message == "mine" and rs.get("TP120").calls == {"cuda": "to_npu"}
    assert rs.get("TP900") is not None
    assert len(rs) == len(bundled) + 1


def test_structural_kinds_keep_their_fields(tmp_path) -> None:
    path = _write(tmp_path, [{"id": "TP903", "kind": "my_pass", "severity": "review", "message": "m", "knob": 3}])
    assert load_ruleset([path]).get("TP903").data == {"knob": 3}


def test_ruleset_pickles_and_prefilters() -> None:
    rs = load_ruleset(options={"amp": "bf16"})
    back = pickle.loads(pickle.dumps(rs))
    assert back.options["amp"] == "bf16" and len(back) == len(rs)
    assert back.may_apply(b"x.cuda()") and not back.may_apply(b"print('hello')\n")


def test_rules_readme_is_current() -> None:
    import importlib.util

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("gen_rules_readme", root / "tools" / "gen_rules_readme.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (root / "rules" / "README.md").read_text(encoding="utf-8") == module.render(), (
        "rules/README.md is out of date: run python tools/gen_rules_readme.py")


def test_every_bundled_rule_file_satisfies_the_schema() -> None:
    # load_ruleset trusts the shipped files (no jsonschema at start-up); this is where they are checked
    import json

    from transplant.rules import _validator, bundled_rule_files

    for path in bundled_rule_files():
        errors = [e.message for e in _validator().iter_errors(json.loads(path.read_text(encoding="utf-8")))]
        assert errors == [], f"{path.name}: {errors}"
