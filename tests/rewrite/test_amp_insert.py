"""AMP insertion (--amp): decisions not covered by the loop-shape fixtures."""

from __future__ import annotations

import textwrap

from transplant.results import FileResult, Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

LOOP = '''
    import torch
    from torch import nn


    def train(model, loader, lr):
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
        scaler = 0.5
        for inputs, targets in loader:
            optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(inputs) * scaler, targets)
            loss.backward()
            optimizer.step()
'''


def migrate(source: str, amp: object) -> FileResult:
    return rewrite_source(textwrap.dedent(source).encode(), "train.py", load_ruleset(options={"amp": amp}))


def test_off_by_default() -> None:
    result = migrate(LOOP, None)
    assert result.status is Status.UNCHANGED and not result.changes and not result.unsupported


def test_backward_inside_a_larger_statement_is_reported() -> None:
    result = migrate('''
        def train(model, optimizer, loader):
            for x in loader:
                loss = model(x).sum(); loss.backward()
                optimizer.step()
    ''', "fp16")
    assert result.status is Status.UNCHANGED
    assert [u.rule for u in result.unsupported] == ["TP431"]
    assert "not a statement of its own" in result.unsupported[0].tip


def test_optimizer_named_parameter_in_a_one_shot_function_is_refused() -> None:
    result = migrate('''
        def train_step(model, optimizer, x):
            optimizer.zero_grad()
            loss = model(x).sum()
            loss.backward()
            optimizer.step()
    ''', "fp16")
    assert result.status is Status.UNCHANGED
    assert "lose its loss scale" in result.unsupported[0].tip


def test_bf16_without_torch_import_adds_it_and_no_scaler() -> None:
    result = migrate('''
        def train(model, optimizer, loader):
            for x in loader:
                optimizer.zero_grad()
                loss = model(x).sum()
                loss.backward()
                optimizer.step()
    ''', "bf16")
    out = result.new_source.decode()
    assert "import torch\n" in out
    assert "with torch.autocast('npu', dtype=torch.bfloat16):\n            loss = model(x).sum()" in out
    assert "loss.backward()\n        optimizer.step()" in out  # no scaler for bf16
    assert {c.rule for c in result.changes} >= {"TP430"}


def test_scaler_name_does_not_clash_with_user_names() -> None:
    result = migrate(LOOP, "fp16")
    out = result.new_source.decode()
    assert "scaler = 0.5" in out
    # created right after the optimizer, under a name the file does not use
    assert "lr=lr)\n    grad_scaler = torch.amp.GradScaler('npu')\n    scaler = 0.5" in out
    assert "grad_scaler.scale(loss).backward()" in out and "grad_scaler.step(optimizer)" in out
    compile(out, "train.py", "exec")


def test_optimizer_step_in_a_one_line_block_is_refused() -> None:
    result = migrate('''
        def train(model, optimizer, loader, accum):
            for i, x in enumerate(loader):
                loss = model(x).sum()
                loss.backward()
                if i % accum == 0: optimizer.step()
    ''', "fp16")
    assert result.status is Status.UNCHANGED
    assert "not a statement of its own line" in result.unsupported[0].tip


def test_optimizer_stepped_in_a_helper_without_backward_is_refused() -> None:
    result = migrate('''
        def apply_update(optimizer):
            optimizer.step()

        def train(model, optimizer, loader):
            for x in loader:
                optimizer.zero_grad()
                loss = model(x).sum()
                loss.backward()
                optimizer.step()
                apply_update(optimizer)
    ''', "fp16")
    assert result.status is Status.UNCHANGED
    assert "also stepped in a function without backward" in result.unsupported[0].tip
