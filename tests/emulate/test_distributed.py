"""The emulated hccl backend with real processes on 127.0.0.1: torchrun and mp.spawn.

Each scenario is one ``transplant run`` launch (the same path users take): collectives, object
collectives, the CPU-tensor refusal, and DDP trained on npu/hccl compared bit for bit with the same
training on CPU/gloo (a gloo group in the same processes, same seeds and data). Under torchrun a
rank then fails on purpose, to check that its exit code comes back through `transplant run`.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from emulate_helpers import run_runner

pytestmark = pytest.mark.slow



def run_transplant(args: list[str], *, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    return run_runner(args, cwd=cwd, timeout=timeout)


# Shared by both launchers: a small DDP training run on a device/group, returning CPU copies of the
# final parameters.
TRAIN = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP


def train(rank, device, group, optimizer="sgd", **ddp_kwargs):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4)).to(device)
    ddp = DDP(model, process_group=group, **ddp_kwargs)
    if optimizer == "sgd":
        opt = torch.optim.SGD(ddp.parameters(), lr=0.1, momentum=0.9)
    else:
        opt = torch.optim.Adam(ddp.parameters(), lr=0.01)
    data = torch.Generator().manual_seed(100 + rank)  # every rank sees different data
    for _ in range(3):
        x = torch.randn(5, 8, generator=data).to(device)
        y = torch.randn(5, 4, generator=data).to(device)
        loss = F.mse_loss(ddp(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    for p in model.parameters():
        assert p.device == torch.device(device) and p.grad.device == torch.device(device), p.device
    return [p.detach().cpu() for p in model.parameters()]


def identical(a, b):
    return len(a) == len(b) and all(torch.equal(x, y) for x, y in zip(a, b))
'''

TORCHRUN_SCRIPT = TRAIN + '''
import json, os, sys
import torch_npu  # noqa: F401  (as a migrated script does)
import torch.distributed as dist

rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
local = int(os.environ["LOCAL_RANK"])
torch.npu.set_device(local)
dist.init_process_group(backend="hccl")
dev = torch.device("npu", local)
done = {"backend": dist.get_backend()}

t = torch.full((4,), float(rank + 1), device=dev)
dist.all_reduce(t)
done["all_reduce"] = [str(t.device), t.tolist()]

b = torch.arange(3.0, device=dev) * (rank + 1)
dist.broadcast(b, src=1)
done["broadcast"] = b.tolist()

outs = [torch.zeros(2, device=dev) for _ in range(world)]
dist.all_gather(outs, torch.full((2,), float(rank), device=dev))
done["all_gather"] = [o.tolist() for o in outs]

flat = torch.zeros(2 * world, device=dev)
dist.all_gather_into_tensor(flat, torch.full((2,), float(rank), device=dev))
done["all_gather_into_tensor"] = flat.tolist()

objs = [None] * world
dist.all_gather_object(objs, {"rank": rank, "name": f"r{rank}"})
done["all_gather_object"] = objs

rs = torch.zeros(2, device=dev)
dist.reduce_scatter_tensor(rs, torch.arange(4.0, device=dev))
done["reduce_scatter_tensor"] = rs.tolist()

rs2 = torch.zeros(2, device=dev)
dist.reduce_scatter(rs2, [torch.full((2,), float(r + rank), device=dev) for r in range(world)])
done["reduce_scatter"] = rs2.tolist()

work = dist.all_reduce(torch.ones(2, device=dev), async_op=True)
done["async_wait"] = work.wait()

dist.barrier()
done["barrier"] = True

try:
    dist.all_reduce(torch.ones(2))
    done["cpu_tensor"] = "accepted"
except ValueError as error:
    done["cpu_tensor"] = str(error)

red = torch.full((2,), float(rank + 1), device=dev)
dist.reduce(red, dst=0)
done["reduce"] = red.tolist() if rank == 0 else None

a2a = torch.zeros(2, device=dev)
dist.all_to_all_single(a2a, torch.tensor([10.0 * rank, 10.0 * rank + 1], device=dev))
done["all_to_all_single"] = a2a.tolist()

gathered = [torch.zeros(1, device=dev) for _ in range(world)] if rank == 0 else None
dist.gather(torch.tensor([float(rank)], device=dev), gathered, dst=0)
done["gather"] = [g.tolist() for g in gathered] if rank == 0 else None

scattered = torch.zeros(1, device=dev)
dist.scatter(scattered, [torch.tensor([5.0]).npu(), torch.tensor([6.0]).npu()] if rank == 0 else None, src=0)
done["scatter"] = scattered.tolist()

if rank == 0:
    dist.send(torch.tensor([42.0], device=dev), dst=1)
    done["send_recv"] = "sent"
else:
    box = torch.zeros(1, device=dev)
    dist.recv(box, src=0)
    done["send_recv"] = box.tolist()

# both ranks send first, then receive: must not deadlock
peer = 1 - rank
inbox = torch.zeros(2, device=dev)
sending = dist.isend(torch.full((2,), float(rank), device=dev), peer)
receiving = dist.irecv(inbox, peer)
sending.wait()
receiving.wait()
inbox2 = torch.zeros(2, device=dev)
for req in dist.batch_isend_irecv([dist.P2POp(dist.isend, torch.full((2,), 10.0 * rank, device=dev), peer),
                                   dist.P2POp(dist.irecv, inbox2, peer)]):
    req.wait()
done["isend_irecv"] = [inbox.tolist(), inbox2.tolist()]

objects = [{"from": rank}] if rank == 0 else [None]
dist.broadcast_object_list(objects, src=0)
done["broadcast_object_list"] = objects

sub = dist.new_group(ranks=[0, 1], backend="hccl")
st = torch.ones(1, device=dev)
dist.all_reduce(st, group=sub)
done["new_group"] = [dist.get_backend(sub), st.tolist()]

reference = train(rank, "cpu", dist.new_group(backend="gloo"))
for name, kwargs in [
    ("ddp_device_ids", dict(device_ids=[local])),
    ("ddp_no_device_ids", {}),
    ("ddp_static_graph", dict(device_ids=[local], static_graph=True)),
    ("ddp_bucket_view", dict(gradient_as_bucket_view=True)),
]:
    done[name] = identical(reference, train(rank, dev, None, **kwargs))

with open(os.path.join(sys.argv[1], f"rank{rank}.json"), "w") as fh:
    json.dump(done, fh)
dist.barrier()  # both results are on disk before rank 1 fails on purpose
dist.destroy_process_group()
if rank == 1:
    sys.exit(3)  # transplant run --nproc reports the failing rank's own exit code
'''


def test_torchrun_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "train_ddp.py"
    script.write_text(TORCHRUN_SCRIPT)
    result = run_transplant(["--nproc", "2", str(script), str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 3, result.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for rank, done in enumerate(ranks):
        assert done["backend"] == "hccl"
        assert done["all_reduce"] == [f"npu:{rank}", [3.0] * 4]
        assert done["broadcast"] == [0.0, 2.0, 4.0]
        assert done["all_gather"] == [[0.0, 0.0], [1.0, 1.0]]
        assert done["all_gather_into_tensor"] == [0.0, 0.0, 1.0, 1.0]
        assert done["all_gather_object"] == [{"rank": 0, "name": "r0"}, {"rank": 1, "name": "r1"}]
        assert done["reduce_scatter_tensor"] == ([0.0, 2.0] if rank == 0 else [4.0, 6.0])
        assert done["reduce_scatter"] == [float(2 * rank + 1)] * 2
        assert done["async_wait"] is True
        assert done["barrier"] is True
        assert done["reduce"] == ([3.0, 3.0] if rank == 0 else None)
        assert done["all_to_all_single"] == [float(rank), 10.0 + rank]
        assert done["gather"] == ([[0.0], [1.0]] if rank == 0 else None)
        assert done["scatter"] == [5.0 + rank]
        assert done["send_recv"] == ("sent" if rank == 0 else [42.0])
        assert done["isend_irecv"] == [[float(1 - rank)] * 2, [10.0 * (1 - rank)] * 2]
        assert done["broadcast_object_list"] == [{"from": 0}]
        assert done["new_group"] == ["hccl", [2.0]]
        assert done["cpu_tensor"] == "ProcessGroupHCCL::allreduce: Tensors must be NPU and dense"
        for variant in ("ddp_device_ids", "ddp_no_device_ids", "ddp_static_graph", "ddp_bucket_view"):
            assert done[variant] is True, f"rank {rank}: {variant} differs from CPU/gloo DDP"


SPAWN_SCRIPT = TRAIN + '''
import json, socket, sys
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port, out_dir):
    # No `import torch_npu` here: under `transplant run` every process gets the device and hccl
    # as soon as it imports torch, as with the real torch_npu's auto-loading.
    torch.npu.set_device(rank)
    dist.init_process_group("hccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world,
                            device_id=torch.device("npu", rank))
    t = torch.ones(3, device="npu") * (rank + 1)
    dist.all_reduce(t)
    dist.barrier()  # takes the bound-device branch
    reference = train(rank, "cpu", dist.new_group(backend="gloo"), optimizer="adam")
    got = train(rank, torch.device("npu", rank), None, optimizer="adam", device_ids=[rank],
                static_graph=True)
    result = {"device": str(t.device), "all_reduce": t.tolist(), "ddp_identical": identical(reference, got)}
    dist.destroy_process_group()
    with open(f"{out_dir}/spawn{rank}.json", "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(worker, args=(2, port, sys.argv[1]), nprocs=2, join=True)
'''


def test_mp_spawn_two_processes(tmp_path: Path) -> None:
    script = tmp_path / "spawn_ddp.py"
    script.write_text(SPAWN_SCRIPT)
    result = run_transplant([str(script), str(tmp_path)], cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-4000:]
    for rank in range(2):
        done = json.loads((tmp_path / f"spawn{rank}.json").read_text())
        assert done == {"device": f"npu:{rank}", "all_reduce": [3.0] * 3, "ddp_identical": True}
