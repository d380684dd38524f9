"""Training batches sliced from device-resident tensors, reproducible from the iteration alone.

The order of epoch e is a permutation drawn from a generator seeded with (seed, e), and the
augmentation of iteration i from (augment_seed, i) (by default the same seed), so a resumed run needs nothing but the iteration count
to see exactly the batches an uninterrupted run would have seen.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from lth.rewinding import derived_seed


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def random_crop_flip(images: torch.Tensor, generator: torch.Generator, padding: int = 4) -> torch.Tensor:
    """Whole-batch random crop (zero padding) and horizontal flip on the images' device.

    One flat gather per channel plane; the flip is folded into the column indices, so the batch is
    read once (the same draws, in the same order, as a crop followed by a flip).
    """
    n, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    offsets = torch.randint(0, 2 * padding + 1, (2, n), device=images.device, generator=generator)
    flip = torch.rand(n, device=images.device, generator=generator) < 0.5
    rows = offsets[0].view(n, 1) + torch.arange(h, device=images.device)
    columns = torch.arange(w, device=images.device).expand(n, w)
    columns = torch.where(flip.view(n, 1), columns.flip(1), columns) + offsets[1].view(n, 1)
    padded_width = w + 2 * padding
    plane_index = (rows.view(n, h, 1) * padded_width + columns.view(n, 1, w)).view(n, 1, h * w)
    flat = padded.reshape(n, c, -1).gather(2, plane_index.expand(n, c, h * w))
    return flat.view(n, c, h, w)


class ShuffledBatches:
    """Batch `i` of a run: epoch-wise shuffled, full batches only (the last partial batch is dropped)."""

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        seed: int,
        augment: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
        augment_seed: int | None = None,
    ):
        if batch_size > len(x):
            raise ValueError(f"batch size {batch_size} exceeds the {len(x)} training examples")
        self.x, self.y, self.batch_size, self.seed, self.augment = x, y, batch_size, seed, augment
        self.augment_seed = seed if augment_seed is None else augment_seed  # its own seed, e.g. for instability runs
        self.steps_per_epoch = len(x) // batch_size
        self._epoch, self._order = -1, None

    def order(self, epoch: int) -> torch.Tensor:
        if epoch != self._epoch:
            generator = _generator(self.x.device, derived_seed(self.seed, 1, epoch))
            self._order = torch.randperm(len(self.x), device=self.x.device, generator=generator)
            self._epoch = epoch
        return self._order

    def __call__(self, iteration: int) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, step = divmod(iteration, self.steps_per_epoch)
        index = self.order(epoch)[step * self.batch_size : (step + 1) * self.batch_size]
        x, y = self.x[index], self.y[index]
        if self.augment is not None:
            x = self.augment(x, _generator(self.x.device, derived_seed(self.augment_seed, 2, iteration)))
        return x, y
