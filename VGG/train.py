"""Pre-train the dense VGG-19 (round 0) and keep its weights at the iterations main.py rewinds to.

    python train.py --seed 0 --save_iterations 500 2000
    python main.py  --seed 0 --rewind_iteration 2000     # reuses this dense round

This is round 0 of the IMP loop (the same training loop, schedule and resume), run on its own so
that every rewinding point and control of a seed shares one dense network.
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from trainer import (
    RESULTS_DIR,
    add_training_arguments,
    build_recipe,
    dense_run_directory,
    finish_training_arguments,
    schedule_columns,
)

from lth.arguments import ArgumentParser, non_negative_int
from lth.errors import UserError, user_facing
from lth.experiment import run_experiment
from lth.imp import IMPSettings


def parse_args(argv=None):
    parser = ArgumentParser(prog="VGG/train.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--save_iterations",
        type=non_negative_int,
        nargs="+",
        default=[500, 2000],
        help="iterations whose weights are kept for rewinding (the initialisation is always kept)",
    )
    parser.add_argument("--output_dir", default=str(RESULTS_DIR), help="where the dense run directory is written")
    add_training_arguments(parser)
    args = finish_training_arguments(parser.parse_args(argv))
    args.save_iterations = sorted(set(args.save_iterations))
    too_late = [i for i in args.save_iterations if i >= args.train_iterations]
    if too_late:
        raise UserError(f"--save_iterations {too_late[0]} is not below the {args.train_iterations} training iterations")
    return args


def run_directory(args) -> Path:
    return dense_run_directory(args)


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    settings = IMPSettings(
        rounds=0,
        seed=args.seed,
        snapshot_iterations=tuple(args.save_iterations),
        extra_columns={"rewind_iteration": 0, "pruning": "global", **schedule_columns(args)},
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
