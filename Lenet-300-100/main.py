"""LeNet-300-100 on MNIST: iterative or one-shot IMP, winning ticket vs controls, one trial per call.

python main.py --mode iterative --trial 0
python main.py --mode oneshot --random_reinit --trial 3 --iterations 5000
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from trainer import build_recipe

from lth.arguments import ArgumentParser, add_device_argument, fraction, non_negative_int, positive_float, positive_int
from lth.errors import UserError, user_facing
from lth.experiment import run_experiment
from lth.imp import IMPSettings
from lth.results import run_name

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = ArgumentParser(prog="Lenet-300-100/main.py", description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=["iterative", "oneshot"], default="iterative")
    parser.add_argument(
        "--random_reinit", action="store_true", help="control: same masks, fresh random weights each round"
    )
    parser.add_argument(
        "--random_prune", action="store_true", help="control: random masks with the same per-layer sparsity"
    )
    parser.add_argument("--trial", type=non_negative_int, default=0, help="trial index; seed = 42 + trial")
    parser.add_argument("--iterations", type=positive_int, default=50_000, help="training iterations per round")
    parser.add_argument("--rounds", type=non_negative_int, default=20, help="pruning rounds after the dense round 0")
    parser.add_argument(
        "--fc_rate", type=fraction, default=0.2, help="fraction of remaining hidden-layer weights pruned per round"
    )
    parser.add_argument(
        "--output_rate", type=fraction, default=0.1, help="fraction of remaining output-layer weights pruned per round"
    )
    parser.add_argument("--batch_size", type=positive_int, default=60)
    parser.add_argument("--lr", type=positive_float, default=1.2e-3, help="Adam learning rate")
    parser.add_argument(
        "--eval_every", type=positive_int, default=100, help="evaluate validation and test every N iterations"
    )
    parser.add_argument(
        "--checkpoint_every",
        type=non_negative_int,
        default=5000,
        help="save progress every N iterations (0: per round only)",
    )
    parser.add_argument("--data_dir", default=None, help="data root (default: $LTH_DATA_DIR, else ./data)")
    parser.add_argument("--output_dir", default=str(HERE / "results"), help="where run directories are written")
    parser.add_argument(
        "--fast_mode",
        action="store_true",
        help="accepted for compatibility (cuDNN autotuning is on whenever CUDA is used)",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.random_reinit and args.random_prune:
        raise UserError("--random_reinit and --random_prune are two different controls; give at most one")
    args.seed = 42 + args.trial
    return args


def run_type_of(args) -> str:
    return "random_reinit" if args.random_reinit else "random_prune" if args.random_prune else "winning_ticket"


def run_directory(args) -> Path:
    return Path(args.output_dir) / run_name(
        [("lenet300-100-", args.mode), ("", run_type_of(args)), ("trial", args.trial)]
    )


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    run_type = run_type_of(args)
    name = run_directory(args).name
    settings = IMPSettings(
        rounds=args.rounds,
        seed=args.seed,
        mode=args.mode,
        run_type=run_type,
        extra_columns={"mode": args.mode, "trial": args.trial},
    )
    run_experiment(args, name, load_data, build_recipe, settings)


if __name__ == "__main__":
    main()
