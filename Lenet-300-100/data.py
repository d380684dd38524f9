"""MNIST for LeNet: 55,000 training / 5,000 validation (seeded) / 10,000 test images, on the device."""

from __future__ import annotations

from lth.datasets import ImageData, load_mnist, resolve_data_root

VALIDATION_SIZE = 5000


def load_data(data_dir: str | None, device: str, seed: int) -> ImageData:
    return load_mnist(resolve_data_root(data_dir), device=device, val_size=VALIDATION_SIZE, seed=seed)
