"""Every public torch.cuda name is classified (renamed to a torch.npu name that really exists, or reported
with a tip), checked against facts read from the real torch_npu 2.13 wheel and against the installed torch.

The facts files are produced by tools/gen_api_facts.py; see docs/coverage.md.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import os
import re
from pathlib import Path

import pytest

from transplant._paths import data_dir, rules_dir

ROOT = Path(__file__).resolve().parents[2]
OUR_RULES = "torch_cuda.json"
# Migrated to torch.amp.* with device type 'npu' by the apex/AMP rule set (rules/amp.json), not by ours.
AMP_OWNED = (
    "torch.cuda.amp.GradScaler",
    "torch.cuda.amp.autocast",
    "torch.cuda.amp.custom_bwd",
    "torch.cuda.amp.custom_fwd",
)
DEFAULT_WHEEL = Path("/tmp/npuwheel/torch_npu-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl")


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_api_facts", ROOT / "tools" / "gen_api_facts.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()


@pytest.fixture(scope="module")
def npu_facts():
    return json.loads((data_dir() / gen.NPU_NAMES_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cuda_file_facts():
    return json.loads((data_dir() / gen.CUDA_NAMES_FILE).read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def cuda_live_facts():
    return gen.cuda_facts()


@pytest.fixture(scope="module")
def bundled():
    """file name -> rule set, for every bundled rule set."""
    sets = {}
    for path in sorted(rules_dir().glob("*.json")):
        if path.name == "schema.json":
            continue
        sets[path.name] = json.loads(path.read_text(encoding="utf-8"))
    return sets


@pytest.fixture(scope="module")
def ours(bundled):
    return bundled[OUR_RULES]


def _classifications(rule_sets):
    """qualified name -> [(file, rule id, kind)] over the rename maps and unsupported names."""
    found = {}
    for file, rule_set in rule_sets.items():
        for rule in rule_set.get("rules", ()):
            if rule.get("kind") == "rename":
                keys = rule.get("map", {})
            elif rule.get("kind") == "unsupported":
                keys = rule.get("names", {})
            else:
                continue
            for key in keys:
                found.setdefault(key, []).append((file, rule["id"], rule["kind"]))
    return found


def _all_cuda_names(cuda_file_facts, cuda_live_facts):
    """The union of the committed list and the live torch: a torch upgrade adding a name must fail here."""
    return sorted(set(cuda_file_facts["qualified_names"]) | set(cuda_live_facts["qualified_names"]))


def _npu_has(qualname, npu_facts):
    """Whether torch.npu.X / torch_npu.X exists in torch_npu 2.13 (public, or a private helper it defines)."""
    if qualname == "torch.npu" or qualname.startswith("torch.npu."):
        qualname = "torch_npu.npu" + qualname[len("torch.npu"):]
    modules = npu_facts["modules"]
    if qualname in modules or qualname in set(npu_facts["qualified_names"]):
        return True
    owner, _, leaf = qualname.rpartition(".")
    return owner in modules and leaf in modules[owner]["private"]


def _torch_has(qualname):
    """Whether a dotted name resolves in the installed torch (longest importable module, then attributes)."""
    parts = qualname.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def _is_npu_name(qualname):
    return qualname in ("torch.npu", "torch_npu") or qualname.startswith(("torch.npu.", "torch_npu."))


# ------------------------------------------------------------------------------------------- facts


def test_committed_cuda_names_match_installed_torch(cuda_file_facts, cuda_live_facts):
    """torch_cuda_names.json is exactly what the generator produces from the installed torch."""
    assert cuda_live_facts["torch_version"].split("+")[0] == "2.13.0"
    added = sorted(set(cuda_live_facts["qualified_names"]) - set(cuda_file_facts["qualified_names"]))
    removed = sorted(set(cuda_file_facts["qualified_names"]) - set(cuda_live_facts["qualified_names"]))
    assert not added and not removed, f"torch.cuda changed: new {added}, gone {removed}; rerun tools/gen_api_facts.py"
    text = (data_dir() / gen.CUDA_NAMES_FILE).read_text(encoding="utf-8")
    assert text == gen.dumps(cuda_live_facts), "torch_cuda_names.json is stale: rerun tools/gen_api_facts.py"


@pytest.mark.parametrize("name", [gen.NPU_NAMES_FILE, gen.TRANSFER_FILE, gen.CUDA_NAMES_FILE])
def test_facts_files_are_canonical(name):
    """Committed facts are in the generator's canonical form (sorted keys, fixed indent, trailing newline)."""
    text = (data_dir() / name).read_text(encoding="utf-8")
    data = json.loads(text)
    assert text == gen.dumps(data)
    assert data["generator"] == "tools/gen_api_facts.py"


def test_npu_facts_describe_the_2_13_wheel(npu_facts):
    wheel = npu_facts["wheel"]
    assert wheel["version"] == "2.13.0"
    assert re.fullmatch(r"[0-9a-f]{64}", wheel["sha256"])
    npu = npu_facts["modules"]["torch_npu.npu"]
    # anchors that the classification relies on, read from torch_npu/npu/__init__.py
    for name in ("is_available", "set_device", "Stream", "NPUGraph", "DoubleTensor", "mstx", "matmul"):
        assert name in npu["names"], name
    assert "allow_hf32" in npu["members"]["matmul"]
    assert "allow_internal_format" in npu["members"]["config"]
    assert {"range_push", "range_pop", "mark"} <= set(npu["members"]["mstx"])
    assert "npu_fusion_attention" in npu_facts["modules"]["torch_npu"]["names"]
    assert "NpuFusedAdamW" in npu_facts["modules"]["torch_npu.optim"]["names"]


def test_transfer_facts_record_what_the_shim_patches():
    facts = json.loads((data_dir() / gen.TRANSFER_FILE).read_text(encoding="utf-8"))
    assert facts["double_tensor"] == "torch.npu.FloatTensor"
    assert facts["jit_script_disabled"] is True
    assert facts["bulk_copies"]["torch.cuda"] == "torch_npu.npu"
    assert "torch.cuda.is_available" in facts["torch_cuda_redirected"]
    assert {"device", "map_location"} <= set(facts["device_keywords"])
    assert "zeros" in facts["device_wrapped"]["torch"]
    assert "torch.distributed.init_process_group" in facts["distributed"]


def _wheel_path():
    configured = os.environ.get("TRANSPLANT_TORCH_NPU_WHEEL")
    return Path(configured) if configured else DEFAULT_WHEEL


def test_wheel_facts_regenerate_identically():
    """The wheel-reading half of the generator reproduces the committed files (needs the wheel on disk)."""
    wheel = _wheel_path()
    if not wheel.is_file():
        pytest.skip(f"torch_npu wheel not found at {wheel} (set TRANSPLANT_TORCH_NPU_WHEEL, or "
                    "`pip download --no-deps torch-npu==2.13.0 -d /tmp/npuwheel`); live torch checks still ran")
    # the script's own check mode, on all three committed files
    assert gen.main(["--wheel", str(wheel), "--check"]) == 0, "stale facts: rerun tools/gen_api_facts.py --wheel"


# ----------------------------------------------------------------------------------- classification


def test_every_torch_cuda_name_is_classified(bundled, cuda_file_facts, cuda_live_facts):
    classified = _classifications(bundled)
    names = [n for n in _all_cuda_names(cuda_file_facts, cuda_live_facts) if n not in AMP_OWNED]
    missing = [n for n in names if n not in classified]
    assert not missing, f"torch.cuda names without a rule: {missing}"


def test_amp_names_are_classified_by_the_amp_rules(bundled, cuda_file_facts, cuda_live_facts):
    """autocast/GradScaler/custom_fwd/custom_bwd belong to rules/amp.json; fail (not skip) until it has them."""
    assert set(AMP_OWNED) <= set(_all_cuda_names(cuda_file_facts, cuda_live_facts))
    classified = _classifications({f: s for f, s in bundled.items() if f != OUR_RULES})
    missing = [n for n in AMP_OWNED if n not in classified]
    assert not missing, f"not classified by any bundled rule set other than {OUR_RULES} (expected rules/amp.json): " \
                        f"{missing}"


def test_no_torch_cuda_name_is_classified_twice(bundled):
    classified = _classifications(bundled)
    twice = {n: where for n, where in classified.items() if n.startswith("torch.cuda") and len(where) > 1}
    assert not twice, f"classified by more than one rule: {twice}"


def test_our_file_leaves_the_amp_names_to_the_amp_rules(ours):
    assert not set(AMP_OWNED) & set(_classifications({OUR_RULES: ours}))


def test_rename_targets_exist(ours, npu_facts):
    """torch.npu.X targets exist in torch_npu 2.13; other torch.X targets exist in the installed torch."""
    bad = []
    for rule in ours["rules"]:
        for source, target in rule.get("map", {}).items():
            exists = _npu_has(target, npu_facts) if _is_npu_name(target) else _torch_has(target)
            if not exists:
                bad.append(f"{rule['id']}: {source} -> {target}")
    assert not bad, f"rename targets that do not exist: {bad}"


def test_other_rule_sets_rename_to_existing_npu_names(bundled, npu_facts):
    """The same check for torch.npu / torch_npu targets in the other bundled rule sets."""
    bad = []
    for file, rule_set in bundled.items():
        for rule in rule_set.get("rules", ()):
            if file == OUR_RULES or rule.get("kind") != "rename":
                continue
            for source, target in rule["map"].items():
                if _is_npu_name(target) and not _npu_has(target, npu_facts):
                    bad.append(f"{file} {rule['id']}: {source} -> {target}")
    assert not bad, f"rename targets missing from torch_npu 2.13: {bad}"


def test_module_renames_cover_every_member(ours, npu_facts):
    """A module key renames its members too: each public member of the CUDA module must either have its own
    entry or exist under the NPU module."""
    explicit = _classifications({OUR_RULES: ours})
    bad = []
    for rule in ours["rules"]:
        for source, target in rule.get("map", {}).items():
            try:
                module = importlib.import_module(source)
            except ImportError:
                continue  # not a module
            members = gen.cuda_public_names(module)["public"]
            for member in members:
                if f"{source}.{member}" in explicit:
                    continue
                if not _npu_has(f"{target}.{member}", npu_facts):
                    bad.append(f"{source}.{member} -> {target}.{member}")
    assert not bad, f"module rename would produce missing names: {bad}"


def test_rule_keys_exist_in_torch(ours):
    """Every classified name (rename source or unsupported name) is real in the installed torch: no typos."""
    keys = _classifications({OUR_RULES: ours})
    missing = [k for k in keys if not _torch_has(k)]
    assert not missing, f"not found in torch: {missing}"


def test_unsupported_entries_have_tips(ours):
    empty = []
    for rule in ours["rules"]:
        if rule["kind"] != "unsupported":
            continue
        assert rule["names"], rule["id"]
        for name, tip in rule["names"].items():
            effective = tip.strip() or rule.get("tip", "").strip()
            if len(effective) < 20:
                empty.append(f"{rule['id']}: {name}")
    assert not empty, f"unsupported entries without an actionable tip: {empty}"


def test_rule_file_is_valid(ours):
    import jsonschema
    schema = json.loads((rules_dir() / "schema.json").read_text(encoding="utf-8"))
    jsonschema.Draft202012Validator(schema).validate(ours)
    ids = [rule["id"] for rule in ours["rules"]]
    assert len(ids) == len(set(ids))
    for rule in ours["rules"]:
        number = int(rule["id"][2:])
        assert 101 <= number <= 119 or 501 <= number <= 539, rule["id"]
        assert (rule["kind"] == "rename") == (number < 500), rule["id"]
        assert "\n" not in rule["message"]


def test_rule_ids_are_unique_across_bundled_sets(bundled):
    seen = {}
    for file, rule_set in bundled.items():
        for rule in rule_set.get("rules", ()):
            seen.setdefault(rule["id"], []).append(file)
    assert not {i: f for i, f in seen.items() if len(f) > 1}
