"""apex.amp → torch.amp: the decisions behind the rewrite (guards, names, opt levels, refusals)."""

from __future__ import annotations

import textwrap

from transplant.results import FileResult, Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset


def migrate(source: str, **options: object) -> FileResult:
    return rewrite_source(textwrap.dedent(source).encode(), "train.py", load_ruleset(options=options))


def text(result: FileResult) -> str:
    assert result.status is Status.CHANGED, (result.status, result.reason, result.unsupported)
    return result.new_source.decode()


def test_scaler_enabled_by_the_elif_guard_and_free_name() -> None:
    out = text(migrate('''
        import torch as th
        from apex import amp

        scaler = 3


        def train(model, optimizer, loader, use_amp, level):
            if not use_amp:
                pass
            elif level == "O1":
                model, optimizer = amp.initialize(model, optimizer, opt_level="O1")
            for x, y in loader:
                optimizer.zero_grad()
                loss = model(x, y)
                if use_amp and level == "O1":
                    with amp.scale_loss(loss, optimizer) as scaled_loss:
                        scaled_loss.backward()
                else:
                    loss.backward()
                optimizer.step()
    '''))
    # created before the if/elif, enabled exactly when apex would have been initialised
    assert "    grad_scaler = th.amp.GradScaler('npu', enabled=use_amp and (level == \"O1\"))\n    if not use_amp:" in out
    assert "with th.autocast('npu', dtype=th.float16, enabled=bool(use_amp and (level == \"O1\"))):" in out
    assert "grad_scaler.scale(loss).backward()" in out
    assert "grad_scaler.step(optimizer)\n        grad_scaler.update()" in out
    assert "scaler = 3" in out and "apex" not in out and "amp.initialize" not in out


def test_opt_level_o0_means_no_autocast_and_a_disabled_scaler() -> None:
    out = text(migrate('''
        import torch
        from apex import amp

        def train(model, optimizer, batches):
            model, optimizer = amp.initialize(model, optimizer, opt_level="O0")
            for x in batches:
                loss = model(x).sum()
                with amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                optimizer.step()
    '''))
    assert "scaler = torch.amp.GradScaler('npu', enabled=False)" in out
    assert "autocast" not in out


def test_torch_import_added_when_missing() -> None:
    result = migrate('''
        from apex import amp

        def train(model, optimizer, batches):
            model, optimizer = amp.initialize(model, optimizer)
            for x in batches:
                loss = model(x).sum()
                with amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                optimizer.step()
    ''')
    out = text(result)
    assert out.lstrip("\n").startswith("import torch\nimport torch_npu\n")
    compile(out, "train.py", "exec")
    assert "scaler = torch.amp.GradScaler('npu')" in out


def test_scale_loss_in_another_function_is_reported_not_guessed() -> None:
    source = '''
        import torch
        from apex import amp

        def setup(model, optimizer):
            model, optimizer = amp.initialize(model, optimizer, opt_level="O1")
            return model, optimizer

        def backward(loss, optimizer):
            with amp.scale_loss(loss, optimizer) as scaled_loss:
                scaled_loss.backward()
            optimizer.step()
    '''
    result = migrate(source)
    assert not [c for c in result.changes if c.rule.startswith("TP40")]
    rows = [u for u in result.unsupported if u.rule == "TP405"]
    assert {u.op for u in rows} == {"apex.amp.initialize", "apex.amp.scale_loss"}
    assert all("scaler would not be visible" in u.tip for u in rows)


def test_o3_is_reported() -> None:
    result = migrate('''
        from apex import amp
        model, optimizer = amp.initialize(model, optimizer, opt_level="O3")
    ''')
    assert result.status is Status.UNCHANGED
    assert [u.rule for u in result.unsupported] == ["TP405"]
    assert "O3" in result.unsupported[0].tip


def test_apex_amp_rows_are_deselectable() -> None:
    source = b"from apex import amp\nmodel, optimizer = amp.initialize(model, optimizer)\n"
    result = rewrite_source(source, "train.py", load_ruleset(ignore=["TP4"]))
    assert result.status is Status.UNCHANGED and not result.changes


def test_step_hidden_in_a_one_line_block_blocks_the_rewrite() -> None:
    result = migrate('''
        import torch
        from apex import amp

        def train(model, optimizer, loader, accum):
            model, optimizer = amp.initialize(model, optimizer)
            for i, x in enumerate(loader):
                loss = model(x).sum()
                with amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                if i % accum == 0: optimizer.step()
    ''')
    assert result.status is Status.UNCHANGED
    assert {u.rule for u in result.unsupported} == {"TP405"}
    assert all("not a statement of its own line" in u.tip for u in result.unsupported)


def test_scaler_goes_where_its_guard_can_be_evaluated() -> None:
    """Under ``if __name__ == "__main__":`` the fp16 flag only exists inside the block: create it there."""
    out = text(migrate('''
        import argparse
        import torch

        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            parser.add_argument("--fp16", action="store_true")
            args = parser.parse_args()
            model = torch.nn.Linear(4, 1)
            optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
            if args.fp16:
                from apex import amp
                model, optimizer = amp.initialize(model, optimizer, opt_level="O1")
            for step in range(3):
                loss = model(torch.randn(2, 4)).sum()
                if args.fp16:
                    with amp.scale_loss(loss, optimizer) as scaled_loss:
                        scaled_loss.backward()
                else:
                    loss.backward()
                optimizer.step()
    '''))
    assert ("    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)\n"
            "    scaler = torch.amp.GradScaler('npu', enabled=args.fp16)\n    for step in range(3):") in out
    assert "apex" not in out


def test_guard_that_cannot_be_evaluated_for_every_use_is_reported() -> None:
    result = migrate('''
        import torch
        from apex import amp

        def train(cfg, model, optimizer, loader):
            if cfg.amp:
                level = cfg.level
                if level:
                    model, optimizer = amp.initialize(model, optimizer)
            for x in loader:
                loss = model(x).sum()
                with amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                optimizer.step()
    ''')
    assert result.status is Status.UNCHANGED
    assert {u.rule for u in result.unsupported} == {"TP405"}
    assert all("cannot be evaluated" in u.tip for u in result.unsupported)


def test_a_step_in_a_helper_function_blocks_the_rewrite() -> None:
    result = migrate('''
        import torch
        from apex import amp

        def step(optimizer):
            optimizer.step()

        def train(model, optimizer, loader):
            model, optimizer = amp.initialize(model, optimizer)
            for x in loader:
                loss = model(x).sum()
                with amp.scale_loss(loss, optimizer) as scaled_loss:
                    scaled_loss.backward()
                optimizer.step()
                step(optimizer)
    ''')
    assert result.status is Status.UNCHANGED
    assert all("also stepped outside" in u.tip for u in result.unsupported)
