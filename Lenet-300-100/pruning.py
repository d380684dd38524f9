"""LeNet's pruning policy: layer-wise, hidden layers at the fc rate, the output layer at its own rate."""

from __future__ import annotations

from torch import nn

from lth.pruning import LayerwisePruning, conv_fc_rates

from .settings import FC_RATE, OUTPUT_RATE


def lenet_pruning(model: nn.Module, fc_rate: float = FC_RATE, output_rate: float = OUTPUT_RATE) -> LayerwisePruning:
    return LayerwisePruning(conv_fc_rates(model, conv_rate=0.0, fc_rate=fc_rate, output_rate=output_rate))
