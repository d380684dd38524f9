"""Conv-2/4/6: architecture, parameter and prunable-weight counts, initialisation, per-layer pruning rates."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lth.families import family_module
from lth.masks import Mask, default_prunable_names
from lth.pruning import magnitude_scores

CNN = Path(__file__).resolve().parents[1] / "CNN"


def load_cnn(*names: str):
    return [family_module(CNN, name) for name in names]


models, pruning, main = load_cnn("models", "pruning", "main")

# Prunable weights per arch (conv + linear weights; the earlier study's counts) and conv share.
PRUNABLE = {"Conv-2": 4_300_992, "Conv-4": 2_425_024, "Conv-6": 2_261_184}
CONV_WEIGHTS = {"Conv-2": 38_592, "Conv-4": 259_776, "Conv-6": 1_144_512}
BIASES = {
    "Conv-2": 64 + 64 + 256 + 256 + 10,
    "Conv-4": 64 * 2 + 128 * 2 + 522,
    "Conv-6": 64 * 2 + 128 * 2 + 256 * 2 + 522,
}


@pytest.mark.parametrize("arch", list(PRUNABLE))
def test_parameter_and_prunable_counts(arch):
    model = models.build_model(arch)
    names = default_prunable_names(model)
    params = dict(model.named_parameters())
    assert sum(params[n].numel() for n in names) == PRUNABLE[arch]
    assert sum(params[n].numel() for n in names if params[n].dim() == 4) == CONV_WEIGHTS[arch]
    assert sum(p.numel() for p in model.parameters()) == PRUNABLE[arch] + BIASES[arch]
    assert all(n.endswith("weight") for n in names) and len(names) == 2 * models.ARCHS[arch] + 3
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_layers_follow_the_paper():
    model = models.build_model("Conv-6", dropout_rate=0.5)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [64, 64, 128, 128, 256, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(lin.in_features, lin.out_features) for lin in linears] == [(4096, 256), (256, 256), (256, 10)]
    assert [m.p for m in model.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_glorot_normal_init_and_zero_biases():
    torch.manual_seed(0)
    model = models.build_model("Conv-2")
    for module in model.modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(module.weight)
            expected = math.sqrt(2.0 / (fan_in + fan_out))
            assert module.weight.std().item() == pytest.approx(expected, rel=0.15)
            assert torch.count_nonzero(module.bias) == 0


def test_unknown_arch_is_a_user_error():
    from lth.errors import UserError

    with pytest.raises(UserError, match="--arch"):
        models.build_model("Conv-8")


def expected_survivors(count: int, rate: float, rounds: int) -> int:
    """round(rate x remaining) go per round, half rounding up, computed here independently of lth."""
    for _ in range(rounds):
        count -= int(rate * count + 0.5)
    return count


@pytest.mark.parametrize("arch,conv_rate", [("Conv-2", 0.10), ("Conv-6", 0.15)])
def test_layerwise_counts_exact_over_rounds_output_at_half_fc_rate(arch, conv_rate):
    args = main.parse_args(["--arch", arch])
    assert (args.conv_prune_rate, args.fc_prune_rate, args.output_prune_rate) == (conv_rate, 0.2, 0.1)
    torch.manual_seed(0)
    model = models.build_model(arch)
    policy = pruning.cnn_pruning(model, args.conv_prune_rate, args.fc_prune_rate, args.output_prune_rate)
    names = default_prunable_names(model)
    output_layer = names[-1]
    expected_rate = {n: (0.1 if n == output_layer else 0.2 if n.startswith("classifier") else conv_rate) for n in names}
    assert policy.rates == expected_rate
    mask = Mask.dense(model)
    totals = mask.total_counts()
    weights = {n: p.detach() for n, p in model.named_parameters()}
    for rounds in range(1, 4):
        # Fresh "trained" weights each round, as IMP sees them.
        weights = {n: torch.randn_like(w) for n, w in weights.items()}
        mask = policy.prune(magnitude_scores(weights, mask), mask)
        for name in names:
            assert mask.kept_counts()[name] == expected_survivors(totals[name], expected_rate[name], rounds), (
                name,
                rounds,
            )
    # Output layer after three rounds at 10%: 2560 -> 2304 -> 2074 -> 1867.
    assert mask.kept_counts()[output_layer] == 1867


def test_output_rate_flag_and_arch_defaults():
    args = main.parse_args(["--arch", "Conv-4", "--fc_prune_rate", "0.3"])
    assert (args.conv_prune_rate, args.output_prune_rate, args.lr, args.train_iterations) == (0.1, 0.15, 3e-4, 25_000)
    args = main.parse_args(["--arch", "Conv-2", "--output_prune_rate", "0.05", "--epochs", "2", "--batch_size", "100"])
    assert args.output_prune_rate == 0.05 and args.train_iterations == 2 * 450 and args.lr == 2e-4
    assert args.epochs is None  # an input, resolved into train_iterations
    args = main.parse_args(["--arch", "Conv-2", "--epochs", "24", "--train_iterations", "123"])
    assert args.train_iterations == 123
    # The earlier flag name keeps its meaning: training iterations per round.
    assert main.parse_args(["--arch", "Conv-2", "--epochs", "24", "--iterations", "123"]).train_iterations == 123
