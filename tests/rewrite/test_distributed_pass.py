"""The ``to_ddp`` pass (``--distributed``) on small scripts: what it converts, what it refuses and why,
and that it stays inert without the option or outside the named entry."""

from __future__ import annotations

import ast

import pytest

from transplant.results import Status
from transplant.rewrite import rewrite_source
from transplant.rules import load_ruleset

TRAINER = b'''import argparse

import torch
from torch.utils.data import DataLoader


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = torch.utils.data.TensorDataset(torch.randn(8, 2), torch.randn(8, 2))
    train_loader = DataLoader(data, batch_size=4, shuffle=True)
    val_loader = DataLoader(data, batch_size=4)
    model = torch.nn.Linear(2, 2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for epoch in range(args.epochs):
        for x, y in train_loader:
            loss = (model(x.to(device)) - y.to(device)).pow(2).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    torch.save(model.state_dict(), "model.pt")


if __name__ == "__main__":
    main()
'''


def _ruleset(**options):
    return load_ruleset(options={"distributed": True, **options})


def _rules(result, prefix="TP2"):
    return [c.rule for c in result.changes if c.rule.startswith(prefix)]


def test_converts_a_plain_trainer() -> None:
    result = rewrite_source(TRAINER, "train.py", _ruleset())
    assert result.status is Status.CHANGED
    text = result.new_source.decode()
    ast.parse(text)
    assert "torch.distributed.init_process_group('hccl')" in text
    assert ("shuffle=not torch.distributed.is_initialized(), sampler=torch.utils.data.distributed."
            "DistributedSampler(data, shuffle=True) if torch.distributed.is_initialized() else None)") in text
    assert "val_loader = DataLoader(data, batch_size=4)\n" in text  # evaluation stays whole
    assert "model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[torch.npu.current_device()])" \
        in text
    assert "train_loader.sampler.set_epoch(epoch)" in text
    assert sorted(set(_rules(result))) == ["TP200", "TP201", "TP204", "TP205", "TP206", "TP207"]
    # the process group starts after parse_args (so --help needs no launcher), inside main()
    lines = text.splitlines()
    assert lines.index("    args = parser.parse_args()") + 1 == \
        lines.index("    if int(os.environ.get('WORLD_SIZE', '1')) > 1:")


def test_inert_without_the_option_and_outside_the_entry() -> None:
    plain = rewrite_source(TRAINER, "train.py", load_ruleset())
    assert not _rules(plain)
    other = rewrite_source(TRAINER, "train.py", _ruleset(entry="tools/other.py"))
    assert other.new_source == plain.new_source and not _rules(other)


@pytest.mark.parametrize("edit, reason", [
    ((b"torch.optim.SGD(model.parameters(), lr=0.1)", b"torch.optim.SGD([model.weight], lr=0.1)"),
     "no optimizer built from `<model>.parameters()`"),
    ((b"batch_size=4, shuffle=True)", b"batch_size=4, sampler=torch.utils.data.RandomSampler(data))"),
     "has its own sampler"),
    ((b"for epoch in range(args.epochs):", b"for step in range(args.epochs):"), "no epoch loop"),
])
def test_refusals_leave_the_file_as_plain_migration_does(edit, reason: str) -> None:
    source = TRAINER.replace(*edit)
    result = rewrite_source(source, "train.py", _ruleset())
    plain = rewrite_source(source, "train.py", load_ruleset())
    assert result.new_source == plain.new_source
    assert not _rules(result)
    rows = [u for u in result.unsupported if u.rule == "TP298"]
    assert len(rows) == 1 and reason in rows[0].tip, rows


def test_model_option_names_an_attribute() -> None:
    source = b'''import argparse

import torch


class Trainer:
    def __init__(self, data):
        self.model = torch.nn.Linear(2, 2).cuda()
        self.opt = torch.optim.SGD(self.parameters(), lr=0.1)
        self.train_loader = torch.utils.data.DataLoader(data, batch_size=4, shuffle=True)

    def parameters(self):
        return self.model.parameters()

    def fit(self, epochs):
        for epoch in range(epochs):
            for x, y in self.train_loader:
                self.model(x).sum().backward()
                self.opt.step()


def main():
    args = argparse.ArgumentParser().parse_args()
    Trainer(args).fit(2)
'''
    refused = rewrite_source(source, "t.py", _ruleset())
    assert [u.rule for u in refused.unsupported if u.rule.startswith("TP2")] == ["TP298"]
    result = rewrite_source(source, "t.py", _ruleset(model="self.model"))
    text = result.new_source.decode()
    ast.parse(text)
    assert ("        self.model = torch.nn.Linear(2, 2).npu()\n        if torch.distributed.is_initialized():\n"
            "            self.model = torch.nn.parallel.DistributedDataParallel(self.model, ") in text
    assert "self.train_loader.sampler.set_epoch(epoch)" in text


def test_kwargs_loader_gets_no_duplicate_keywords() -> None:
    source = TRAINER.replace(b"train_loader = DataLoader(data, batch_size=4, shuffle=True)",
                             b"kwargs = {'batch_size': 4, 'shuffle': True}\n"
                             b"    train_loader = DataLoader(data, **kwargs)")
    text = rewrite_source(source, "train.py", _ruleset()).new_source.decode()
    assert ("    if torch.distributed.is_initialized():\n        kwargs = {**kwargs, 'shuffle': False, 'sampler': "
            "torch.utils.data.distributed.DistributedSampler(data, shuffle=kwargs.get('shuffle', False))}\n"
            "    train_loader = DataLoader(data, **kwargs)\n") in text
