"""VGG-19 on CIFAR-10: global IMP with rewinding to iteration 0 or k of the dense run, and its controls.

    python main.py --rewind_iteration 2000 --seed 0                 # winning tickets, late rewinding
    python main.py --rewind_iteration 2000 --pruning random --seed 0 # control: random masks, same sparsity
    python main.py --rewind_iteration 2000 --random_reinit --seed 0  # control: same masks, fresh weights
    python main.py --width 0.125 --epochs 10 --rounds 7              # a narrow network for the CPU

Round 0 trains the dense network; if `train.py` already trained it with the same settings (and kept
the weights at iteration k), that dense round is reused instead of being trained again.
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import DenseSettings, VGGSettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(VGGSettings)

from pathlib import Path

from lth.checked_load import read_json
from lth.errors import UserError
from lth.experiment import ImageEntry
from lth.imp import IMPSettings, start_from_dense
from lth.results import RunFiles

from .data import load_data
from .trainer import build_recipe


def dense_round_source(args: VGGSettings, settings: IMPSettings):
    """A loader of the dense round trained by train.py, or None to train round 0 in this run."""
    if args.dense_dir == "none" or args.rounds == 0:
        return None
    explicit = args.dense_dir != "auto"
    dense = args.training()
    path = Path(args.dense_dir) if explicit else Path(dense.output_dir) / dense.run_name()
    files = RunFiles(path)
    if not files.is_finished():
        if explicit:
            raise UserError(
                f"--dense_dir {path}: no finished train.py run there; run train.py first or pass --dense_dir none"
            )
        return None
    saved = read_json(files.settings_file, "settings file")
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
    return lambda: start_from_dense(files.load_state("dense run state"), settings)


ENTRY = ImageEntry(VGGSettings, load_data, build_recipe, dense_round=dense_round_source)
parse_args, run_directory, main, run_one = ENTRY.parse_args, ENTRY.run_directory, ENTRY.main, ENTRY.run_one


if __name__ == "__main__":
    main()
