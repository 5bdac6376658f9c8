"""Training on the emulated npu gives the same numbers as training on CPU.

Four models (MLP, conv+BN+pool CNN, embedding+LSTM, transformer encoder) train 5 steps with SGD
(loop and foreach), Adam (loop, foreach, fused) and AdamW from the same seed on CPU and on npu.
Losses and final parameters are bit-identical: every op runs the CPU kernel, and the ops where
core would pick a device-specific decomposition (the RNN family, scaled-dot-product attention)
run the CPU implementation as one autograd node (kernels._FAST_OPS). Only the single-step cells
(nn.LSTMCell / nn.GRUCell), which go through the CUDA-style fused-cell kernels, differ slightly;
their documented tolerance is 1e-5.
"""

from __future__ import annotations

import copy
from typing import Callable, List, Tuple

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.LayerNorm(32), nn.Linear(32, 4))


def cnn() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(8, 8, 3), nn.BatchNorm2d(8), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4),
    )


class LSTMNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        self.rnn = nn.LSTM(16, 32, num_layers=2, batch_first=True)
        self.fc = nn.Linear(32, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(self.emb(x))
        return self.fc(out[:, -1])


class TransformerNet(nn.Module):
    def __init__(self, dropout: float = 0.0) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 16)
        layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=dropout, batch_first=True)
        self.enc = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False)
        self.fc = nn.Linear(16, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.enc(self.emb(x)).mean(1))


def batch(kind: str) -> Tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    if kind == "vec":
        return torch.randn(8, 16, generator=g), torch.randint(0, 4, (8,), generator=g)
    if kind == "img":
        return torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 4, (4,), generator=g)
    return torch.randint(0, 50, (4, 10), generator=g), torch.randint(0, 4, (4,), generator=g)


def train(make: Callable[[], nn.Module], kind: str, optimizer: str, options: dict, device: str
          ) -> Tuple[List[float], List[torch.Tensor]]:
    torch.manual_seed(0)
    model = make().to(device)
    opt = getattr(torch.optim, optimizer)(model.parameters(), lr=0.01, **options)
    x, y = (t.to(device) for t in batch(kind))
    losses = []
    for _ in range(5):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    params = [p.detach().cpu() for p in model.parameters()]
    assert all(p.device.type == device for p in model.parameters())
    return losses, params


MODELS = [("mlp", mlp, "vec"), ("cnn", cnn, "img"), ("lstm", LSTMNet, "seq"), ("transformer", TransformerNet, "seq")]
OPTIMIZERS = [
    ("SGD", {"momentum": 0.9, "foreach": False}),
    ("SGD", {"momentum": 0.9, "foreach": True}),
    ("Adam", {"foreach": False}),
    ("Adam", {"foreach": True}),
    ("Adam", {"fused": True}),
    ("AdamW", {}),
]


@pytest.mark.parametrize("name, make, kind", MODELS, ids=[m[0] for m in MODELS])
@pytest.mark.parametrize("optimizer, options", OPTIMIZERS, ids=[f"{o}-{'-'.join(map(str, k.items()))}" for o, k in OPTIMIZERS])
def test_training_is_bit_identical_to_cpu(npu, name, make, kind, optimizer, options) -> None:
    cpu_losses, cpu_params = train(make, kind, optimizer, options, "cpu")
    npu_losses, npu_params = train(make, kind, optimizer, options, "npu")
    assert npu_losses == cpu_losses
    for a, b in zip(cpu_params, npu_params):
        assert torch.equal(a, b)
    assert cpu_losses[-1] < cpu_losses[0]  # it really trained


def test_dropout_model_is_bit_identical_in_shared_rng_mode(npu, rng_mode) -> None:
    rng_mode("shared")
    make = lambda: TransformerNet(dropout=0.1)  # noqa: E731
    cpu = train(make, "seq", "AdamW", {}, "cpu")
    emulated = train(make, "seq", "AdamW", {}, "npu")
    assert emulated[0] == cpu[0]
    assert all(torch.equal(a, b) for a, b in zip(cpu[1], emulated[1]))


def test_dropout_model_differs_in_separate_rng_mode(npu, rng_mode) -> None:
    # As on hardware: the device has its own random stream, so dropout masks differ from CPU's.
    rng_mode("separate")
    make = lambda: TransformerNet(dropout=0.1)  # noqa: E731
    cpu = train(make, "seq", "AdamW", {}, "cpu")
    emulated = train(make, "seq", "AdamW", {}, "npu")
    assert emulated[0] != cpu[0]
    again = train(make, "seq", "AdamW", {}, "npu")
    assert again[0] == emulated[0]  # but seeded runs are reproducible


@pytest.mark.parametrize("cell_type", [nn.LSTMCell, nn.GRUCell])
def test_fused_rnn_cells_within_documented_tolerance(npu, cell_type) -> None:
    torch.manual_seed(0)
    cell = cell_type(16, 8)
    cell_npu = copy.deepcopy(cell).npu()
    x = torch.randn(5, 16)
    out = cell(x)
    out_npu = cell_npu(x.npu())
    h, h_npu = (out[0], out_npu[0]) if isinstance(out, tuple) else (out, out_npu)
    (h.sum() + (out[1].sum() if isinstance(out, tuple) else 0)).backward()
    (h_npu.sum() + (out_npu[1].sum() if isinstance(out_npu, tuple) else 0)).backward()
    assert (h - h_npu.cpu()).abs().max().item() <= 1e-5
    for p, q in zip(cell.parameters(), cell_npu.parameters()):
        assert q.grad.device.type == "npu"
        assert (p.grad - q.grad.cpu()).abs().max().item() <= 1e-5


@pytest.mark.parametrize("rnn", [lambda: nn.GRU(16, 8, batch_first=True), lambda: nn.RNN(16, 8, batch_first=True),
                                 lambda: nn.LSTM(16, 8, bidirectional=True, num_layers=2)])
def test_rnn_variants_match_cpu(npu, rnn) -> None:
    torch.manual_seed(0)
    module = rnn()
    module_npu = copy.deepcopy(module).npu()
    x = torch.randn(4, 5, 16)
    out, _ = module(x)
    out_npu, _ = module_npu(x.npu())
    out.sum().backward()
    out_npu.sum().backward()
    assert torch.equal(out, out_npu.cpu())
    for p, q in zip(module.parameters(), module_npu.parameters()):
        assert torch.equal(p.grad, q.grad.cpu())


def test_packed_sequence_lstm(npu) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 3)
    lstm_npu = copy.deepcopy(lstm).npu()
    x = torch.randn(5, 2, 4)
    lengths = torch.tensor([5, 3])
    packed = nn.utils.rnn.pack_padded_sequence(x, lengths)
    packed_npu = nn.utils.rnn.pack_padded_sequence(x.npu(), lengths)
    assert packed_npu.is_npu
    out, _ = lstm(packed)
    out_npu, _ = lstm_npu(packed_npu)
    assert torch.equal(out.data, out_npu.data.cpu())
    padded, lens = nn.utils.rnn.pad_packed_sequence(out)
    padded_npu, lens_npu = nn.utils.rnn.pad_packed_sequence(out_npu)
    assert padded_npu.device.type == "npu" and lens_npu.device.type == "cpu"  # as on hardware
    padded.sum().backward()
    padded_npu.sum().backward()
    assert torch.equal(padded, padded_npu.cpu()) and torch.equal(lens, lens_npu)
    assert all(torch.equal(p.grad, q.grad.cpu()) for p, q in zip(lstm.parameters(), lstm_npu.parameters()))


_EVERY = [
    ("Adadelta", {}), ("Adafactor", {}), ("Adagrad", {}), ("Adam", {"amsgrad": True}), ("Adamax", {}),
    ("ASGD", {}), ("NAdam", {}), ("RAdam", {}), ("RMSprop", {"momentum": 0.5}), ("Rprop", {}),
    ("SGD", {"momentum": 0.9, "nesterov": True}),
]
# every optimizer in its for-loop and foreach forms, plus the fused implementations
ALL_OPTIMIZERS = [(o, {**k, "foreach": f}) for o, k in _EVERY for f in (False, True)] + [
    ("AdamW", {"fused": True}), ("SGD", {"momentum": 0.9, "fused": True}), ("Adagrad", {"fused": True}),
]


@pytest.mark.parametrize("optimizer, options", ALL_OPTIMIZERS,
                         ids=[f"{o}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for o, kw in ALL_OPTIMIZERS])
def test_every_optimizer_matches_cpu(npu, optimizer, options) -> None:
    cpu_losses, cpu_params = train(mlp, "vec", optimizer, options, "cpu")
    npu_losses, npu_params = train(mlp, "vec", optimizer, options, "npu")
    assert npu_losses == cpu_losses
    assert all(torch.equal(a, b) for a, b in zip(cpu_params, npu_params))


def test_lbfgs_matches_cpu(npu) -> None:
    results = []
    for device in ("cpu", "npu"):
        torch.manual_seed(0)
        model = mlp().to(device)
        opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=4)
        x, y = (t.to(device) for t in batch("vec"))

        def closure():
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), y)
            loss.backward()
            return loss

        losses = [opt.step(closure).item() for _ in range(3)]
        results.append((losses, [p.detach().cpu() for p in model.parameters()]))
    assert results[0][0] == results[1][0]
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))


@pytest.mark.parametrize("reentrant", [False, True])
def test_lstm_with_dropout_under_checkpoint(npu, reentrant) -> None:
    from torch.utils.checkpoint import checkpoint

    torch.manual_seed(0)
    lstm = nn.LSTM(8, 8, num_layers=2, dropout=0.5).npu()
    x = torch.randn(5, 2, 8).npu().requires_grad_()
    grads = []
    for use_checkpoint in (False, True):
        lstm.zero_grad()
        x.grad = None
        torch.manual_seed(3)
        out = checkpoint(lambda t: lstm(t)[0], x, use_reentrant=reentrant) if use_checkpoint else lstm(x)[0]
        out.sum().backward()
        grads.append([x.grad.cpu()] + [p.grad.cpu() for p in lstm.parameters()])
    assert all(torch.equal(a, b) for a, b in zip(*grads))


def test_fast_path_retain_graph_and_double_backward(npu) -> None:
    torch.manual_seed(0)
    lstm = nn.LSTM(4, 4).npu()
    out = lstm(torch.randn(3, 1, 4).npu())[0].sum()
    out.backward(retain_graph=True)
    first = [p.grad.cpu().clone() for p in lstm.parameters()]
    out.backward()
    assert all(torch.equal(p.grad.cpu(), 2 * g) for p, g in zip(lstm.parameters(), first))
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        out.backward()
    x = torch.randn(3, 1, 4).npu().requires_grad_()
    with pytest.raises(RuntimeError, match="double backward .* not supported by the emulated NPU"):
        torch.autograd.grad(lstm(x)[0].sum(), x, create_graph=True)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_ctc_loss_with_cpu_lengths_matches_cpu(npu, reduction) -> None:
    # as on CUDA, the length tensors may stay on CPU
    torch.manual_seed(0)
    log_probs = torch.randn(10, 2, 5).log_softmax(2)
    targets = torch.randint(1, 5, (2, 4))
    lengths = (torch.full((2,), 10, dtype=torch.long), torch.full((2,), 4, dtype=torch.long))
    cpu_in = log_probs.clone().requires_grad_()
    npu_in = log_probs.npu().requires_grad_()
    cpu_loss = nn.functional.ctc_loss(cpu_in, targets, *lengths, reduction=reduction)
    npu_loss = nn.functional.ctc_loss(npu_in, targets.npu(), *lengths, reduction=reduction)
    cpu_loss.sum().backward()
    npu_loss.sum().backward()
    assert npu_loss.device.type == "npu"
    assert torch.equal(cpu_loss, npu_loss.cpu()) and torch.equal(cpu_in.grad, npu_in.grad.cpu())
