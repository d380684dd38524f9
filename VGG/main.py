"""VGG-19 on CIFAR-10: global IMP with rewinding to iteration 0 or k of the dense run, and its controls.

    python main.py --rewind_iteration 2000 --seed 0                 # winning tickets, late rewinding
    python main.py --rewind_iteration 2000 --pruning random --seed 0 # control: random masks, same sparsity
    python main.py --rewind_iteration 2000 --random_reinit --seed 0  # control: same masks, fresh weights
    python main.py --width 0.125 --epochs 10 --prune_iterations 8    # a narrow network for the CPU

Round 0 trains the dense network; if `train.py` already trained it with the same settings (and kept
the weights at iteration k), that dense round is reused instead of being trained again.
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from trainer import (
    DENSE_SETTINGS,
    RESULTS_DIR,
    add_training_arguments,
    build_recipe,
    dense_run_directory,
    finish_training_arguments,
    schedule_columns,
    width_label,
)

from lth.arguments import ArgumentParser, fraction, non_negative_int, positive_int
from lth.errors import UserError, user_facing
from lth.experiment import run_experiment
from lth.imp import RUN_TYPES, IMPSettings, start_from_dense
from lth.results import is_finished, run_name
from lth.storage import load_checkpoint, read_json


def parse_args(argv=None):
    parser = ArgumentParser(prog="VGG/main.py", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--rewind_iteration",
        "--iterations",
        dest="rewind_iteration",
        type=non_negative_int,
        default=0,
        help="rewind surviving weights to this iteration of the dense run (0: the initialisation)",
    )
    parser.add_argument(
        "--pruning",
        "--prunning",
        dest="pruning",
        choices=["global", "random"],
        default="global",
        help="global: magnitude pruning of all conv weights together; random: random-pruning control",
    )
    parser.add_argument(
        "--random_reinit", action="store_true", help="control: the magnitude masks on fresh random weights"
    )
    parser.add_argument(
        "--run_type",
        choices=RUN_TYPES,
        default=None,
        help="the run type directly (instead of --pruning / --random_reinit)",
    )
    rounds = parser.add_mutually_exclusive_group()
    rounds.add_argument(
        "--prune_iterations",
        type=positive_int,
        default=20,
        help="rounds including the dense round 0 (as the earlier study: 20)",
    )
    rounds.add_argument(
        "--rounds",
        type=non_negative_int,
        default=None,
        help="pruning rounds after the dense round 0 (= --prune_iterations - 1)",
    )
    parser.add_argument(
        "--prune_rate", type=fraction, default=0.2, help="fraction of the remaining conv weights pruned per round"
    )
    parser.add_argument(
        "--model_name",
        default="vgg19",
        help="accepted for compatibility (the run directory is named from the settings)",
    )
    parser.add_argument(
        "--dense_dir",
        default="auto",
        help="finished train.py run to use as round 0: auto (the matching one under --output_dir, if any), none, or a path",
    )
    parser.add_argument("--output_dir", default=str(RESULTS_DIR), help="where run directories are written")
    add_training_arguments(parser)
    args = finish_training_arguments(parser.parse_args(argv))
    vars(args).pop("model_name", None)
    if args.rounds is None:
        args.rounds = args.prune_iterations - 1
    args.prune_iterations = args.rounds + 1
    args.run_type = run_type_of(args)
    if args.rewind_iteration >= args.train_iterations:
        raise UserError(
            f"--rewind_iteration {args.rewind_iteration} must be below the {args.train_iterations} training iterations of a round"
        )
    return args


def run_type_of(args) -> str:
    from_flags = (
        "random_reinit" if args.random_reinit else "random_prune" if args.pruning == "random" else "winning_ticket"
    )
    if args.random_reinit and args.pruning == "random":
        raise UserError("--random_reinit and --pruning random are two different controls; give at most one")
    if args.run_type is not None and (args.random_reinit or args.pruning == "random") and args.run_type != from_flags:
        raise UserError(
            f"--run_type {args.run_type} contradicts --pruning {args.pruning} / --random_reinit; give one of them"
        )
    return args.run_type or from_flags


def run_directory(args) -> Path:
    return Path(args.output_dir) / run_name(
        [
            ("vgg19-w", width_label(args.width)),
            ("", args.run_type),
            ("rewind", args.rewind_iteration),
            ("seed", args.seed),
        ]
    )


def dense_round_source(args, settings: IMPSettings):
    """A loader of the dense round trained by train.py, or None to train round 0 in this run."""
    if args.dense_dir == "none" or args.rounds == 0:
        return None
    explicit = args.dense_dir != "auto"
    path = Path(args.dense_dir) if explicit else dense_run_directory(args)
    if not is_finished(path):
        if explicit:
            raise UserError(
                f"--dense_dir {path}: no finished train.py run there; run train.py first or pass --dense_dir none"
            )
        return None
    saved = read_json(path / "settings.json", "settings file")
    differing = [k for k in DENSE_SETTINGS if saved.get(k) != vars(args).get(k)]
    if differing:
        detail = ", ".join(f"{k}: {saved.get(k)!r} there, {vars(args).get(k)!r} here" for k in differing[:4])
        raise UserError(
            f"dense run {path} was trained with other settings ({detail}); pass the same flags or --dense_dir none"
        )
    k = args.rewind_iteration
    if k > 0 and k not in saved.get("save_iterations", []):
        if explicit:
            raise UserError(
                f"--dense_dir {path} kept no weights at iteration {k}; rerun train.py with --save_iterations {k}"
            )
        print(f"note: {path} kept no weights at iteration {k}; training round 0 here")
        return None
    print(f"round 0: the dense round of {path}")
    return lambda: start_from_dense(load_checkpoint(path / "state.pt", "dense run state"), settings)


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    settings = IMPSettings(
        rounds=args.rounds,
        seed=args.seed,
        run_type=args.run_type,
        rewind_iteration=args.rewind_iteration,
        extra_columns={"rewind_iteration": args.rewind_iteration, "pruning": args.pruning, **schedule_columns(args)},
    )
    settings.initial_state = dense_round_source(args, settings)
    run_experiment(
        args,
        run_directory(args).name,
        load_data,
        build_recipe,
        settings,
    )


if __name__ == "__main__":
    main()
