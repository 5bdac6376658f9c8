"""Tensors on the emulated npu device: creation, movement, Python-side behaviour, device checks."""

from __future__ import annotations

import copy
import pickle

import pytest

torch = pytest.importorskip("torch")
nn = torch.nn


def test_factories_create_npu_tensors(npu) -> None:
    from transplant.emulate.tensor import NpuTensor

    cases = {
        "zeros": torch.zeros(3, device="npu"),
        "ones": torch.ones(2, 2, device="npu:0"),
        "randn": torch.randn(2, 3, device=torch.device("npu", 0)),
        "arange": torch.arange(5, device="npu"),
        "linspace": torch.linspace(0, 1, 5, device="npu"),
        "eye": torch.eye(3, device="npu"),
        "full": torch.full((2,), 7.0, device="npu"),
        "randperm": torch.randperm(6, device="npu"),
        "empty": torch.empty(4, device="npu"),
        "tensor": torch.tensor([1, 2], device="npu"),
        "as_tensor": torch.as_tensor([1.0, 2.0], device="npu"),
    }
    for name, t in cases.items():
        assert type(t) is NpuTensor, name
        assert t.device == torch.device("npu", 0), name
        assert t.is_npu, name
    # composite factories resize an empty result: the wrapper must have the final shape
    assert cases["arange"].shape == (5,) and cases["arange"].tolist() == [0, 1, 2, 3, 4]
    assert cases["linspace"].tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert cases["tensor"].tolist() == [1, 2]
    assert sorted(cases["randperm"].tolist()) == list(range(6))


def test_every_factory_schema_has_a_kernel(npu) -> None:
    from transplant.emulate import kernels

    names = kernels.factory_op_names()
    assert {"zeros", "empty.memory_format", "arange.start_step", "randn", "full", "scalar_tensor"} <= set(names)
    for name in names:
        assert torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::{name}", "PrivateUse1"), name


def test_movement_between_cpu_and_npu(npu) -> None:
    cpu = torch.randn(3, 4)
    t = cpu.to("npu")
    assert t.device.type == "npu" and torch.equal(t.cpu(), cpu)
    assert type(t.cpu()) is torch.Tensor and t.cpu().device.type == "cpu"
    assert cpu.npu().device == torch.device("npu:0")
    assert t.to(torch.device("npu", 0)) is t
    assert t.to(torch.float16).dtype == torch.float16 and t.half().device.type == "npu"
    assert torch.zeros_like(t).device.type == "npu"
    assert t.new_zeros(2).device.type == "npu"
    assert t.new_tensor([1, 2]).device.type == "npu"
    m = nn.Linear(4, 2).npu()
    assert all(p.device.type == "npu" and isinstance(p, nn.Parameter) for p in m.parameters())
    m2 = nn.Linear(4, 2).to("npu")
    assert m2.weight.device.type == "npu"
    assert m.cpu().weight.device.type == "cpu"


def test_compute_matches_cpu_and_autograd(npu) -> None:
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    an, bn = a.npu().requires_grad_(), b.npu().requires_grad_()
    ac, bc = a.clone().requires_grad_(), b.clone().requires_grad_()
    (an @ bn).relu().sum().backward()
    (ac @ bc).relu().sum().backward()
    assert an.grad.device.type == "npu"
    assert torch.equal(an.grad.cpu(), ac.grad) and torch.equal(bn.grad.cpu(), bc.grad)


def test_python_side_behaviour(npu) -> None:
    t = torch.arange(6.0).npu()
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    assert t.sum().item() == 15.0
    assert f"{t.sum():.1f}" == "15.0"
    assert repr(t) == "tensor([0., 1., 2., 3., 4., 5.], device='npu:0')"
    assert repr(torch.ones(2, device="npu", dtype=torch.float16)) == (
        "tensor([1., 1.], device='npu:0', dtype=torch.float16)")
    assert "grad_fn=<MulBackward0>" in repr(torch.ones(2, device="npu", requires_grad=True) * 2)
    with pytest.raises(TypeError, match="can't convert npu:0 device type tensor to numpy. Use Tensor.cpu()"):
        t.numpy()


def test_deepcopy_and_pickle(npu) -> None:
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)).npu()
    clone = copy.deepcopy(model)
    assert clone[0].weight.device.type == "npu" and isinstance(clone[0].weight, nn.Parameter)
    assert torch.equal(clone[0].weight.cpu(), model[0].weight.cpu())
    with torch.no_grad():
        clone[0].weight.add_(1)
    assert not torch.equal(clone[0].weight.cpu(), model[0].weight.cpu())  # independent storage
    t = torch.arange(3.0).npu()
    again = pickle.loads(pickle.dumps(t))
    assert again.device.type == "npu" and torch.equal(again.cpu(), t.cpu())


def test_param_data_assignment(npu) -> None:
    p = nn.Parameter(torch.ones(3).npu())
    p.data = torch.zeros(5).npu()
    assert p.shape == (5,) and p.tolist() == [0.0] * 5
    (p * 2).sum().backward()
    assert p.grad.shape == (5,)
    assert torch.equal(p.data.cpu(), torch.zeros(5))


def test_cpu_tensor_data_can_be_moved_to_npu_in_place(npu) -> None:
    # `param.data = param.data.npu()` is legal on real devices; the object becomes an npu tensor
    model = nn.Linear(2, 2)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for param in model.parameters():
        param.data = param.data.to("npu")
    assert all(p.device.type == "npu" and isinstance(p, nn.Parameter) for p in model.parameters())
    model(torch.ones(1, 2, device="npu")).sum().backward()
    before = model.bias.detach().cpu().clone()
    opt.step()
    assert torch.equal(model.bias.detach().cpu(), before - 0.1)
    kept = torch.arange(3.0).npu()
    plain = torch.ones(2)
    plain.data = kept
    plain.add_(1)
    assert plain.tolist() == [1.0, 2.0, 3.0] and kept.tolist() == [1.0, 2.0, 3.0]  # same storage
    # ... and back (torch_npu's shallow-copy check accepts CPU and NPU dense tensors alike)
    back = torch.zeros(3)
    plain.data = back
    plain.add_(5)
    assert plain.device.type == "cpu" and back.tolist() == [5.0] * 3
    with pytest.raises(RuntimeError, match="incompatible tensor type"):
        plain.data = torch.ones(2).to_sparse()


def test_module_cpu_and_back_keeps_parameters_and_grads(npu) -> None:
    # Self-MM's checkpointing: torch.save(model.cpu().state_dict(), path); model.to(device). On
    # torch_npu the Parameters are moved in place, so an optimizer built earlier keeps training them.
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.Linear(8, 1)).npu()
    params = list(model.parameters())
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(16, 4).npu(), torch.randn(16, 1).npu()
    ((model(x) - y) ** 2).mean().backward()
    grad = model[0].weight.grad.cpu().clone()
    state = model.cpu().state_dict()
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(t.device.type == "cpu" for t in state.values())
    assert model[0].weight.grad.device.type == "cpu" and torch.equal(model[0].weight.grad, grad)
    model.to("npu")
    assert all(a is b for a, b in zip(model.parameters(), params))
    assert all(p.device.type == "npu" and isinstance(p, nn.Parameter) for p in model.parameters())
    before = model[0].weight.detach().cpu().clone()
    opt.step()
    assert not torch.equal(model[0].weight.detach().cpu(), before)  # the optimizer still drives them


@pytest.mark.parametrize(
    "op, shape",
    [
        (lambda t: t.t_(), (3, 2)),
        (lambda t: t.transpose_(0, 1), (3, 2)),
        (lambda t: t.unsqueeze_(0), (1, 2, 3)),
        (lambda t: t.squeeze_(), (2, 3)),
        (lambda t: t.resize_(7), (7,)),
        (lambda t: t.as_strided_((3,), (2,)), (3,)),
    ],
)
def test_inplace_metadata_changes_resync_the_wrapper(npu, op, shape) -> None:
    t = torch.randn(2, 3).npu()
    result = op(t)
    assert result is t
    assert t.shape == shape and t._elem.shape == shape and t.stride() == t._elem.stride()


def test_out_argument_resizes_and_returns_the_callers_tensor(npu) -> None:
    out = torch.empty(0, device="npu")
    result = torch.add(torch.ones(3).npu(), 1, out=out)
    assert result is out and out.shape == (3,) and out.tolist() == [2.0, 2.0, 2.0]


def test_views_alias_and_unwrap_shares_storage(npu) -> None:
    from transplant.emulate.tensor import unwrap, wrap

    t = torch.zeros(4).npu()
    view = t[1:3]
    view.fill_(5)
    assert t.tolist() == [0.0, 5.0, 5.0, 0.0]
    unwrap(t).add_(1)  # the hccl backend writes results like this
    assert t.tolist() == [1.0, 6.0, 6.0, 1.0]
    w = wrap(torch.arange(3.0), 0)
    assert w.device == torch.device("npu:0") and w.tolist() == [0.0, 1.0, 2.0]


def test_mixing_cpu_and_npu_raises_the_real_error(npu) -> None:
    n, c = torch.ones(3).npu(), torch.ones(3)
    message = r"Expected all tensors to be on the same device, but found at least two devices, npu:0 and cpu!"
    for fn in (lambda: n + c, lambda: torch.cat([n, c]), lambda: n @ torch.ones(3, 3)):
        with pytest.raises(RuntimeError, match=message):
            fn()
    model = nn.Linear(3, 2).npu()
    with pytest.raises(RuntimeError, match=message):
        model(torch.ones(1, 3))
    with pytest.raises(RuntimeError, match="Expected all tensors to be on the same device"):
        nn.Linear(3, 2)(torch.ones(1, 3).npu())
    with pytest.raises(RuntimeError, match=message):
        nn.functional.cross_entropy(torch.randn(2, 4).npu(), torch.tensor([0, 1]))


def test_allowed_mixing(npu) -> None:
    n = torch.arange(4.0).npu()
    assert (n * torch.tensor(2.0)).tolist() == [0.0, 2.0, 4.0, 6.0]  # CPU 0-dim scalar
    assert n[torch.tensor([0, 2])].tolist() == [0.0, 2.0]  # CPU index tensor
    n[torch.tensor([1])] = 9.0
    assert n.tolist() == [0.0, 9.0, 2.0, 3.0]
    cpu = torch.zeros(4)
    cpu.copy_(n)
    assert cpu.tolist() == [0.0, 9.0, 2.0, 3.0]
    n.copy_(torch.ones(4))
    assert n.tolist() == [1.0] * 4


def test_leftover_cuda_fails_as_on_a_cuda_less_host(npu) -> None:
    t = torch.ones(2).npu()
    for fn in (lambda: torch.zeros(1, device="cuda"), lambda: t.cuda(), lambda: nn.Linear(2, 2).cuda(),
               lambda: t.to("cuda:0"), lambda: torch.cuda.synchronize()):
        with pytest.raises((AssertionError, RuntimeError), match="Torch not compiled with CUDA enabled"):
            fn()
    assert torch.cuda.is_available() is False  # silent unless strict mode (see test_npu_strict_cuda)


def test_multi_device(npu) -> None:
    from transplant.emulate import _state

    if not _state.native:
        pytest.skip("multi-device needs the native helper, unavailable here")
    a = torch.ones(2, device="npu:1", requires_grad=True)
    (a * 3).sum().backward()
    assert a.grad.device == torch.device("npu:1") and a.grad.tolist() == [3.0, 3.0]
    with pytest.raises(RuntimeError, match="found at least two devices, npu:1 and npu:0"):
        a + torch.ones(2, device="npu:0")
    assert nn.Linear(2, 2).npu(1).weight.device == torch.device("npu:1")
    with torch.npu.device(1):
        assert torch.zeros(1, device="npu").device == torch.device("npu:1")
    assert torch.npu.current_device() == 0
    with pytest.raises(RuntimeError, match="Invalid device ordinal npu:99"):
        torch.zeros(1, device="npu:99")


def test_misc_ops_run(npu) -> None:
    t = torch.tensor([3.0, 1.0, 2.0, 1.0], device="npu")
    assert t.sort().values.tolist() == [1.0, 1.0, 2.0, 3.0]
    assert torch.unique(t).tolist() == [1.0, 2.0, 3.0]
    assert t[t > 1].tolist() == [3.0, 2.0]
    assert t.nonzero().shape == (4, 1) and t.nonzero().device.type == "npu"
    assert torch.where(t > 1, t, torch.zeros_like(t)).tolist() == [3.0, 0.0, 2.0, 0.0]
    assert torch.einsum("i,i->", t, t).item() == 15.0
    assert torch.multinomial(torch.ones(4, device="npu"), 2).device.type == "npu"
    grads = [p for p in nn.Linear(2, 2).npu().parameters()]
    for p in grads:
        p.grad = torch.ones_like(p)
    norm = nn.utils.clip_grad_norm_(grads, 1.0, foreach=True)
    assert norm.device.type == "npu" and abs(norm.item() - 6**0.5) < 1e-6


def test_direct_npu_storage_allocation_is_refused_not_a_crash(npu) -> None:
    with pytest.raises(RuntimeError, match="Creating a storage directly on the emulated npu device is not supported"):
        torch.UntypedStorage(8, device="npu")
    assert torch.UntypedStorage(4).device.type == "cpu"
    assert torch.ones(2).npu().untyped_storage().device.type == "cpu"  # documented limitation


def test_data_parallel(npu) -> None:
    from transplant.emulate import _state

    single = nn.DataParallel(nn.Linear(2, 1).npu(), device_ids=[0])
    assert single(torch.ones(3, 2, device="npu")).shape == (3, 1)
    out = single(torch.ones(3, 2))  # DataParallel moves CPU inputs to its device
    assert out.device == torch.device("npu:0")
    if _state.device_count > 1:
        with pytest.raises(RuntimeError, match="DataParallel over .* npu devices is not supported on Ascend"):
            nn.DataParallel(nn.Linear(2, 1).npu())


def test_npu_memory_cannot_be_pinned(npu) -> None:
    t = torch.ones(2, device="npu")
    assert t.is_pinned() is False
    for _ in range(2):  # also once the op is known to the dispatcher cache
        with pytest.raises(RuntimeError, match=r"cannot pin 'torch.npu.FloatTensor' only dense CPU tensors can be pinned"):
            t.pin_memory()


def test_repr_suffix_order_matches_torch(npu) -> None:
    assert repr(torch.empty(0, 3, device="npu", dtype=torch.float16)) == (
        "tensor([], device='npu:0', size=(0, 3), dtype=torch.float16)")
    assert repr(torch.tensor(3.0, device="npu")) == "tensor(3., device='npu:0')"
    assert repr(torch.ones(1, device="npu", dtype=torch.float64, requires_grad=True)) == (
        "tensor([1.], device='npu:0', dtype=torch.float64, requires_grad=True)")


def test_default_device_context(npu) -> None:
    with torch.device("npu"):
        a = torch.zeros(2)
        layer = nn.Linear(2, 2)
    assert a.device.type == "npu" and layer.weight.device.type == "npu"
    assert layer(a).device.type == "npu"
    torch.set_default_device("npu:0")
    try:
        assert torch.randn(2).device == torch.device("npu:0")
    finally:
        torch.set_default_device("cpu")
    assert torch.zeros(1).device.type == "cpu"
