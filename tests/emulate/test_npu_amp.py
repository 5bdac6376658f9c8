"""Autocast and GradScaler on the emulated npu."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def small_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.GELU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
                         nn.LayerNorm(3))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_autocast_follows_the_cuda_policy(npu, dtype) -> None:
    net = small_net()
    net_npu = small_net().npu()
    x = torch.randn(2, 3, 8, 8)
    target = torch.tensor([0, 2])
    with torch.autocast("npu", dtype=dtype):
        conv = net_npu[0](x.npu())
        logits = net_npu[:5](x.npu())
        normed = net_npu(x.npu())
        loss = nn.functional.cross_entropy(normed, target.npu())
        soft = torch.softmax(logits, dim=1)
        promoted = torch.addcmul(torch.ones(3, device="npu"), torch.ones(3, device="npu", dtype=dtype),
                                 torch.ones(3, device="npu"))
    assert conv.dtype == dtype and logits.dtype == dtype  # lower-precision list
    assert normed.dtype == torch.float32 and loss.dtype == torch.float32  # fp32 list (layer_norm, losses)
    assert soft.dtype == torch.float32  # fp32 with dtype argument
    assert promoted.dtype == torch.float32  # promote list
    reference = nn.functional.cross_entropy(net(x), target)
    assert abs(loss.item() - reference.item()) < 5e-2
    loss.backward()
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net_npu.parameters())


def test_npu_amp_autocast_alias_and_disabled_region(npu) -> None:
    a, b = torch.randn(2, 2, device="npu"), torch.randn(2, 2, device="npu")
    with torch.npu.amp.autocast():
        assert torch.mm(a, b).dtype == torch.float16
        with torch.npu.amp.autocast(enabled=False):
            assert torch.mm(a, b).dtype == torch.float32
    assert torch.mm(a, b).dtype == torch.float32


def test_binary_cross_entropy_is_refused_under_autocast(npu) -> None:
    with torch.autocast("npu", dtype=torch.float16):
        with pytest.raises(RuntimeError, match="unsafe to autocast"):
            nn.functional.binary_cross_entropy(torch.rand(3, device="npu"), torch.rand(3, device="npu"))


@pytest.mark.parametrize("make_scaler", [lambda: torch.amp.GradScaler("npu", init_scale=1024.0),
                                         lambda: torch.npu.amp.GradScaler(init_scale=1024.0)])
def test_grad_scaler_skips_steps_with_inf(npu, make_scaler) -> None:
    net = small_net().npu()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    scaler = make_scaler()
    assert scaler.is_enabled()
    x = torch.randn(2, 3, 8, 8).npu()
    with torch.autocast("npu", dtype=torch.float16):
        loss = net(x).float().sum()
    scaler.scale(loss).backward()
    net[4].weight.grad[0, 0] = float("inf")
    before = [p.detach().cpu().clone() for p in net.parameters()]
    scaler.step(opt)
    scaler.update()
    assert scaler.get_scale() == 512.0
    assert all(torch.equal(a, p.detach().cpu()) for a, p in zip(before, net.parameters()))
    # a finite step goes through, with unscale_ + clipping in between
    opt.zero_grad()
    with torch.autocast("npu", dtype=torch.float16):
        loss = net(x).float().sum()
    scaler.scale(loss).backward()
    scaler.unscale_(opt)
    nn.utils.clip_grad_norm_(net.parameters(), 1.0)
    scaler.step(opt)
    scaler.update()
    assert any(not torch.equal(a, p.detach().cpu()) for a, p in zip(before, net.parameters()))
