"""Conv-2, Conv-4 and Conv-6 for CIFAR-10 (Frankle & Carbin, 2019, Figure 2 / Appendix).

Pairs of 3x3 convolutions (padding 1, ReLU) of 64, then 128, then 256 channels, each pair followed by
a 2x2 max-pool; then fully connected 256-256-10 with ReLU and optional dropout after each hidden
layer. Gaussian Glorot initialisation, zero biases, no BatchNorm.
"""

from __future__ import annotations

import torch
from torch import nn

from lth.errors import UserError

from .settings import ARCHS

# Channels of each conv pair; Conv-2 has the first pair, Conv-4 two pairs, Conv-6 all three.
CONV_PAIRS = (64, 128, 256)
HIDDEN = (256, 256)


class ConvNet(nn.Module):
    """`pairs` conv pairs then the 256-256-10 head; `width` scales every hidden layer (1 = the paper)."""

    def __init__(
        self,
        pairs: int,
        dropout_rate: float = 0.0,
        width: float = 1.0,
        image_size: int = 32,
        in_channels: int = 3,
        classes: int = 10,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for out in CONV_PAIRS[:pairs]:
            out = max(1, round(out * width))
            layers += [
                nn.Conv2d(channels, out, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(out, out, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            channels = out
        self.features = nn.Sequential(*layers)
        side = image_size // 2**pairs
        hidden = [max(1, round(h * width)) for h in HIDDEN]
        self.classifier = nn.Sequential(
            nn.Linear(channels * side * side, hidden[0]),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(hidden[0], hidden[1]),
            nn.ReLU(),
            nn.Dropout(dropout_rate),
            nn.Linear(hidden[1], classes),
        )
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_normal_(module.weight)  # Gaussian Glorot, as in the paper
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))


def build_model(arch: str, dropout_rate: float = 0.0, width: float = 1.0) -> ConvNet:
    if arch not in ARCHS:
        raise UserError(f"--arch {arch}: unknown architecture; expected one of {', '.join(ARCHS)}")
    return ConvNet(ARCHS[arch], dropout_rate=dropout_rate, width=width)
