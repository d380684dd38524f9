"""Where a ticket's surviving weights go after pruning: rewinding and random re-initialisation."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from lth.masks import Mask


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """An independent copy of the model's state (tensors cloned, so later training cannot alias it)."""
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def to_cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in state.items()}


def rewind(model: nn.Module, weights: dict[str, torch.Tensor], mask: Mask) -> None:
    """Load the rewind point (iteration 0 or k) and re-apply the mask, so pruned weights are zero."""
    model.load_state_dict(weights)
    mask.apply(model)


def fresh_initialization(model_factory: Callable[[], nn.Module], seed: int) -> dict[str, torch.Tensor]:
    """Weights drawn from the model's own init distribution by a seeded generator of their own.

    The global RNG is forked, so the draw does not depend on (or disturb) anything else the run did.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return to_cpu(model_factory().state_dict())


def derived_seed(seed: int, *salt: int) -> int:
    """A stable per-purpose seed (e.g. per round of a control) that never collides with the run seed."""
    value = seed
    for s in salt:
        value = (value * 1_000_003 + s * 7_919 + 17) % (2**62)
    return value
