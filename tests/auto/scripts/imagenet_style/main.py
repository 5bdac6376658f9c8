"""A cut-down pytorch/examples imagenet/main.py: the device comes from torch.accelerator, the set-up
branches on ``device.type == 'cuda'``, and --multiprocessing-distributed starts one process per device
with mp.spawn (nccl). Unmodified CUDA code: auto mode must run it on the NPU."""

import argparse
import json
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn

from model_zoo import tiny_resnet

parser = argparse.ArgumentParser(description="imagenet-style training")
parser.add_argument("--dist-url", default="tcp://127.0.0.1:23456", type=str)
parser.add_argument("--dist-backend", default="nccl", type=str)
parser.add_argument("--world-size", default=1, type=int)
parser.add_argument("--rank", default=0, type=int)
parser.add_argument("--gpu", default=None, type=int)
parser.add_argument("--multiprocessing-distributed", action="store_true")
parser.add_argument("--steps", default=3, type=int)
parser.add_argument("--out", required=True)


def main():
    args = parser.parse_args()
    if torch.accelerator.is_available():
        ngpus_per_node = torch.accelerator.device_count()
    else:
        ngpus_per_node = 1
    ngpus_per_node = min(ngpus_per_node, 2)
    if args.multiprocessing_distributed:
        args.world_size = ngpus_per_node * args.world_size
        mp.spawn(main_worker, nprocs=ngpus_per_node, args=(ngpus_per_node, args))
    else:
        main_worker(args.gpu, ngpus_per_node, args)


def main_worker(gpu, ngpus_per_node, args):
    args.gpu = gpu
    use_accel = torch.accelerator.is_available()
    device = torch.accelerator.current_accelerator() if use_accel else torch.device("cpu")
    args.distributed = args.world_size > 1 or args.multiprocessing_distributed
    if args.distributed:
        args.rank = args.rank * ngpus_per_node + gpu
        dist.init_process_group(backend=args.dist_backend, init_method=args.dist_url,
                                world_size=args.world_size, rank=args.rank)
    torch.manual_seed(0)
    model = tiny_resnet()
    if not use_accel:
        print("using CPU, this will be slow")
    elif args.distributed:
        if device.type == 'cuda':
            if args.gpu is not None:
                torch.cuda.set_device(args.gpu)
                model.cuda(args.gpu)
                model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[args.gpu])
            else:
                model.cuda()
                model = torch.nn.parallel.DistributedDataParallel(model)
    elif device.type == 'cuda':
        torch.cuda.set_device(args.gpu or 0)
        model = model.cuda(args.gpu)
    criterion = nn.CrossEntropyLoss().to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    generator = torch.Generator().manual_seed(1 + (args.rank if args.distributed else 0))
    losses = []
    for _ in range(args.steps):
        images = torch.randn(4, 3, 8, 8, generator=generator)
        target = torch.randint(0, 5, (4,), generator=generator)
        if args.gpu is not None and device.type == 'cuda':
            images = images.cuda(args.gpu, non_blocking=True)
            target = target.cuda(args.gpu, non_blocking=True)
        else:
            images = images.to(device)
            target = target.to(device)
        loss = criterion(model(images), target)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    weights = torch.cat([p.detach().cpu().flatten() for p in model.parameters()])
    rank = args.rank if args.distributed else 0
    with open(f"{args.out}.rank{rank}", "w") as handle:
        json.dump({"device": str(next(model.parameters()).device), "losses": losses,
                   "weights_sum": float(weights.double().sum()), "pid": os.getpid()}, handle)
    if args.distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
