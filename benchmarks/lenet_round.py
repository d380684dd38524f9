"""Time one LeNet-300-100 IMP round on real MNIST three ways, in one run, on one machine.

- baseline: the way the earlier study did it: a torchvision-style Dataset of PIL images with
  per-sample ToTensor + Normalize, a DataLoader for training, and evaluation through DataLoaders
  (batch 1,000) on the validation and test sets;
- toolkit:  this project's LeNet entry path (device-resident data, `train_round`, IMP bookkeeping
  and result files included), via `run_imp` for round 0;
- bare:     a loop written for this benchmark alone (data as one tensor, LeNet, Adam, one big
  evaluation batch, nothing else): the floor.

Same model, optimiser, batch size (60), iterations (2,000) and evaluation schedule (every 100
iterations on 5,000 validation and 10,000 test images) for all three.

    python benchmarks/lenet_round.py [--iterations 2000] [--data_dir ../shared/data] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # lth, where the repository is not installed
from lth.datasets import load_mnist, resolve_data_root  # noqa: E402
from lth.families import family_module  # noqa: E402
from lth.imp import IMPSettings, run_imp  # noqa: E402
from lth.results import RunDirectory  # noqa: E402
from lth.training import evaluate_classifier  # noqa: E402

LeNet300100 = family_module(REPO / "Lenet-300-100", "models").LeNet300100
LenetSettings = family_module(REPO / "Lenet-300-100", "settings").LenetSettings
build_recipe = family_module(REPO / "Lenet-300-100", "trainer").build_recipe

BATCH, LR, EVAL_EVERY = 60, 1.2e-3, 100


def time_toolkit(root: Path, iterations: int) -> float:
    started = time.perf_counter()
    data = load_mnist(root, "cpu", val_size=5000, seed=42)
    with tempfile.TemporaryDirectory() as tmp:
        args = LenetSettings(
            lr=LR,
            batch_size=BATCH,
            seed=42,
            train_iterations=iterations,
            eval_every=EVAL_EVERY,
            checkpoint_every=0,
            rounds=0,
            output_dir=tmp,
        )
        recipe = build_recipe(args, data, "cpu")
        with RunDirectory(tmp, args) as run:
            run_imp(run, recipe, IMPSettings(rounds=0, seed=42), quiet=True)
    return time.perf_counter() - started


def time_bare(root: Path, iterations: int) -> float:
    started = time.perf_counter()
    data = load_mnist(root, "cpu", val_size=5000, seed=42)
    torch.manual_seed(42)
    model = LeNet300100()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    generator = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.train_x), generator=generator)
    position = 0
    for iteration in range(iterations + 1):
        if iteration % EVAL_EVERY == 0:
            evaluate_classifier(model, data.val_x, data.val_y, 10_000)
            evaluate_classifier(model, data.test_x, data.test_y, 10_000)
        if iteration == iterations:
            break
        if position + BATCH > len(order):
            order, position = torch.randperm(len(data.train_x), generator=generator), 0
        index = order[position : position + BATCH]
        position += BATCH
        loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return time.perf_counter() - started


def time_baseline(root: Path, iterations: int) -> float:
    """The earlier study's data path: PIL images through per-sample transforms and DataLoaders."""
    from PIL import Image
    from torch.utils.data import DataLoader, Dataset, random_split
    from torchvision import transforms

    from lth.datasets import MNIST_FILES, _find_mnist_file, _read_idx

    started = time.perf_counter()
    raw = root / "MNIST" / "raw"
    arrays = {k: _read_idx(_find_mnist_file(raw, stem)) for k, stem in MNIST_FILES.items()}
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))])

    class MNISTLike(Dataset):
        def __init__(self, images: np.ndarray, labels: np.ndarray):
            self.images, self.labels = images, labels

        def __len__(self) -> int:
            return len(self.labels)

        def __getitem__(self, i):
            return transform(Image.fromarray(self.images[i], mode="L")), int(self.labels[i])

    full = MNISTLike(arrays["train_x"], arrays["train_y"])
    train, val = random_split(full, [55_000, 5_000], generator=torch.Generator().manual_seed(42))
    test = MNISTLike(arrays["test_x"], arrays["test_y"])
    train_loader = DataLoader(train, batch_size=BATCH, shuffle=True)
    val_loader, test_loader = DataLoader(val, batch_size=1000), DataLoader(test, batch_size=1000)

    def evaluate(loader):
        model.eval()
        correct, loss = 0, 0.0
        with torch.no_grad():
            for x, y in loader:
                out = model(x)
                loss += F.cross_entropy(out, y).item()
                correct += (out.argmax(1) == y).sum().item()
        model.train()
        return loss, correct

    torch.manual_seed(42)
    model = LeNet300100()
    optimizer = torch.optim.Adam(model.parameters(), lr=LR)
    iteration, batches = 0, iter(train_loader)
    while True:
        if iteration % EVAL_EVERY == 0:
            evaluate(val_loader)
            evaluate(test_loader)
        if iteration == iterations:
            break
        try:
            x, y = next(batches)
        except StopIteration:
            batches = iter(train_loader)
            x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        iteration += 1
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=2000)
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = resolve_data_root(args.data_dir)
    cpu = next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor(),
    )
    print(
        f"LeNet-300-100, one IMP round: {args.iterations} iterations, batch {BATCH}, eval every {EVAL_EVERY} on 5k val + 10k test"
    )
    print(f"machine: {cpu}, {torch.get_num_threads()} torch threads, torch {torch.__version__}, CPU")
    times = {}
    for name, function in (
        ("baseline (earlier study)", time_baseline),
        ("toolkit", time_toolkit),
        ("bare loop", time_bare),
    ):
        times[name] = function(root, args.iterations)
        print(f"  {name:<26} {times[name]:7.1f} s", flush=True)
    base, ours, bare = times["baseline (earlier study)"], times["toolkit"], times["bare loop"]
    print(f"toolkit vs baseline: {base / ours:.1f}x faster; toolkit vs bare loop: {ours / bare:.2f}x the floor's time")


if __name__ == "__main__":
    main()
