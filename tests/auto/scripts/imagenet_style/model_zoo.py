"""The project's own model module (imported by main.py; rewritten at import time too)."""

import torch
import torch.nn as nn


class TinyResNet(nn.Module):
    def __init__(self, classes=5):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 8 * 8, classes)

    def forward(self, x):
        # the project's own helpers test the device the CUDA way too
        if x.device.type == 'cuda':
            x = x.contiguous()
        return self.fc(torch.relu(self.conv(x)).flatten(1))


def tiny_resnet():
    return TinyResNet()
