"""Image datasets kept whole on the training device, with a seeded validation split.

Offline, MNIST and CIFAR-10 are read straight from the data root's standard layouts (the IDX files,
the pickled CIFAR batches); online, missing files are fetched through torchvision first. Images are
normalised once, at load time; batches are sliced from device tensors. Loads in one process share their device
tensors while anything holds them: the runs of a batch that share a seed share one copy of their splits, and every
seed shares one test set (20 batched CIFAR-10 runs of 5 seeds hold 5 training sets, not 20).
"""

from __future__ import annotations

import gzip
import os
import pickle
import struct
import weakref
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np
import torch

from lth.errors import UserError

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2023, 0.1994, 0.2010)


def resolve_data_root(flag: str | None) -> Path:
    """`--data_dir`, else $LTH_DATA_DIR, else ./data."""
    return Path(flag or os.environ.get("LTH_DATA_DIR") or "data")


@dataclass(frozen=True)
class ImageData:
    """Train / validation / test tensors, normalised, on one device (frozen: loads may share it; derive a variant
    with `dataclasses.replace`)."""

    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    def to(self, device: torch.device | str) -> ImageData:
        fields = {k: v.to(device) if torch.is_tensor(v) else v for k, v in self.__dict__.items()}
        return ImageData(**fields)


def split_validation(x: torch.Tensor, y: torch.Tensor, val_size: int, seed: int):
    """Hold out `val_size` training examples, chosen by a seeded permutation."""
    if not 0 < val_size < len(x):
        raise UserError(f"validation size {val_size} must be between 1 and {len(x) - 1}")
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    val, train = order[:val_size], order[val_size:]
    return x[train], y[train], x[val], y[val]


def _normalise(images: torch.Tensor, mean, std) -> torch.Tensor:
    mean = torch.tensor(mean).view(1, -1, 1, 1)
    std = torch.tensor(std).view(1, -1, 1, 1)
    return (images.float() / 255.0 - mean) / std


# Device tensors of earlier loads, alive while a run holds them. Keys carry the files' inodes, sizes and times, so
# rewritten files are read again.
_on_device: weakref.WeakValueDictionary = weakref.WeakValueDictionary()


def _assemble(files: list[Path], decode: Callable[[], tuple], val_size: int, seed: int, device, num_classes: int):
    """The split of seed `seed` on `device`, from the tensors an earlier load holds there where it can
    (`decode` reads the files into normalised train_x, train_y, test_x, test_y only when something is missing)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:  # "cuda" and "cuda:0" are one device: one copy
        device = torch.device("cuda", torch.cuda.current_device())
    stamps = [(str(f.resolve()), f.stat()) for f in files]
    source = (tuple((path, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns) for path, s in stamps), str(device))
    names = [f.name for f in fields(ImageData) if f.name != "num_classes"]
    keys = {n: (*source, n) if n.startswith("test") else (*source, val_size, seed, n) for n in names}
    tensors = {n: _on_device.get(keys[n]) for n in names}
    if any(t is None for t in tensors.values()):
        train_x, train_y, test_x, test_y = decode()
        fresh = dict(zip(names, (*split_validation(train_x, train_y, val_size, seed), test_x, test_y), strict=True))
        for n in names:
            tensors[n] = _on_device.get(keys[n])
            if tensors[n] is None:
                tensors[n] = _on_device[keys[n]] = fresh[n].to(device)
    return ImageData(**tensors, num_classes=num_classes)


# --- MNIST --------------------------------------------------------------------------------
def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", data[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
        array = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
        if array.size != int(np.prod(shape)):
            raise ValueError(f"holds {array.size} bytes of data, header says {int(np.prod(shape))}")
        return array.reshape(shape)
    except (OSError, EOFError, ValueError, struct.error) as error:
        raise UserError(f"MNIST file {path} is unreadable or truncated ({error})") from None


def _find_mnist_file(raw: Path, stem: str) -> Path | None:
    for candidate in (raw / stem, raw / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


MNIST_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


def _download_mnist(root: Path) -> None:
    try:
        import torchvision

        torchvision.datasets.MNIST(str(root), train=True, download=True)
        torchvision.datasets.MNIST(str(root), train=False, download=True)
    except Exception as error:
        raise UserError(
            f"MNIST not found under {root / 'MNIST' / 'raw'} and the download failed ({type(error).__name__}); "
            f"put train/t10k *-ubyte[.gz] files there, or point --data_dir / LTH_DATA_DIR at a folder that has them"
        ) from None


def load_mnist(root: Path, device: torch.device | str = "cpu", val_size: int = 5000, seed: int = 0) -> ImageData:
    raw = root / "MNIST" / "raw"
    paths = {key: _find_mnist_file(raw, stem) for key, stem in MNIST_FILES.items()}
    if any(p is None for p in paths.values()):
        _download_mnist(root)
        paths = {key: _find_mnist_file(raw, stem) for key, stem in MNIST_FILES.items()}

    def decode():
        arrays = {key: _read_idx(path) for key, path in paths.items()}
        for split in ("train", "test"):
            if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
                raise UserError(f"MNIST {split} images and labels under {raw} have different lengths")
        images = {
            k: _normalise(torch.from_numpy(arrays[k].copy()).unsqueeze(1), MNIST_MEAN, MNIST_STD)
            for k in ("train_x", "test_x")
        }
        labels = {k: torch.from_numpy(arrays[k].astype(np.int64)) for k in ("train_y", "test_y")}
        return images["train_x"], labels["train_y"], images["test_x"], labels["test_y"]

    return _assemble(list(paths.values()), decode, val_size, seed, device, 10)


# --- CIFAR-10 -----------------------------------------------------------------------------
def _read_cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    try:
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="bytes")
        data = np.asarray(batch[b"data"] if b"data" in batch else batch["data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"] if b"labels" in batch else batch["labels"], dtype=np.int64)
    except Exception as error:
        raise UserError(f"CIFAR-10 batch {path} is unreadable ({type(error).__name__}: {error})") from None
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(labels) != len(data):
        raise UserError(f"CIFAR-10 batch {path} has data of shape {data.shape}; expected (N, 3072) with N labels")
    return data.reshape(-1, 3, 32, 32), labels


def _download_cifar10(root: Path) -> None:
    try:
        import torchvision

        torchvision.datasets.CIFAR10(str(root), train=True, download=True)
    except Exception as error:
        raise UserError(
            f"CIFAR-10 not found under {root / 'cifar-10-batches-py'} and the download failed ({type(error).__name__}); "
            f"put data_batch_1..5 and test_batch there, or point --data_dir / LTH_DATA_DIR at a folder that has them"
        ) from None


def load_cifar10(root: Path, device: torch.device | str = "cpu", val_size: int = 5000, seed: int = 0) -> ImageData:
    folder = root / "cifar-10-batches-py"
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    if not all((folder / n).is_file() for n in names):
        _download_cifar10(root)

    def decode():
        train = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
        test_x, test_y = _read_cifar_batch(folder / "test_batch")
        train_x = _normalise(torch.from_numpy(np.concatenate([b[0] for b in train])), CIFAR10_MEAN, CIFAR10_STD)
        train_y = torch.from_numpy(np.concatenate([b[1] for b in train]))
        test_x = _normalise(torch.from_numpy(test_x.copy()), CIFAR10_MEAN, CIFAR10_STD)
        return train_x, train_y, test_x, torch.from_numpy(test_y)

    return _assemble([folder / n for n in names], decode, val_size, seed, device, 10)


# --- random images (timings, device checks) --------------------------------------------------
def random_images(
    shape: tuple[int, ...], sizes: tuple[int, int, int], device: torch.device | str = "cpu", seed: int = 0
) -> ImageData:
    """Random images and labels (10 classes) of one shape, with (train, validation, test) sizes: for timings and
    device checks, where pixel values do not matter and no dataset has to be present."""
    generator = torch.Generator().manual_seed(seed)

    def split(n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.randn(n, *shape, generator=generator), torch.randint(0, 10, (n,), generator=generator)

    return ImageData(*split(sizes[0]), *split(sizes[1]), *split(sizes[2]), num_classes=10).to(device)


# --- scikit-learn's bundled 8x8 digits (offline demo) ---------------------------------------
def load_digits(device: torch.device | str = "cpu", seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """1,797 8x8 digit images shipped with scikit-learn: a real dataset that needs no download."""
    from sklearn.datasets import load_digits as sklearn_digits

    bunch = sklearn_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = (x - x.mean()) / x.std()
    y = torch.tensor(bunch.target, dtype=torch.int64)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(10_000 + seed))
    n_test = int(len(x) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    # Validation proportional to MNIST's 5,000 of 60,000.
    val_size = max(1, round(len(train) * 5000 / 60000))
    tx, ty, vx, vy = split_validation(x[train], y[train], val_size, seed)
    return ImageData(tx, ty, vx, vy, x[test], y[test], num_classes=10).to(device)
