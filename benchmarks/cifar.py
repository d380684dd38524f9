"""CIFAR-10 speed: this toolkit's way vs the earlier study's way, same machine, one run.

(a) data path: one epoch of training batches (batch 60, random crop with 4-pixel padding, horizontal flip,
    normalisation) from device-resident tensors (`ShuffledBatches` + `random_crop_flip`, normalised once at
    load) vs a torchvision-style Dataset over uint8 HWC arrays with per-sample transforms (ToTensor,
    RandomCrop(32, 4), RandomHorizontalFlip, Normalize) and a DataLoader, as the earlier study did.
(b) one Conv-2 IMP round end to end: train N iterations (Adam, batch 60, no augmentation as in the paper),
    evaluate validation and test at the start and the end, prune layer-wise and rewind. Ours: the CNN
    family's recipe through `lth.imp.run_imp` (run directory, CSVs and state included). Baseline: DataLoader
    batches with ToTensor + Normalize per sample, gradients of pruned weights zeroed before each step,
    evaluation through DataLoaders at batch 60, quantile-threshold pruning, as the earlier CNN code did.

    python benchmarks/cifar.py                           # both parts, CPU-sized defaults (about 3 minutes on an idle 2-core CPU)
    python benchmarks/cifar.py --part data --epochs 1
    python benchmarks/cifar.py --part round --round_iterations 500 --eval_images 10000 --device cuda
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from lth.arguments import resolve_device
from lth.batches import ShuffledBatches, random_crop_flip
from lth.datasets import CIFAR10_MEAN, CIFAR10_STD, _read_cifar_batch, load_cifar10, resolve_data_root, split_validation
from lth.families import family_module
from lth.imp import IMPSettings, run_imp
from lth.masks import Mask
from lth.pruning import magnitude_scores
from lth.results import RunDirectory
from lth.rewinding import rewind

REPO = Path(__file__).resolve().parents[1]
SEED = 1
VALIDATION_SIZE = 5000


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


# --- the earlier study's way -----------------------------------------------------------------
class UInt8CIFAR(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: a PIL image from a uint8 HWC array, then the transforms."""

    def __init__(self, images_hwc: np.ndarray, labels: np.ndarray, transform):
        self.images, self.labels, self.transform = images_hwc, labels, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int):
        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def raw_split(root: Path) -> dict[str, np.ndarray]:
    """The same 45,000 / 5,000 split as the toolkit's, as uint8 HWC arrays for the per-sample pipeline."""
    folder = root / "cifar-10-batches-py"
    train = [_read_cifar_batch(folder / f"data_batch_{i}") for i in range(1, 6)]
    x = torch.from_numpy(np.concatenate([b[0] for b in train]))
    y = torch.from_numpy(np.concatenate([b[1] for b in train]))
    tx, ty, vx, vy = split_validation(x, y, VALIDATION_SIZE, SEED)
    test_x, test_y = _read_cifar_batch(folder / "test_batch")
    hwc = lambda t: np.ascontiguousarray(np.asarray(t).transpose(0, 2, 3, 1))  # noqa: E731
    return {
        "train_x": hwc(tx),
        "train_y": ty.numpy(),
        "val_x": hwc(vx),
        "val_y": vy.numpy(),
        "test_x": hwc(test_x),
        "test_y": test_y,
    }


NORMALIZE = transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD)
AUGMENTED = transforms.Compose(
    [transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(), NORMALIZE]
)
PLAIN = transforms.Compose([transforms.ToTensor(), NORMALIZE])


def loader(images, labels, transform, batch_size: int, shuffle: bool, workers: int) -> DataLoader:
    return DataLoader(
        UInt8CIFAR(images, labels, transform),
        batch_size=batch_size,
        shuffle=shuffle,
        num_workers=workers,
        drop_last=shuffle,
    )


# --- (a) data path ---------------------------------------------------------------------------
def time_data_path(raw, data, device: str, epochs: int, workers: int) -> tuple[float, float]:
    batches = ShuffledBatches(data.train_x, data.train_y, 60, seed=SEED, augment=random_crop_flip)
    synchronize(device)
    start = time.perf_counter()
    checksum = torch.zeros((), device=device)
    for iteration in range(epochs * batches.steps_per_epoch):
        x, _ = batches(iteration)
        checksum += x[0, 0, 0, 0]  # touch each batch without waiting on the device
    synchronize(device)
    ours = time.perf_counter() - start

    torch.manual_seed(SEED)
    train_loader = loader(raw["train_x"], raw["train_y"], AUGMENTED, 60, shuffle=True, workers=workers)
    start = time.perf_counter()
    for _ in range(epochs):
        for x, _ in train_loader:
            x = x.to(device, non_blocking=True)
    synchronize(device)
    return ours, time.perf_counter() - start


# --- (b) one Conv-2 IMP round ----------------------------------------------------------------
def load_cnn():
    return tuple(family_module(REPO / "CNN", name) for name in ("main", "trainer", "models"))


def cnn_args(main, iterations: int, output_dir: str):
    return main.parse_args(
        [
            "--arch",
            "Conv-2",
            "--iterations",
            str(iterations),
            "--eval_every",
            str(iterations),
            "--prune_iterations",
            "0",
            "--seed",
            str(SEED),
            "--output_dir",
            output_dir,
            "--quiet",
        ]
    )


def time_round_ours(main, trainer, data, iterations: int, device: str) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as output_dir:
        args = cnn_args(main, iterations, output_dir)
        synchronize(device)
        start = time.perf_counter()
        recipe = trainer.build_recipe(args, data, device)
        run = RunDirectory(output_dir, args)
        with run:
            rows = run_imp(run, recipe, IMPSettings(rounds=0, seed=SEED), quiet=True)
            state = run.load_state()
        # The next round's pruning step and rewind (what run_imp does at the start of round 1).
        model = recipe.model_factory().to(device)
        mask = Mask.from_state_dict(state["mask"])
        mask = recipe.policy.prune(magnitude_scores(state["trained"], mask), mask).to(device)
        rewind(model, state["init"], mask)
        synchronize(device)
        return time.perf_counter() - start, rows[0]["test_accuracy_final"]


def time_round_baseline(
    models, raw, iterations: int, eval_images: int, device: str, workers: int
) -> tuple[float, float]:
    torch.manual_seed(SEED)
    synchronize(device)
    start = time.perf_counter()
    model = models.build_model("Conv-2").to(device)
    initial = copy.deepcopy(model.state_dict())
    masks = {n: torch.ones_like(p) for n, p in model.named_parameters() if n.endswith("weight")}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-4)
    train_loader = loader(raw["train_x"], raw["train_y"], PLAIN, 60, shuffle=True, workers=workers)
    eval_loaders = [
        loader(raw[f"{s}_x"][:eval_images], raw[f"{s}_y"][:eval_images], PLAIN, 60, False, workers)
        for s in ("val", "test")
    ]

    def evaluate() -> float:
        """Validation then test, batch by batch; returns test accuracy (%)."""
        model.eval()
        with torch.no_grad():
            for eval_loader in eval_loaders:
                correct = total = 0
                for x, y in eval_loader:
                    x, y = x.to(device), y.to(device)
                    logits = model(x)
                    F.cross_entropy(logits, y).item()
                    correct += (logits.argmax(1) == y).sum().item()
                    total += len(y)
        model.train()
        return 100.0 * correct / total

    evaluate()
    step = 0
    while step < iterations:
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad()
            loss.backward()
            for name, param in model.named_parameters():
                if name in masks:
                    param.grad *= masks[name]
            optimizer.step()
            step += 1
            if step == iterations:
                break
    accuracy = evaluate()
    # Layer-wise pruning by quantile threshold, then reset to the initial weights and re-apply the mask.
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name in masks:
                rate = 0.1 if "features" in name else 0.2
                alive = param[masks[name].bool()].abs()
                threshold = torch.quantile(alive.float().cpu(), rate).to(device)
                masks[name] = masks[name] * (param.abs() > threshold).float()
        model.load_state_dict(initial)
        for name, param in model.named_parameters():
            if name in masks:
                param.mul_(masks[name])
    synchronize(device)
    return time.perf_counter() - start, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["data", "round", "all"], default="all")
    parser.add_argument("--epochs", type=int, default=1, help="(a) epochs of batches to time")
    parser.add_argument("--round_iterations", type=int, default=60, help="(b) training iterations in the round")
    parser.add_argument(
        "--eval_images",
        type=int,
        default=1000,
        help="(b) validation and test images evaluated (each), at the start and end of the round",
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="baseline DataLoader workers (the earlier code used the default, 0)"
    )
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch intra-op threads (0: torch's default); 1 avoids thread thrashing on a busy CPU",
    )
    args = parser.parse_args()
    device = resolve_device(args.device)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    root = resolve_data_root(args.data_dir or os.environ.get("LTH_DATA_DIR") or str(REPO.parent / "shared" / "data"))

    print(
        f"machine: {cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"device {device}" + (f" ({torch.cuda.get_device_name()})" if device.startswith("cuda") else "")
    )
    start = time.perf_counter()
    data = load_cifar10(root, device=device, val_size=VALIDATION_SIZE, seed=SEED)
    print(f"toolkit load + normalise once + move to {device}: {time.perf_counter() - start:.2f} s (once per run)")
    raw = raw_split(root)

    if args.part in ("data", "all"):
        ours, baseline = time_data_path(raw, data, device, args.epochs, args.workers)
        print(
            f"(a) data path, {args.epochs} epoch(s) of 750 batches of 60 with crop + flip + normalise: "
            f"on-device {ours:.2f} s, DataLoader + per-sample transforms ({args.workers} workers) {baseline:.2f} s, "
            f"ratio {baseline / ours:.1f}x"
        )
    if args.part in ("round", "all"):
        main_module, trainer, models = load_cnn()
        n = args.eval_images
        data = dataclasses.replace(
            data, val_x=data.val_x[:n], val_y=data.val_y[:n], test_x=data.test_x[:n], test_y=data.test_y[:n]
        )
        ours, ours_acc = time_round_ours(main_module, trainer, data, args.round_iterations, device)
        baseline, base_acc = time_round_baseline(
            models, raw, args.round_iterations, args.eval_images, device, args.workers
        )
        print(
            f"(b) one Conv-2 IMP round ({args.round_iterations} iterations of batch 60, {args.eval_images} validation + "
            f"{args.eval_images} test images evaluated at start and end, prune + rewind): ours {ours:.2f} s "
            f"(test acc {ours_acc:.1f}%), baseline {baseline:.2f} s (test acc {base_acc:.1f}%), ratio {baseline / ours:.2f}x"
        )


if __name__ == "__main__":
    sys.exit(main())
