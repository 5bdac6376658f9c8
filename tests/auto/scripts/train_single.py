"""An unmodified single-device CUDA training script, fp32 then mixed precision with torch.cuda.amp
(auto-mode test input; never edited for the NPU)."""

import argparse
import json
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.cuda.amp import GradScaler, autocast
from torch.utils.data import DataLoader, TensorDataset


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 4))

    def forward(self, x):
        return self.body(x)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--no_cuda", action="store_true", help="train on the cpu instead of cuda")
    args = parser.parse_args()
    use_cuda = torch.cuda.is_available() and not args.no_cuda
    device = torch.device("cuda" if use_cuda else "cpu")
    torch.manual_seed(0)
    if use_cuda:
        torch.cuda.manual_seed_all(0)
    generator = torch.Generator().manual_seed(0)
    data = torch.randn(64, 10, generator=generator)
    labels = torch.randint(0, 4, (64,), generator=generator)
    loader = DataLoader(TensorDataset(data, labels), batch_size=16, shuffle=True, pin_memory=use_cuda,
                        generator=generator)
    model = Net().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(2):
        for x, y in loader:
            x, y = x.cuda(non_blocking=True), y.cuda()
            assert x.is_cuda
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
    torch.cuda.synchronize()
    assert torch.cuda.memory_allocated() >= 0
    checkpoint = os.path.join(os.path.dirname(args.out), "cuda_runs", "model.pt")
    os.makedirs(os.path.dirname(checkpoint), exist_ok=True)
    torch.save(model.state_dict(), checkpoint)
    model.load_state_dict(torch.load(checkpoint, map_location="cuda:0"))
    with torch.no_grad():
        model.eval()
        final = model(data.cuda()).sum().item()
    amp_losses, scale, dtype = train_amp()
    with open(args.out, "w") as handle:
        json.dump({"losses": losses, "final": final, "device": str(next(model.parameters()).device),
                   "amp_losses": amp_losses, "scale": scale, "amp_dtype": dtype}, handle)


def train_amp():
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
            loss = F.mse_loss(prediction.float(), target[step])
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        losses.append(loss.item())
    return losses, scaler.get_scale(), str(prediction.dtype)


if __name__ == "__main__":
    main()
