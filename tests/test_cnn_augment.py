"""On-device crop + flip of whole batches, checked against a manual crop of a known image."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from lth.batches import ShuffledBatches, random_crop_flip
from lth.families import family_module

CNN = Path(__file__).resolve().parents[1] / "CNN"
data = family_module(CNN, "data")


def known_images(n: int) -> torch.Tensor:
    """Every pixel distinct and nonzero, so a crop's position and orientation can be read back."""
    return (torch.arange(n * 3 * 32 * 32, dtype=torch.float32) + 1).view(n, 3, 32, 32)


def test_crop_flip_matches_manual_crop():
    images = known_images(64)
    seed = 1234
    out = random_crop_flip(images, torch.Generator().manual_seed(seed), padding=4)
    # The same draws, in the same order, from a generator in the same state.
    generator = torch.Generator().manual_seed(seed)
    offsets = torch.randint(0, 9, (2, 64), generator=generator)
    flips = torch.rand(64, generator=generator) < 0.5
    padded = F.pad(images, (4, 4, 4, 4))
    for i in range(64):
        top, left = offsets[0, i].item(), offsets[1, i].item()
        expected = padded[i, :, top : top + 32, left : left + 32]
        if flips[i]:
            expected = expected.flip(-1)
        assert torch.equal(out[i], expected), i
    assert out.shape == images.shape and out.dtype == images.dtype
    assert 0 < int(flips.sum()) < 64
    # Offsets of 0 and 8 occur in 64 draws (p > 0.9999), so zero padding shows up somewhere.
    assert (out == 0).any()


def test_identity_crop_and_flip_read_back():
    image = known_images(1)
    identity_seen = flip_seen = False
    for seed in range(200):
        out = random_crop_flip(image, torch.Generator().manual_seed(seed))[0]
        if torch.equal(out, image[0]):
            identity_seen = True
        if torch.equal(out, image[0].flip(-1)):
            flip_seen = True
    assert identity_seen and flip_seen  # centre crop (offset 4,4) unflipped and flipped both occur


def test_augmented_batches_are_a_function_of_the_iteration():
    x = known_images(120)
    y = torch.arange(120) % 10
    batches = ShuffledBatches(x, y, 60, seed=3, augment=data.augmentation(True))
    first = batches(5)
    again = ShuffledBatches(x, y, 60, seed=3, augment=data.augmentation(True))(5)
    assert torch.equal(first[0], again[0]) and torch.equal(first[1], again[1])
    plain = ShuffledBatches(x, y, 60, seed=3, augment=data.augmentation(False))(5)
    assert torch.equal(plain[1], first[1]) and not torch.equal(plain[0], first[0])
    assert data.augmentation(False) is None
