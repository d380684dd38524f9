"""VGG's training recipe (Frankle & Carbin; Frankle et al. 2019): SGD with momentum 0.9, weight decay
1e-4, batch 64, lr 0.1 dropped 10x at 50% and 75% of training, optional linear warmup, crop + flip.

The flags that define a round's training live here, so `train.py` (the dense round) and `main.py`
(the IMP rounds) parse them identically and a dense round trained by one can be reused by the other.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from data import ImageData, steps_per_epoch, training_batches
from models import ARCH, conv_weight_names, vgg19
from pruning import vgg_pruning

from lth.arguments import add_device_argument, non_negative_int, positive_float, positive_int
from lth.errors import UserError
from lth.imp import IMPRecipe
from lth.results import run_name
from lth.training import RoundSchedule, image_evaluator

RESULTS_DIR = Path(__file__).resolve().parent / "results"

# The settings that decide what round 0 (the dense round) computes: a dense run is reused only if they agree.
DENSE_SETTINGS = (
    "seed",
    "width",
    "train_iterations",
    "lr",
    "momentum",
    "wd",
    "batch_size",
    "warmup_iterations",
    "milestones",
    "gamma",
    "eval_every",
    "augment",
)


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seed", type=int, default=42, help="seed of the init, the batch order and the controls")
    parser.add_argument(
        "--width", type=positive_float, default=1.0, help="channel multiplier (1: VGG-19; 0.125 for CPU runs and tests)"
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=160, help="training length of every round, in epochs of 45,000 images"
    )
    parser.add_argument(
        "--train_iterations",
        type=positive_int,
        default=None,
        help="training length of every round in iterations (overrides --epochs)",
    )
    parser.add_argument("--bs", "--batch_size", dest="batch_size", type=positive_int, default=64)
    parser.add_argument(
        "--lr", "--learning-rate", dest="lr", type=positive_float, default=0.1, help="peak SGD learning rate"
    )
    parser.add_argument("--momentum", type=float, default=0.9)
    parser.add_argument("--wd", "--weight_decay", dest="wd", type=float, default=1e-4, help="SGD weight decay")
    parser.add_argument(
        "--schedule",
        type=positive_int,
        nargs="+",
        default=None,
        help="epochs at which lr drops by --gamma (default: at 50%% and 75%% of training)",
    )
    parser.add_argument("--gamma", type=positive_float, default=0.1, help="lr factor at each --schedule milestone")
    parser.add_argument(
        "--warmup_iterations", type=non_negative_int, default=0, help="linear lr warmup over the first N iterations"
    )
    parser.add_argument("--no_augment", dest="augment", action="store_false", help="train without random crop + flip")
    parser.add_argument(
        "--eval_every", type=positive_int, default=2000, help="evaluate validation and test every N iterations"
    )
    parser.add_argument(
        "--checkpoint_every",
        type=non_negative_int,
        default=2000,
        help="save progress every N iterations (0: per round only)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=argparse.SUPPRESS,
        help="accepted for compatibility; data stay on the device, no loader workers",
    )
    parser.add_argument(
        "--data_dir", default=None, help="data root holding cifar-10-batches-py/ (default: $LTH_DATA_DIR, else ./data)"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    add_device_argument(parser)


def finish_training_arguments(args: argparse.Namespace) -> argparse.Namespace:
    """Resolve the round length and lr milestones in iterations; drop flags that change nothing."""
    vars(args).pop("workers", None)
    per_epoch = steps_per_epoch(args.batch_size)
    if args.train_iterations is None:
        args.train_iterations = args.epochs * per_epoch
    total = args.train_iterations
    if args.schedule is None:
        args.milestones = [total // 2, (3 * total) // 4]
    else:
        args.milestones = [epoch * per_epoch for epoch in args.schedule]
    if args.warmup_iterations >= total:
        raise UserError(f"--warmup_iterations {args.warmup_iterations} must be below the {total} training iterations")
    if not args.width * 64 >= 0.5:
        raise UserError(f"--width {args.width} leaves VGG's first layer without channels; use at least 1/128")
    return args


def lr_schedule(
    lr: float, milestones: list[int], gamma: float = 0.1, warmup_iterations: int = 0
) -> Callable[[int], float]:
    """lr at iteration i: linear warmup to `lr` over `warmup_iterations`, then x gamma at each milestone."""

    def lr_at(iteration: int) -> float:
        scale = min(1.0, (iteration + 1) / warmup_iterations) if warmup_iterations else 1.0
        drops = sum(iteration >= m for m in milestones)
        return lr * scale * gamma**drops

    return lr_at


def make_sgd(args: argparse.Namespace) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    return lambda model: torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum, weight_decay=args.wd)


def build_recipe(args: argparse.Namespace, data: ImageData, device: str) -> IMPRecipe:
    def model_factory() -> torch.nn.Module:
        return vgg19(args.width)

    template = model_factory()
    return IMPRecipe(
        arch=ARCH,
        model_factory=model_factory,
        policy=vgg_pruning(template, getattr(args, "prune_rate", 0.2)),
        prunable_names=conv_weight_names(template),
        make_optimizer=make_sgd(args),
        batches=training_batches(data, args.batch_size, args.seed, augment=args.augment),
        evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y, batch_size=1000),
        schedule=RoundSchedule(args.train_iterations, args.eval_every, args.checkpoint_every),
        lr_at=lr_schedule(args.lr, args.milestones, args.gamma, args.warmup_iterations),
        device=device,
    )


def schedule_columns(args: argparse.Namespace) -> dict:
    """The rounds.csv columns that keep runs of other widths or schedules out of each other's figures."""
    return {
        "width": args.width,
        "train_iterations": args.train_iterations,
        "lr": args.lr,
        "batch_size": args.batch_size,
    }


def width_label(width: float) -> str:
    return f"{width:g}"


def dense_run_directory(args: argparse.Namespace) -> Path:
    """The dense round's run directory: train.py writes it, main.py looks for it (same name, same settings)."""
    return Path(args.output_dir) / run_name([("vgg19-w", width_label(args.width)), ("", "dense"), ("seed", args.seed)])
