"""Exact-count pruning, one-shot targets, random pruning and mask algebra."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lth.masks import Mask
from lth.pruning import (
    GlobalPruning,
    LayerwisePruning,
    conv_fc_rates,
    keep_top_global,
    magnitude_scores,
    random_mask_like,
    remaining_after,
    round_half_up,
)


def lenet_like() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10)
    )


def test_layerwise_counts_exact_over_rounds_and_output_at_half_rate():
    model = lenet_like()
    rates = conv_fc_rates(model, conv_rate=0.0, fc_rate=0.2)
    assert rates == {"1.weight": 0.2, "3.weight": 0.2, "5.weight": 0.1}
    policy = LayerwisePruning(rates)
    mask = Mask.dense(model)
    expected = {"1.weight": 235200, "3.weight": 30000, "5.weight": 1000}
    weights = dict(model.named_parameters())
    for _ in range(6):
        # Fresh random weights each round: counts must not depend on the values.
        for p in weights.values():
            p.data.normal_()
        mask = policy.prune(magnitude_scores(weights, mask), mask)
        expected = {n: c - round_half_up(rates[n] * c) for n, c in expected.items()}
        assert mask.kept_counts() == expected
    # Hand-checked first rounds: 235200 -> 188160 -> 150528; output 1000 -> 900 -> 810.
    assert remaining_after(235200, 0.2, 2) == 150528
    assert remaining_after(1000, 0.1, 2) == 810


def test_pruned_weights_are_the_smallest_surviving_ones():
    w = torch.tensor([[0.5, -0.1, 0.3, -0.9, 0.05, 0.2, 0.7, -0.4, 0.6, 0.8]])
    mask = Mask({"w": torch.ones_like(w, dtype=torch.bool)})
    pruned = LayerwisePruning({"w": 0.3}).prune({"w": w.abs()}, mask)
    assert pruned["w"].tolist() == [[True, False, True, True, False, False, True, True, True, True]]
    # Already-pruned entries never come back, even when their score is now the largest.
    again = LayerwisePruning({"w": 0.3}).prune({"w": torch.arange(10.0).flip(0).view(1, 10)}, pruned)
    assert not again["w"][0, 1] and not again["w"][0, 4] and not again["w"][0, 5]
    assert again.kept() == 7 - round_half_up(0.3 * 7)


def test_ties_broken_by_position_deterministically():
    scores = {"a": torch.ones(10), "b": torch.ones(10)}
    mask = Mask({"a": torch.ones(10, dtype=torch.bool), "b": torch.ones(10, dtype=torch.bool)})
    result = keep_top_global(scores, mask, keep=15)
    assert result["a"].tolist() == [False] * 5 + [True] * 5
    assert result["b"].all()


def test_global_pruning_counts_exact_and_ranks_across_layers():
    torch.manual_seed(1)
    weights = {"big": torch.randn(50, 40) * 10, "small": torch.randn(30, 20) * 0.01, "skip": torch.randn(5, 5) * 1e-6}
    mask = Mask({n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()})
    policy = GlobalPruning(0.2, names=["big", "small"])
    remaining = 2000 + 600
    for _ in range(4):
        mask = policy.prune(magnitude_scores(weights, mask), mask)
        remaining -= round_half_up(0.2 * remaining)
        assert mask["big"].sum() + mask["small"].sum() == remaining
        assert mask["skip"].all(), "layers outside the global pool are never pruned"
    assert mask["small"].sum() == 0 and mask["big"].sum() == remaining, "global ranking empties the small layer first"


def test_oneshot_reaches_the_compounded_per_layer_counts():
    model = lenet_like()
    policy = LayerwisePruning(conv_fc_rates(model, 0.0, 0.2))
    weights = dict(model.named_parameters())
    scores = magnitude_scores(weights, Mask.dense(model))
    iterative = Mask.dense(model)
    for _ in range(7):
        iterative = policy.prune(scores, iterative)
    oneshot = policy.prune(scores, Mask.dense(model), rounds=7)
    assert oneshot.kept_counts() == iterative.kept_counts()
    assert round(oneshot.weights_remaining_pct(), 1) == 21.1  # Frankle & Carbin's 21.1% point


def test_random_pruning_keeps_per_layer_counts_and_stays_inside():
    model = lenet_like()
    policy = LayerwisePruning(conv_fc_rates(model, 0.0, 0.2))
    base = policy.prune(magnitude_scores(dict(model.named_parameters()), Mask.dense(model)), Mask.dense(model))
    target = policy.prune(magnitude_scores(dict(model.named_parameters()), base), base)
    random_a = random_mask_like(target, within=base, generator=torch.Generator().manual_seed(3))
    random_b = random_mask_like(target, within=base, generator=torch.Generator().manual_seed(3))
    random_c = random_mask_like(target, within=base, generator=torch.Generator().manual_seed(4))
    assert random_a.kept_counts() == target.kept_counts()
    assert all(not (random_a[n] & ~base[n]).any() for n in base)
    assert random_a.equals(random_b) and not random_a.equals(random_c)
    assert not random_a.equals(target)


def test_union_intersection_jaccard_on_hand_made_masks():
    a = Mask({"x": torch.tensor([1, 1, 0, 0], dtype=torch.bool), "y": torch.tensor([1, 0], dtype=torch.bool)})
    b = Mask({"x": torch.tensor([0, 1, 1, 0], dtype=torch.bool), "y": torch.tensor([1, 0], dtype=torch.bool)})
    assert a.union(b)["x"].tolist() == [True, True, True, False]
    assert a.intersection(b)["x"].tolist() == [False, True, False, False]
    assert a.jaccard(b) == pytest.approx(2 / 4)
    assert a.layer_jaccard(b) == {"x": pytest.approx(1 / 3), "y": 1.0}
    assert a.union(b).sparsity() <= min(a.sparsity(), b.sparsity())
    other = Mask({"x": torch.ones(5, dtype=torch.bool), "y": torch.ones(2, dtype=torch.bool)})
    with pytest.raises(Exception, match="shape of x"):
        a.union(other)


def test_mask_state_dict_round_trip_and_apply(tmp_path):
    model = lenet_like()
    policy = LayerwisePruning(conv_fc_rates(model, 0.0, 0.2))
    mask = policy.prune(magnitude_scores(dict(model.named_parameters()), Mask.dense(model)), Mask.dense(model))
    torch.save(mask.state_dict(), tmp_path / "mask.pt")
    loaded = Mask.from_state_dict(torch.load(tmp_path / "mask.pt"))
    assert loaded.equals(mask)
    loaded.apply(model)
    params = dict(model.named_parameters())
    assert all((params[n][~mask[n]] == 0).all() for n in mask)
    assert Mask.from_nonzero({n: params[n].detach() for n in mask}, mask.names()).equals(mask)
