"""An unmodified 2-GPU DDP training script (torchrun, backend='nccl'); auto-mode test input."""

import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, TensorDataset
from torch.utils.data.distributed import DistributedSampler


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--dist-backend", default="nccl")
    args = parser.parse_args()
    local_rank = int(os.environ["LOCAL_RANK"])
    torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=args.dist_backend)
    device = torch.device("cuda", local_rank)
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).cuda(local_rank)
    model = DDP(model, device_ids=[local_rank], output_device=local_rank)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(1)
    data = torch.randn(32, 8, generator=generator)
    dataset = TensorDataset(data, data.sum(dim=1, keepdim=True))
    sampler = DistributedSampler(dataset, shuffle=False)
    losses = []
    for epoch in range(2):
        sampler.set_epoch(epoch)
        for x, y in DataLoader(dataset, batch_size=4, sampler=sampler):
            x, y = x.to(device), y.to(device)
            loss = nn.functional.mse_loss(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            reduced = loss.detach().clone()
            dist.all_reduce(reduced)
            losses.append(reduced.item() / dist.get_world_size())
    weights = [p.detach().cpu().sum().item() for p in model.parameters()]
    if dist.get_rank() == 0:
        with open(args.out, "w") as handle:
            json.dump({"losses": losses, "weights": weights, "backend": dist.get_backend()}, handle)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
