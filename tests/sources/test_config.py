"""Config files: review rows for device/backend keys; values rewritten only with --rewrite-configs,
and then only those characters (every other byte, key, value and comment stays)."""

from __future__ import annotations

from pathlib import Path

import pytest

from transplant.results import Status
from transplant.rules import load_ruleset
from transplant.sources import front_end_for, migrate_file

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "sources" / "config"

EXPECTED = {
    "train.yaml": [("TP680", 4, "device: cuda", "device: npu"), ("TP680", 6, "accelerator: gpu", "accelerator: npu"),
                   ("TP681", 10, "dist_backend: nccl", "dist_backend: hccl")],
    "config.json": [("TP680", 2, "device: cuda:0", "device: npu:0"), ("TP681", 4, "backend: nccl", "backend: hccl")],
    "setup.cfg": [("TP680", 5, "device: cuda", "device: npu"), ("TP681", 6, "dist_backend: nccl", "dist_backend: hccl")],
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_review_rows_by_default(name: str) -> None:
    source = (FIXTURES / name).read_bytes()
    assert front_end_for(name).kind == "config"
    result = migrate_file(source, name, load_ruleset())
    assert result.status is Status.UNCHANGED and result.new_source is None
    assert [(u.rule, u.line, u.op) for u in result.unsupported] == [(r, line, b) for r, line, b, _ in EXPECTED[name]]
    assert all("--rewrite-configs" in u.tip for u in result.unsupported)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_rewrite_only_the_values(name: str) -> None:
    source = (FIXTURES / name).read_bytes()
    ruleset = load_ruleset(options={"rewrite_configs": True})
    result = migrate_file(source, name, ruleset)
    assert result.status is Status.CHANGED
    assert [(c.rule, c.line, c.before, c.after) for c in result.changes] == EXPECTED[name]
    old, new = source.decode().splitlines(), result.new_source.decode().splitlines()
    assert len(old) == len(new)
    changed = [i + 1 for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert changed == [line for _, line, _, _ in EXPECTED[name]]
    for _, line, before, after in EXPECTED[name]:  # only the value's characters differ
        value, new_value = before.split(": ", 1)[1], after.split(": ", 1)[1]
        head, tail = old[line - 1].rsplit(value, 1)
        assert new[line - 1] == head + new_value + tail
    again = migrate_file(result.new_source, name, ruleset)
    assert again.status is Status.UNCHANGED and not again.unsupported


def test_cuda_in_other_keys_comments_and_messages_stays() -> None:
    result = migrate_file((FIXTURES / "train.yaml").read_bytes(), "train.yaml",
                          load_ruleset(options={"rewrite_configs": True}))
    text = result.new_source.decode()
    assert "# runs on cuda by default" in text and 'message: "device: cuda"' in text
    assert "eval_device: 'cuda:1'" in text and "backend: tensorboard" in text


def test_environment_yml_is_not_a_config() -> None:
    assert front_end_for("environment.yml").kind == "requirements"
    assert front_end_for(".github/workflows/ci.yml") is None
