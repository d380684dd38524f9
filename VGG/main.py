"""VGG-19 on CIFAR-10: global IMP with rewinding to iteration 0 or k of the dense run, and its controls.

    python main.py --rewind_iteration 2000 --seed 0                 # winning tickets, late rewinding
    python main.py --rewind_iteration 2000 --pruning random --seed 0 # control: random masks, same sparsity
    python main.py --rewind_iteration 2000 --random_reinit --seed 0  # control: same masks, fresh weights
    python main.py --width 0.125 --epochs 10 --rounds 7              # a narrow network for the CPU

Round 0 trains the dense network; if `train.py` already trained it with the same settings (and kept
the weights at iteration k), that dense round is reused instead of being trained again.
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from settings import DenseSettings, VGGSettings
from trainer import build_recipe

from lth.batched import main_or_batch
from lth.errors import UserError, user_facing
from lth.experiment import imp_settings_of, run_experiment
from lth.imp import IMPSettings, start_from_dense
from lth.results import is_finished
from lth.storage import load_checkpoint, read_json


def parse_args(argv=None) -> VGGSettings:
    return VGGSettings.from_argv(argv)


def run_directory(settings: VGGSettings) -> Path:
    return Path(settings.output_dir) / settings.run_name()


def dense_round_source(args: VGGSettings, settings: IMPSettings):
    """A loader of the dense round trained by train.py, or None to train round 0 in this run."""
    if args.dense_dir == "none" or args.rounds == 0:
        return None
    explicit = args.dense_dir != "auto"
    dense = args.training()
    path = Path(args.dense_dir) if explicit else Path(dense.output_dir) / dense.run_name()
    if not is_finished(path):
        if explicit:
            raise UserError(
                f"--dense_dir {path}: no finished train.py run there; run train.py first or pass --dense_dir none"
            )
        return None
    saved = read_json(path / "settings.json", "settings file")
    differing = dense.differences(saved)
    if differing:
        there = DenseSettings.from_saved(saved)
        detail = ", ".join(f"{k}: {getattr(there, k)!r} there, {getattr(dense, k)!r} here" for k in differing[:4])
        raise UserError(
            f"dense run {path} was trained with other settings ({detail}); pass the same flags or --dense_dir none"
        )
    k = args.rewind_iteration
    if k > 0 and k not in DenseSettings.from_saved(saved).save_iterations:
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
    """One run; several named at once (e.g. --seed 0 1 2 --run_type winning_ticket random_reinit) train batched."""
    main_or_batch(__file__, argv, run_one)


def run_one(argv=None) -> None:
    args = parse_args(argv)
    settings = imp_settings_of(args)
    settings.initial_state = dense_round_source(args, settings)
    run_experiment(args, load_data, build_recipe, settings)


if __name__ == "__main__":
    main()
