"""CIFAR-10 for VGG: 45,000 training / 5,000 validation (seeded) / 10,000 test images, on the device,
normalised once; training batches get a random crop (padding 4) and horizontal flip, whole batch at a time."""

from __future__ import annotations

from lth.batches import ShuffledBatches, random_crop_flip
from lth.datasets import ImageData, load_cifar10, resolve_data_root

from .settings import VALIDATION_SIZE


def load_data(data_dir: str | None, device: str, seed: int) -> ImageData:
    return load_cifar10(resolve_data_root(data_dir), device=device, val_size=VALIDATION_SIZE, seed=seed)


def training_batches(
    data: ImageData, batch_size: int, seed: int, augment: bool = True, augment_seed: int | None = None
) -> ShuffledBatches:
    return ShuffledBatches(
        data.train_x,
        data.train_y,
        batch_size,
        seed=seed,
        augment=random_crop_flip if augment else None,
        augment_seed=augment_seed,
    )
