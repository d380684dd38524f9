"""Conv-2/4/6 on CIFAR-10: layer-wise IMP, winning ticket vs random re-init (or random pruning), one run per call.

python main.py --arch Conv-2 --run_type winning_ticket --seed 1
python main.py --arch Conv-6 --run_type random_reinit --dropout_rate 0.5 --lr 2e-4 --seed 3
python main.py --mode plot                       # figures from every run under --output_dir
"""

from __future__ import annotations

from pathlib import Path

from data import VALIDATION_SIZE, load_data
from models import ARCHS
from plotter import plot_results
from pruning import CONV_RATE, FC_RATE, default_output_rate
from trainer import build_recipe

from lth.arguments import ArgumentParser, add_device_argument, fraction, non_negative_int, positive_float, positive_int
from lth.errors import UserError, user_facing
from lth.experiment import run_experiment
from lth.imp import IMPSettings
from lth.results import run_name

HERE = Path(__file__).resolve().parent
TRAINING_IMAGES = 50_000 - VALIDATION_SIZE
# Frankle & Carbin's per-arch schedule (the earlier configs: 24/30/36 epochs of 50,000 images at batch 60).
ARCH_LR = {"Conv-2": 2e-4, "Conv-4": 3e-4, "Conv-6": 3e-4}
ARCH_ITERATIONS = {"Conv-2": 20_000, "Conv-4": 25_000, "Conv-6": 30_000}
RUN_TYPES = ("winning_ticket", "random_reinit", "random_prune")


def parse_args(argv=None):
    parser = ArgumentParser(prog="CNN/main.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--mode", choices=["train", "plot"], default="train", help="train one run, or only draw figures"
    )
    parser.add_argument(
        "--run_type",
        choices=RUN_TYPES,
        default="winning_ticket",
        help="winning_ticket (rewind survivors to their init), random_reinit (same mask, fresh init), "
        "random_prune (random mask, same per-layer sparsity)",
    )
    parser.add_argument("--random_prune", action="store_true", help="same as --run_type random_prune")
    parser.add_argument("--arch", choices=list(ARCHS), default="Conv-6")
    parser.add_argument("--batch_size", type=positive_int, default=60)
    parser.add_argument(
        "--epochs",
        type=positive_int,
        default=None,
        help=f"epochs per round; one epoch = floor({TRAINING_IMAGES}/batch_size) iterations",
    )
    parser.add_argument(
        "--iterations",
        type=positive_int,
        default=None,
        help="iterations per round (overrides --epochs; default per arch: "
        + ", ".join(f"{a} {n}" for a, n in ARCH_ITERATIONS.items())
        + ")",
    )
    parser.add_argument(
        "--lr",
        type=positive_float,
        default=None,
        help="Adam learning rate (default per arch: " + ", ".join(f"{a} {v:g}" for a, v in ARCH_LR.items()) + ")",
    )
    parser.add_argument(
        "--prune_iterations", type=non_negative_int, default=20, help="pruning rounds after the dense round 0"
    )
    parser.add_argument(
        "--conv_prune_rate",
        type=fraction,
        default=None,
        help="fraction of remaining conv weights pruned per round (default 0.1, Conv-6 0.15)",
    )
    parser.add_argument(
        "--fc_prune_rate",
        type=fraction,
        default=FC_RATE,
        help="fraction of remaining hidden fc weights pruned per round",
    )
    parser.add_argument(
        "--output_prune_rate",
        type=fraction,
        default=None,
        help="fraction of remaining output-layer weights pruned per round (default: half of --fc_prune_rate)",
    )
    parser.add_argument("--dropout_rate", type=fraction, default=0.0, help="dropout after each hidden fc layer")
    parser.add_argument(
        "--augment", action="store_true", help="random crop (pad 4) + horizontal flip on the device (off in the paper)"
    )
    parser.add_argument("--seed", type=non_negative_int, default=1)
    parser.add_argument(
        "--eval_every", type=positive_int, default=250, help="evaluate validation and test every N iterations"
    )
    parser.add_argument(
        "--eval_batch_size",
        type=positive_int,
        default=None,
        help="images per evaluation forward pass (default: 1000 on CUDA, 100 on CPU)",
    )
    parser.add_argument(
        "--checkpoint_every",
        type=non_negative_int,
        default=2500,
        help="save progress every N iterations inside a round (0: per round only)",
    )
    parser.add_argument(
        "--data_dir", default=None, help="data root holding cifar-10-batches-py/ (default: $LTH_DATA_DIR, else ./data)"
    )
    parser.add_argument(
        "--output_dir", default=str(HERE / "results"), help="where run directories (and figures) are written"
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    add_device_argument(parser)
    args = parser.parse_args(argv)

    if args.random_prune:
        if args.run_type == "random_reinit":
            raise UserError("--random_prune and --run_type random_reinit are two different controls; give one")
        args.run_type = "random_prune"
    args.random_prune = args.run_type == "random_prune"
    if args.lr is None:
        args.lr = ARCH_LR[args.arch]
    if args.iterations is None:
        steps_per_epoch = TRAINING_IMAGES // args.batch_size
        if steps_per_epoch == 0:
            raise UserError(f"--batch_size {args.batch_size} exceeds the {TRAINING_IMAGES} training images")
        args.iterations = args.epochs * steps_per_epoch if args.epochs else ARCH_ITERATIONS[args.arch]
    args.epochs = None  # resolved into --iterations; only that is a setting of the run
    if args.conv_prune_rate is None:
        args.conv_prune_rate = CONV_RATE[args.arch]
    if args.output_prune_rate is None:
        args.output_prune_rate = default_output_rate(args.fc_prune_rate)
    return args


def _number(value: float) -> str:
    return f"{value:g}"


def run_directory(args) -> Path:
    """e.g. Conv-2_winning_ticket_d0p5_lr0p0003_it20000_seed1 (prune rates and augmentation only when not the default)."""
    parts = [
        ("", args.arch),
        ("", args.run_type),
        ("d", _number(args.dropout_rate)),
        ("lr", _number(args.lr)),
        ("it", args.iterations),
    ]
    defaults = (CONV_RATE[args.arch], FC_RATE, default_output_rate(FC_RATE))
    rates = (args.conv_prune_rate, args.fc_prune_rate, args.output_prune_rate)
    if rates != defaults:
        parts.append(("rates", "-".join(_number(r) for r in rates)))
    if args.batch_size != 60:
        parts.append(("bs", args.batch_size))
    if args.augment:
        parts.append(("", "augment"))
    parts.append(("seed", args.seed))
    return Path(args.output_dir) / run_name(parts)


def condition_columns(args) -> dict:
    """Written into every rounds.csv row, so figures never pool different conditions."""
    return {
        "dropout_rate": args.dropout_rate,
        "lr": args.lr,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "conv_prune_rate": args.conv_prune_rate,
        "fc_prune_rate": args.fc_prune_rate,
        "output_prune_rate": args.output_prune_rate,
        "augment": args.augment,
    }


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    if args.mode == "plot":
        for path in plot_results(args.output_dir):
            print(f"figure: {path}")
        return
    settings = IMPSettings(
        rounds=args.prune_iterations, seed=args.seed, run_type=args.run_type, extra_columns=condition_columns(args)
    )
    run_experiment(
        args,
        run_directory(args).name,
        load_data,
        build_recipe,
        settings,
    )


if __name__ == "__main__":
    main()
