"""An unmodified CUDA mixed-precision training script using torch.cuda.amp (auto-mode test input)."""

import argparse
import json

import torch
import torch.nn as nn
from torch.cuda.amp import GradScaler, autocast


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    device = "cuda"
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.LayerNorm(32), nn.Linear(32, 1)).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    scaler = GradScaler(init_scale=2.0**10)
    data = torch.randn(8, 32, 16).to(device)
    target = data.sum(dim=2, keepdim=True).tanh()
    losses = []
    for step in range(8):
        optimizer.zero_grad()
        with autocast():
            prediction = model(data[step])
            loss = nn.functional.mse_loss(prediction.float(), target[step])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    with open(args.out, "w") as handle:
        json.dump({"losses": losses, "scale": scaler.get_scale(), "dtype": str(prediction.dtype)}, handle)


if __name__ == "__main__":
    main()
