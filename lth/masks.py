"""Masks kept apart from the weights: which entries of each prunable weight survive.

A `Mask` maps a parameter name (as in `model.named_parameters()`) to a boolean tensor of that
weight's shape; True means the weight survives. Sparsity is always measured over the prunable
weights the mask covers, never over biases, norms or embeddings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

import torch
from torch import nn

from lth.errors import UserError


def default_prunable_names(model: nn.Module) -> list[str]:
    """Weight matrices of every conv and linear layer, in module order (never biases or norms)."""
    names = []
    for module_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            names.append(f"{module_name}.weight" if module_name else "weight")
    return names


class Mask:
    """Per-layer boolean survival masks over a model's prunable weights."""

    def __init__(self, layers: dict[str, torch.Tensor]):
        self.layers = {name: tensor.to(torch.bool) for name, tensor in layers.items()}

    # --- construction -------------------------------------------------------------------
    @classmethod
    def dense(cls, model: nn.Module, names: Iterable[str] | None = None) -> Mask:
        params = dict(model.named_parameters())
        names = list(names) if names is not None else default_prunable_names(model)
        missing = [n for n in names if n not in params]
        if missing:
            raise ValueError(f"not parameters of the model: {missing}")
        return cls({n: torch.ones_like(params[n], dtype=torch.bool) for n in names})

    @classmethod
    def from_nonzero(cls, weights: dict[str, torch.Tensor], names: Iterable[str]) -> Mask:
        """Recover a mask from the zeros of saved weights (for files that stored no mask)."""
        return cls({n: weights[n] != 0 for n in names})

    # --- mapping protocol ---------------------------------------------------------------
    def __getitem__(self, name: str) -> torch.Tensor:
        return self.layers[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    def names(self) -> list[str]:
        return list(self.layers)

    def clone(self) -> Mask:
        return Mask({n: m.clone() for n, m in self.layers.items()})

    def to(self, device: torch.device | str) -> Mask:
        return Mask({n: m.to(device) for n, m in self.layers.items()})

    def equals(self, other: Mask) -> bool:
        return self.names() == other.names() and all(torch.equal(self[n].cpu(), other[n].cpu()) for n in self)

    # --- counting -----------------------------------------------------------------------
    def kept_counts(self) -> dict[str, int]:
        return {n: int(m.sum()) for n, m in self.layers.items()}

    def total_counts(self) -> dict[str, int]:
        return {n: m.numel() for n, m in self.layers.items()}

    def kept(self) -> int:
        return sum(self.kept_counts().values())

    def total(self) -> int:
        return sum(self.total_counts().values())

    def sparsity(self) -> float:
        """Fraction of the covered weights that are pruned, in [0, 1]."""
        return 1.0 - self.kept() / self.total()

    def layer_sparsity(self) -> dict[str, float]:
        return {n: 1.0 - int(m.sum()) / m.numel() for n, m in self.layers.items()}

    def weights_remaining_pct(self) -> float:
        return 100.0 * self.kept() / self.total()

    # --- applying -----------------------------------------------------------------------
    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero every pruned weight in place."""
        params = dict(model.named_parameters())
        for name, keep in self.layers.items():
            param = params[name]
            param.mul_(keep.to(device=param.device, dtype=param.dtype))

    def enforcer(self, model: nn.Module) -> Callable[[], None]:
        """A fast closure that re-zeroes pruned weights; call it after every optimiser step.

        Zeroing the weights themselves (not only their gradients) keeps them at exactly zero
        whatever momentum, Adam's moments or weight decay would do.
        """
        params = dict(model.named_parameters())
        targets = [params[n] for n in self.layers]
        factors = [m.to(device=p.device, dtype=p.dtype) for m, p in zip(self.layers.values(), targets, strict=True)]

        @torch.no_grad()
        def enforce() -> None:
            torch._foreach_mul_(targets, factors)

        return enforce

    # --- combining ----------------------------------------------------------------------
    def check_compatible(self, other: Mask, what: str = "masks") -> None:
        if self.names() != other.names():
            only_a = sorted(set(self.names()) - set(other.names()))[:3]
            only_b = sorted(set(other.names()) - set(self.names()))[:3]
            raise UserError(f"{what} cover different layers (only in first: {only_a}, only in second: {only_b})")
        for n in self:
            if self[n].shape != other[n].shape:
                raise UserError(
                    f"{what} disagree on the shape of {n}: {tuple(self[n].shape)} vs {tuple(other[n].shape)}"
                )

    def union(self, other: Mask) -> Mask:
        self.check_compatible(other)
        return Mask({n: self[n] | other[n].to(self[n].device) for n in self})

    def intersection(self, other: Mask) -> Mask:
        self.check_compatible(other)
        return Mask({n: self[n] & other[n].to(self[n].device) for n in self})

    def jaccard(self, other: Mask) -> float:
        """Overlap of the surviving weights: |A and B| / |A or B| (1.0 for two empty masks)."""
        self.check_compatible(other)
        both = sum(int((self[n] & other[n].to(self[n].device)).sum()) for n in self)
        either = sum(int((self[n] | other[n].to(self[n].device)).sum()) for n in self)
        return 1.0 if either == 0 else both / either

    def layer_jaccard(self, other: Mask) -> dict[str, float]:
        self.check_compatible(other)
        result = {}
        for n in self:
            a, b = self[n], other[n].to(self[n].device)
            either = int((a | b).sum())
            result[n] = 1.0 if either == 0 else int((a & b).sum()) / either
        return result

    # --- persistence --------------------------------------------------------------------
    def state_dict(self) -> dict[str, torch.Tensor]:
        return {n: m.detach().cpu().clone() for n, m in self.layers.items()}

    @classmethod
    def from_state_dict(cls, state: dict[str, torch.Tensor]) -> Mask:
        return cls({n: torch.as_tensor(m) for n, m in state.items()})

    def summary(self) -> str:
        lines = [f"{'layer':<50} {'kept':>12} {'total':>12} {'sparsity':>9}"]
        for n, m in self.layers.items():
            kept = int(m.sum())
            lines.append(f"{n:<50} {kept:>12,} {m.numel():>12,} {100 * (1 - kept / m.numel()):>8.2f}%")
        lines.append(
            f"{'all prunable weights':<50} {self.kept():>12,} {self.total():>12,} {100 * self.sparsity():>8.2f}%"
        )
        return "\n".join(lines)
