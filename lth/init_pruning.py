"""Pruning at initialization (PAI): SNIP, GraSP, SynFlow, magnitude at initialization and random, and the
ablations of Frankle, Dziugaite, Roy & Carbin (ICLR 2021, "Why are we missing the mark?").

Each method is a score like magnitude: the same exact-count policies keep the highest-scoring weights, either
layer-wise (each layer keeps what the family's IMP policy keeps after `round` rounds) or globally (the same
total, ranked across layers, so the method chooses the per-layer sparsities). Scores:

- SNIP (Lee et al., 2019): |dL/dw * w| on training batches at initialization.
- GraSP (Wang et al., 2020): the paper removes the weights with the largest -w * Hg, H the Hessian and g the
  gradient of the loss (logits / 200, as its code); we keep the largest w * Hg, which is the same choice.
- SynFlow (Tanaka et al., 2020): data-free and iterative: `synflow_iterations` rounds (100) on an exponential
  schedule, each scoring |w * dR/dw| with R the output sum of the network with |w| on an all-ones input.
- magnitude_init: |w| at initialization; random: uniform scores from a seeded generator.

Ablations: `shuffle` moves each layer's surviving weights to random positions keeping the layer's count;
`reinit` keeps the mask and draws fresh initial weights.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from lth.masks import Mask
from lth.pruning import GlobalPruning, LayerwisePruning, keep_top_global, keep_top_per_layer, random_mask_like

GRASP_TEMPERATURE = 200.0


@dataclass
class PruneAtInit:
    method: str
    round: int  # the IMP round whose weights-remaining to match
    scope: str = "global"
    ablation: str = "none"
    synflow_iterations: int = 100
    batches: int = 2  # training batches SNIP and GraSP score on


# --- targets ----------------------------------------------------------------------------------------
class Target:
    """How many weights survive: per layer (layer-wise) or in total (global), reached exactly at the end;
    `fraction` < 1 is a point on the geometric way there (SynFlow's schedule)."""

    def __init__(self, policy, dense: Mask, rounds: int, scope: str):
        self.dense, self.scope = dense, scope
        if isinstance(policy, LayerwisePruning):
            self.per_layer = policy.kept_counts(dense, rounds)
        elif isinstance(policy, GlobalPruning):
            kept = policy.kept_total(dense, rounds)
            self.per_layer = None if scope == "global" else _spread(dense, kept)
            self.total = kept
        else:  # a callable policy built from the mask (BERT): not an image family
            raise ValueError("pruning at initialization needs a LayerwisePruning or GlobalPruning policy")
        if self.per_layer is not None:
            self.total = sum(self.per_layer.values())

    def prune(self, scores: dict[str, torch.Tensor], mask: Mask, fraction: float = 1.0) -> Mask:
        counts = self.dense.total_counts()
        if self.scope == "layerwise":
            keep = {n: _geometric(counts[n], k, fraction) for n, k in self.per_layer.items()}
            return keep_top_per_layer(scores, mask, keep)
        return keep_top_global(scores, mask, _geometric(self.dense.total(), self.total, fraction))


def _geometric(start: int, end: int, fraction: float) -> int:
    if fraction >= 1.0 or start == 0:
        return end
    return max(end, int(round(start * (end / start) ** fraction)))


def _spread(dense: Mask, kept: int) -> dict[str, int]:
    """A global total as per-layer counts in proportion to layer size (layer-wise scope of a global policy)."""
    counts = dense.total_counts()
    total = sum(counts.values())
    spread = {n: int(c * kept // total) for n, c in counts.items()}
    for name in list(counts)[: kept - sum(spread.values())]:
        spread[name] += 1
    return spread


# --- scores -----------------------------------------------------------------------------------------
def _weights(model: nn.Module, mask: Mask) -> list[torch.Tensor]:
    params = dict(model.named_parameters())
    return [params[n] for n in mask]


def snip_scores(model: nn.Module, mask: Mask, batches: list, loss: Callable) -> dict[str, torch.Tensor]:
    """|g * w|, g the gradient of the loss summed over `batches` at the current (initial) weights."""
    weights = _weights(model, mask)
    grads = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        for total, g in zip(grads, torch.autograd.grad(loss(model, batch), weights), strict=True):
            total += g
    return {n: (g * w).detach().abs() for n, g, w in zip(mask, grads, weights, strict=True)}


def tempered_classification_loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x) / GRASP_TEMPERATURE, y)


def grasp_scores(model: nn.Module, mask: Mask, batches: list, loss: Callable = tempered_classification_loss):
    """w * Hg (keep the largest; GraSP removes the largest -w * Hg)."""
    weights = _weights(model, mask)
    g = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        for total, grad in zip(g, torch.autograd.grad(loss(model, batch), weights), strict=True):
            total += grad
    hg = [torch.zeros_like(w) for w in weights]
    for batch in batches:
        grads = torch.autograd.grad(loss(model, batch), weights, create_graph=True)
        z = sum((grad * fixed).sum() for grad, fixed in zip(grads, g, strict=True))
        for total, part in zip(hg, torch.autograd.grad(z, weights), strict=True):
            total += part
    return {n: (w * h).detach() for n, w, h in zip(mask, weights, hg, strict=True)}


def synflow_scores(model: nn.Module, mask: Mask, input_shape: tuple[int, ...]) -> dict[str, torch.Tensor]:
    """|w * dR/dw| with R = sum of the outputs of the network with |w| on an all-ones input (in double precision,
    BatchNorm in eval mode); pruned weights are zero, so they score zero."""
    probe = _linearized_copy(model, mask)
    weights = _weights(probe, mask)
    ones = torch.ones((1, *input_shape), dtype=torch.float64, device=weights[0].device)
    total = probe(ones).sum()
    grads = torch.autograd.grad(total, weights)
    return {n: (g * w).detach().abs().float() for n, g, w in zip(mask, grads, weights, strict=True)}


def _linearized_copy(model: nn.Module, mask: Mask) -> nn.Module:
    import copy

    probe = copy.deepcopy(model).double().eval()
    with torch.no_grad():
        for name, param in probe.named_parameters():
            param.abs_()
            if name in mask.layers:
                param.mul_(mask[name].to(param.device))
    return probe


# --- the mask -----------------------------------------------------------------------------------------
def prune_at_init(
    spec: PruneAtInit,
    model: nn.Module,
    dense: Mask,
    policy,
    batches: Callable[[int], object],
    step_loss: Callable,
    generator: torch.Generator,
) -> Mask:
    """The PAI mask of `model` at its initial weights, to the weights-remaining of IMP round `spec.round`."""
    target = Target(policy, dense, spec.round, spec.scope)
    model.train()
    if spec.method == "synflow":
        mask = dense
        shape = tuple(batches(0)[0].shape[1:])
        for step in range(1, spec.synflow_iterations + 1):
            mask = target.prune(synflow_scores(model, mask, shape), mask, step / spec.synflow_iterations)
    else:
        data = [batches(i) for i in range(spec.batches)]
        if spec.method == "snip":
            scores = snip_scores(model, dense, data, step_loss)
        elif spec.method == "grasp":
            scores = grasp_scores(model, dense, data)
        elif spec.method == "magnitude_init":
            params = dict(model.named_parameters())
            scores = {n: params[n].detach().abs() for n in dense}
        elif spec.method == "random":
            scores = {n: torch.rand(m.shape, generator=generator).to(m.device) for n, m in dense.layers.items()}
        else:
            raise ValueError(f"unknown pruning-at-initialization method {spec.method!r}")
        mask = target.prune(scores, dense)
    if spec.ablation == "shuffle":
        mask = random_mask_like(mask, within=dense, generator=generator)
    return mask
