"""LeNet-300-100: a 784-300-100-10 fully connected network with ReLU (Frankle & Carbin, 2019)."""

from __future__ import annotations

import torch
from torch import nn


class LeNet300100(nn.Module):
    def __init__(self, in_features: int = 784, hidden: tuple[int, int] = (300, 100), classes: int = 10):
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden[0])
        self.fc2 = nn.Linear(hidden[0], hidden[1])
        self.fc3 = nn.Linear(hidden[1], classes)
        for layer in (self.fc1, self.fc2, self.fc3):
            nn.init.xavier_normal_(layer.weight)  # Gaussian Glorot, as in the paper
            nn.init.zeros_(layer.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)
