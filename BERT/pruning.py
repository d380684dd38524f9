"""BERT's pruning policy (Chen et al., NeurIPS 2020): global magnitude pruning over the encoder's
linear weights and the pooler, a fixed share of the ORIGINAL count per round, the last round landing
exactly on the target sparsity."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from lth.masks import Mask
from lth.pruning import keep_top_global, round_half_up
from lth.tickets import prunable_bert_names

from .settings import PRUNE_RATE


def bert_prunable_names(model: nn.Module, include_pooler: bool = True) -> list[str]:
    """Query, key, value, attention output, intermediate and output weights of every layer, and the
    pooler (unless left out); never embeddings, LayerNorm, biases or the classifier head."""
    return prunable_bert_names((name for name, _ in model.named_parameters()), include_pooler)


def pruned_count_target(total: int, sparsity: float) -> int:
    return round_half_up(sparsity * total)


def rounds_needed(total: int, sparsity: float, prune_rate: float = PRUNE_RATE) -> int:
    """Pruning rounds after the dense one: ceil(sparsity / prune_rate), so 0.6 / 0.1 is 6 (the
    tolerance absorbs float noise such as 0.6 / 0.1 = 5.999...)."""
    if pruned_count_target(total, sparsity) == 0:
        return 0
    return math.ceil(sparsity / prune_rate - 1e-9)


@dataclass
class ChenPruning:
    """Round r prunes up to round(min(r x prune_rate, target_sparsity) x original count) weights,
    ranked globally by magnitude among the survivors: 10, 20, ... percentage points of the
    original count, the last round landing exactly on the target. The rounds already done are read
    from the mask's pruned count, so the policy needs no state of its own."""

    prune_rate: float
    target_sparsity: float

    def __call__(self, mask: Mask) -> ChenPruning:  # the IMP loop builds policies from the mask
        return self

    def kept_total(self, mask: Mask, rounds: int = 1) -> int:
        total = mask.total()  # the mask covers every prunable weight: total is the original count
        pruned_now = total - mask.kept()
        done = round(pruned_now / (self.prune_rate * total))
        fraction = min((done + rounds) * self.prune_rate, self.target_sparsity)
        target = max(pruned_count_target(total, fraction), pruned_now)
        return total - target

    def prune(self, scores: dict[str, torch.Tensor], mask: Mask, rounds: int = 1) -> Mask:
        return keep_top_global(scores, mask, self.kept_total(mask, rounds))
