"""The Conv nets' pruning policy (Frankle & Carbin): layer-wise, each round every conv layer loses
10% (Conv-2, Conv-4) or 15% (Conv-6) of its remaining weights, each hidden fc layer 20%, and the
output layer half the fc rate."""

from __future__ import annotations

from torch import nn

from lth.pruning import LayerwisePruning, conv_fc_rates

from .settings import FC_RATE, default_output_rate


def cnn_pruning(
    model: nn.Module, conv_rate: float, fc_rate: float = FC_RATE, output_rate: float | None = None
) -> LayerwisePruning:
    rate = default_output_rate(fc_rate) if output_rate is None else output_rate
    return LayerwisePruning(conv_fc_rates(model, conv_rate=conv_rate, fc_rate=fc_rate, output_rate=rate))
