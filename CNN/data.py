"""CIFAR-10 for the Conv nets: 45,000 training / 5,000 validation (seeded) / 10,000 test images,
normalised once and kept on the device; optional random crop + flip of whole batches there."""

from __future__ import annotations

from lth.batches import random_crop_flip
from lth.datasets import ImageData, load_cifar10, resolve_data_root

from .settings import VALIDATION_SIZE


def load_data(data_dir: str | None, device: str, seed: int) -> ImageData:
    return load_cifar10(resolve_data_root(data_dir), device=device, val_size=VALIDATION_SIZE, seed=seed)


def augmentation(enabled: bool):
    """Off by default, as in Frankle & Carbin; `--augment` turns on 4-pixel crop + horizontal flip."""
    return random_crop_flip if enabled else None
