"""LeNet-300-100 on MNIST: iterative or one-shot IMP, winning ticket vs controls, one run per call.

python main.py --imp_mode iterative --seed 42          (earlier flags: --mode iterative --trial 0)
python main.py --imp_mode oneshot --run_type random_reinit --seed 45 --train_iterations 5000
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from settings import LenetSettings
from trainer import build_recipe

from lth.batched import main_or_batch
from lth.errors import user_facing
from lth.experiment import imp_settings_of, run_experiment


def parse_args(argv=None) -> LenetSettings:
    return LenetSettings.from_argv(argv)


def run_directory(settings: LenetSettings) -> Path:
    return Path(settings.output_dir) / settings.run_name()


@user_facing
def main(argv=None) -> None:
    """One run; several named at once (e.g. --trial 0 1 2 --run_type winning_ticket random_reinit) train batched."""
    main_or_batch(__file__, argv, run_one)


def run_one(argv=None) -> None:
    settings = parse_args(argv)
    imp = imp_settings_of(settings, extra_columns={"trial": settings.trial})
    run_experiment(settings, load_data, build_recipe, imp)


if __name__ == "__main__":
    main()
