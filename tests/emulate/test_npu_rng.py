"""RNG on the emulated npu: seeding, state, fork_rng, checkpoint RNG, the two RNG modes."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def test_torch_manual_seed_seeds_the_device(npu) -> None:
    torch.manual_seed(7)
    a = torch.randn(4, device="npu")
    torch.manual_seed(7)
    b = torch.randn(4, device="npu")
    assert torch.equal(a.cpu(), b.cpu())
    npu.manual_seed(3)
    c = torch.rand(3, device="npu")
    npu.manual_seed_all(3)
    d = torch.rand(3, device="npu")
    assert torch.equal(c.cpu(), d.cpu())
    assert npu.initial_seed() == 3


def test_rng_state_roundtrip_and_fork_rng(npu) -> None:
    npu.manual_seed(5)
    state = npu.get_rng_state()
    assert state.device.type == "cpu" and state.dtype == torch.uint8
    first = torch.rand(3, device="npu")
    npu.set_rng_state(state)
    assert torch.equal(torch.rand(3, device="npu").cpu(), first.cpu())
    npu.set_rng_state_all(npu.get_rng_state_all())
    npu.set_rng_state(state)
    with torch.random.fork_rng(devices=[0], device_type="npu"):
        torch.rand(10, device="npu")
    assert torch.equal(torch.rand(3, device="npu").cpu(), first.cpu())


def test_separate_mode_leaves_the_cpu_stream_alone(npu, rng_mode) -> None:
    rng_mode("separate")
    torch.manual_seed(1)
    expected = torch.rand(3)
    torch.manual_seed(1)
    torch.rand(5, device="npu")
    nn.functional.dropout(torch.ones(8, device="npu"), 0.5)
    assert torch.equal(torch.rand(3), expected)


def test_shared_mode_draws_from_the_cpu_generator(npu, rng_mode) -> None:
    rng_mode("shared")
    torch.manual_seed(1)
    cpu_mask = nn.functional.dropout(torch.ones(16), 0.5)
    cpu_noise = torch.randn(4)
    torch.manual_seed(1)
    npu_mask = nn.functional.dropout(torch.ones(16, device="npu"), 0.5)
    npu_noise = torch.randn(4, device="npu")
    assert torch.equal(cpu_mask, npu_mask.cpu()) and torch.equal(cpu_noise, npu_noise.cpu())


def test_rng_mode_validation(npu) -> None:
    import transplant.emulate as emulate

    with pytest.raises(ValueError, match="rng mode"):
        emulate.set_rng_mode("global")


@pytest.mark.parametrize("mode", ["separate", "shared"])
def test_checkpointed_dropout_gets_correct_gradients(npu, rng_mode, mode) -> None:
    # torch.utils.checkpoint restores the npu RNG before recomputing (needs torch.npu._initialized);
    # otherwise the recomputed dropout mask differs and the gradients are silently wrong.
    rng_mode(mode)
    from torch.utils.checkpoint import checkpoint

    block = nn.Sequential(nn.Linear(8, 8), nn.Dropout(0.5), nn.Linear(8, 8)).npu()
    x = torch.randn(4, 8).npu()
    results = []
    for use_checkpoint in (False, True):
        block.zero_grad()
        torch.manual_seed(11)
        out = checkpoint(block, x, use_reentrant=False) if use_checkpoint else block(x)
        out.sum().backward()
        results.append((out.detach().cpu(), [p.grad.cpu() for p in block.parameters()]))
    (plain_out, plain_grads), (ckpt_out, ckpt_grads) = results
    assert torch.equal(plain_out, ckpt_out)
    assert all(torch.equal(a, b) for a, b in zip(plain_grads, ckpt_grads))


def test_generator_argument_is_respected(npu) -> None:
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a = torch.randn(3, generator=g1, device="npu")
    b = torch.randn(3, generator=g2)
    assert torch.equal(a.cpu(), b)
