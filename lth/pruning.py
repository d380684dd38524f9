"""Pruning strategies with exact counts.

Every step removes exactly k = round(p x remaining) weights (half rounds up), chosen among the
weights that still survive, lowest score first; equal scores are broken by position (the entry
earlier in the flattened layer, and the layer earlier in the mask, goes first), so the resulting
sparsity is exact and the same on every machine.

Scores are magnitudes of the weights as they are now (after training), or random numbers for the
random-pruning control. Policies (which layer loses what fraction) are small objects the families
configure: `LayerwisePruning` and `GlobalPruning`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from lth.masks import Mask


def round_half_up(x: float) -> int:
    return int(math.floor(x + 0.5))


def remaining_after(count: int, rate: float, rounds: int = 1) -> int:
    """Survivors after `rounds` steps that each remove round(rate x survivors)."""
    for _ in range(rounds):
        count -= round_half_up(rate * count)
    return count


def magnitude_scores(weights: dict[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    return {n: weights[n].detach().abs() for n in mask}


def random_scores(mask: Mask, generator: torch.Generator) -> dict[str, torch.Tensor]:
    """Uniform random scores from a generator of the control's own (CPU, so seeds agree across devices)."""
    return {n: torch.rand(m.shape, generator=generator).to(m.device) for n, m in mask.layers.items()}


def _lowest_first(flat_scores: torch.Tensor) -> torch.Tensor:
    """Indices ordering scores ascending, ties by position (stable sort)."""
    return torch.sort(flat_scores, stable=True).indices


def keep_top_per_layer(scores: dict[str, torch.Tensor], mask: Mask, keep: dict[str, int]) -> Mask:
    """New mask keeping, in each layer, exactly keep[layer] of the currently surviving weights."""
    layers = {}
    for name, alive in mask.layers.items():
        target = keep.get(name, int(alive.sum()))
        layers[name] = _keep_top(scores[name].reshape(-1), alive.reshape(-1), target).reshape(alive.shape)
    return Mask(layers)


def keep_top_global(scores: dict[str, torch.Tensor], mask: Mask, keep: int, names: list[str] | None = None) -> Mask:
    """New mask keeping exactly `keep` surviving weights among `names` (all layers by default), ranked together."""
    names = names if names is not None else mask.names()
    flat_alive = torch.cat([mask[n].reshape(-1).cpu() for n in names])
    flat_scores = torch.cat([scores[n].reshape(-1).float().cpu() for n in names])
    flat_keep = _keep_top(flat_scores, flat_alive, keep)
    layers = dict(mask.layers)
    offset = 0
    for n in names:
        size = mask[n].numel()
        layers[n] = flat_keep[offset : offset + size].reshape(mask[n].shape).to(mask[n].device)
        offset += size
    return Mask(layers)


def _keep_top(flat_scores: torch.Tensor, flat_alive: torch.Tensor, keep: int) -> torch.Tensor:
    alive_index = flat_alive.nonzero().squeeze(1)
    alive_count = alive_index.numel()
    if not 0 <= keep <= alive_count:
        raise ValueError(f"cannot keep {keep} of {alive_count} surviving weights")
    order = _lowest_first(flat_scores[alive_index].to(alive_index.device))
    removed = alive_index[order[: alive_count - keep]]
    result = flat_alive.clone()
    result[removed] = False
    return result


@dataclass
class LayerwisePruning:
    """Each layer loses its own fraction of its *remaining* weights per round.

    `rates` maps layer name to rate; layers absent from it are not pruned.
    """

    rates: dict[str, float]

    def kept_counts(self, mask: Mask, rounds: int = 1) -> dict[str, int]:
        kept = mask.kept_counts()
        return {n: remaining_after(kept[n], self.rates.get(n, 0.0), rounds) for n in mask}

    def prune(self, scores: dict[str, torch.Tensor], mask: Mask, rounds: int = 1) -> Mask:
        """Prune `rounds` rounds' worth at once (rounds > 1 is one-shot to the compounded per-layer target)."""
        return keep_top_per_layer(scores, mask, self.kept_counts(mask, rounds))


@dataclass
class GlobalPruning:
    """A fraction of all remaining weights of `names`, ranked together; other layers untouched."""

    rate: float
    names: list[str] | None = field(default=None)

    def kept_total(self, mask: Mask, rounds: int = 1) -> int:
        names = self.names if self.names is not None else mask.names()
        return remaining_after(sum(int(mask[n].sum()) for n in names), self.rate, rounds)

    def prune(self, scores: dict[str, torch.Tensor], mask: Mask, rounds: int = 1) -> Mask:
        return keep_top_global(scores, mask, self.kept_total(mask, rounds), self.names)


def random_mask_like(reference: Mask, within: Mask, generator: torch.Generator) -> Mask:
    """Random-pruning control: a random mask inside `within` with the reference's per-layer counts."""
    return keep_top_per_layer(random_scores(within, generator), within, reference.kept_counts())


def conv_fc_rates(
    model: torch.nn.Module, conv_rate: float, fc_rate: float, output_rate: float | None = None
) -> dict[str, float]:
    """Layer-wise rates by layer kind: conv layers at `conv_rate`, linear layers at `fc_rate`, and the
    output layer (the last linear) at `output_rate`, by default half the fc rate (Frankle & Carbin)."""
    from lth.masks import default_prunable_names

    rates: dict[str, float] = {}
    linear = []
    modules = dict(model.named_modules())
    for name in default_prunable_names(model):
        module = modules[name.rsplit(".", 1)[0]] if "." in name else model
        if isinstance(module, torch.nn.Linear):
            rates[name] = fc_rate
            linear.append(name)
        else:
            rates[name] = conv_rate
    if linear:
        rates[linear[-1]] = fc_rate / 2 if output_rate is None else output_rate
    return rates
