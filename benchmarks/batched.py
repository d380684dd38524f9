"""Time R runs trained batched against the same R runs trained one after another, in one run, on one machine.

LeNet-300-100 on real MNIST (or Conv-2 on CIFAR-10 with --model conv2): R runs that differ in seed and run type,
one round of --iterations each, evaluated at its start and end, through the toolkit's own paths (`run_imp` per run,
`run_imp_batched` for all). Prints both times and their ratio.

    python benchmarks/batched.py [--runs 10] [--iterations 500] [--model lenet|conv2] [--device cpu|cuda] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lth.api import StudySettings  # noqa: E402
from lth.batched import Replicate, run_imp_batched  # noqa: E402
from lth.batches import ShuffledBatches  # noqa: E402
from lth.datasets import load_cifar10, load_mnist, resolve_data_root  # noqa: E402
from lth.imp import IMPRecipe, IMPSettings, run_imp  # noqa: E402
from lth.pruning import LayerwisePruning, conv_fc_rates  # noqa: E402
from lth.results import RunDirectory  # noqa: E402
from lth.sweep import _script_folder_on_path  # noqa: E402
from lth.training import RoundSchedule, image_evaluator  # noqa: E402

RUN_TYPES = ("winning_ticket", "random_reinit")


def model_factory(name: str):
    if name == "lenet":
        with _script_folder_on_path(REPO / "Lenet-300-100"):
            from models import LeNet300100
        return LeNet300100
    with _script_folder_on_path(REPO / "CNN"):
        from models import build_model
    return lambda: build_model("Conv-2", 0.0)


def recipes(
    name: str, data, runs: int, iterations: int, device: str
) -> list[tuple[IMPRecipe, IMPSettings, StudySettings]]:
    factory = model_factory(name)
    out = []
    for index in range(runs):
        seed, run_type = index // len(RUN_TYPES), RUN_TYPES[index % len(RUN_TYPES)]
        recipe = IMPRecipe(
            arch=name,
            model_factory=factory,
            policy=LayerwisePruning(conv_fc_rates(factory(), 0.1, 0.2)),
            make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1.2e-3),
            batches=ShuffledBatches(data.train_x, data.train_y, 60, seed=seed),
            evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y, batch_size=1000),
            schedule=RoundSchedule(iterations, eval_every=iterations),
            device=device,
        )
        settings = StudySettings(name=f"bench-{name}", seed=seed, run_type=run_type, rounds=0, energy=False)
        out.append((recipe, IMPSettings(rounds=0, seed=seed, run_type=run_type), settings))
    return out


def synchronize(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--iterations", type=int, default=500)
    parser.add_argument("--model", choices=["lenet", "conv2"], default="lenet")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--data_dir", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    root = resolve_data_root(args.data_dir)
    loader = load_mnist if args.model == "lenet" else load_cifar10
    data = loader(root, args.device, val_size=5000, seed=0)
    jobs = recipes(args.model, data, args.runs, args.iterations, args.device)
    with tempfile.TemporaryDirectory() as tmp:
        synchronize(args.device)
        started = time.perf_counter()
        for recipe, cfg, settings in jobs:
            with RunDirectory(Path(tmp) / "alone", settings) as run:
                run_imp(run, recipe, cfg, quiet=True)
        synchronize(args.device)
        alone = time.perf_counter() - started
        runs = [RunDirectory(Path(tmp) / "batched", settings).open() for _, _, settings in jobs]
        started = time.perf_counter()
        run_imp_batched(
            [Replicate(run, recipe, cfg) for run, (recipe, cfg, _) in zip(runs, jobs, strict=True)], quiet=True
        )
        synchronize(args.device)
        batched = time.perf_counter() - started
        for run in runs:
            run.close()
    device = torch.cuda.get_device_name(0) if args.device.startswith("cuda") else platform.processor() or "cpu"
    print(
        f"{args.runs} {args.model} runs x {args.iterations} iterations on {args.device} ({device}), {args.threads} thread(s), torch {torch.__version__}"
    )
    print(f"  one after another   {alone:8.1f} s")
    print(f"  batched             {batched:8.1f} s")
    print(f"batched vs one after another: {alone / batched:.2f}x")


if __name__ == "__main__":
    main()
