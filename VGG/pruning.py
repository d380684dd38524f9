"""VGG's pruning policy: global magnitude pruning of the conv kernels, 20% of the remaining ones per round.

All 16 conv weight tensors are ranked together (Frankle & Carbin; Frankle et al. 2019). BatchNorm,
biases and the final linear layer are never pruned: they are not in the mask at all.
"""

from __future__ import annotations

from torch import nn

from lth.pruning import GlobalPruning

from .models import conv_weight_names
from .settings import PRUNE_RATE


def vgg_pruning(model: nn.Module, rate: float = PRUNE_RATE) -> GlobalPruning:
    return GlobalPruning(rate, conv_weight_names(model))
