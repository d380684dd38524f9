"""Pre-train the dense VGG-19 (round 0) and keep its weights at the iterations main.py rewinds to.

    python train.py --seed 0 --save_iterations 500 2000
    python main.py  --seed 0 --rewind_iteration 2000     # reuses this dense round

This is round 0 of the IMP loop (the same training loop, schedule and resume), run on its own so
that every rewinding point and control of a seed shares one dense network.
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from settings import DenseSettings
from trainer import build_recipe

from lth.errors import user_facing
from lth.experiment import imp_settings_of, run_experiment


def parse_args(argv=None) -> DenseSettings:
    return DenseSettings.from_argv(argv)


def run_directory(settings: DenseSettings) -> Path:
    return Path(settings.output_dir) / settings.run_name()


@user_facing
def main(argv=None) -> None:
    settings = parse_args(argv)
    imp = imp_settings_of(settings, rounds=0, snapshot_iterations=settings.save_iterations)
    run_experiment(settings, load_data, build_recipe, imp)


if __name__ == "__main__":
    main()
