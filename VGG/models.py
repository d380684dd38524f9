"""VGG-19 for CIFAR-10 (Simonyan & Zisserman; the CIFAR variant of Frankle & Carbin / Frankle et al. 2019).

16 conv 3x3 layers (padding 1), each followed by BatchNorm and ReLU, four max-pools (32 -> 2 pixels),
a global average pool and one linear layer 512 -> 10. `width` scales every conv layer's channels, so
tests and CPU runs can use a narrow network of the same depth and shape.
"""

from __future__ import annotations

import torch
from torch import nn

VGG19_LAYERS: list[int | str] = [
    64,
    64,
    "M",
    128,
    128,
    "M",
    256,
    256,
    256,
    256,
    "M",
    512,
    512,
    512,
    512,
    "M",
    512,
    512,
    512,
    512,
]
ARCH = "VGG-19"


def scaled_channels(channels: int, width: float) -> int:
    return max(1, round(channels * width))


class ConvBlock(nn.Module):
    """conv 3x3 (padding 1) -> BatchNorm -> ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1)
        self.bn = nn.BatchNorm2d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn(self.conv(x)))


class VGG(nn.Module):
    def __init__(self, layers: list[int | str] = VGG19_LAYERS, width: float = 1.0, classes: int = 10):
        super().__init__()
        blocks: list[nn.Module] = []
        channels = 3
        for spec in layers:
            if spec == "M":
                blocks.append(nn.MaxPool2d(2))
            else:
                out = scaled_channels(int(spec), width)
                blocks.append(ConvBlock(channels, out))
                channels = out
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, classes)
        self._initialize_weights()

    def _initialize_weights(self) -> None:
        # As the earlier study and OpenLTH: He init for convs, BN at identity, a small Gaussian for the classifier.
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.pool(self.features(x)).flatten(1))


def vgg19(width: float = 1.0) -> VGG:
    return VGG(VGG19_LAYERS, width=width)


def conv_weight_names(model: nn.Module) -> list[str]:
    """The prunable weights of VGG: the conv kernels only (never BatchNorm, biases or the classifier)."""
    return [f"{name}.weight" for name, module in model.named_modules() if isinstance(module, nn.Conv2d)]
