"""Conv-2/4/6 on CIFAR-10: layer-wise IMP, winning ticket vs random re-init (or random pruning), one run per call.

python main.py --arch Conv-2 --run_type winning_ticket --seed 1
python main.py --arch Conv-6 --run_type random_reinit --dropout_rate 0.5 --lr 2e-4 --seed 3
python main.py --plot                            # figures from every run under --output_dir (earlier: --mode plot)
"""

from __future__ import annotations

from pathlib import Path

from data import load_data
from plotter import plot_results
from settings import ConvSettings
from trainer import build_recipe

from lth.batched import main_or_batch
from lth.errors import user_facing
from lth.experiment import imp_settings_of, run_experiment


def parse_args(argv=None) -> ConvSettings:
    return ConvSettings.from_argv(argv)


def run_directory(settings: ConvSettings) -> Path:
    return Path(settings.output_dir) / settings.run_name()


@user_facing
def main(argv=None) -> None:
    """One run; several named at once (e.g. --seed 1 2 3 --run_type winning_ticket random_reinit) train batched."""
    main_or_batch(__file__, argv, run_one)


def run_one(argv=None) -> None:
    settings = parse_args(argv)
    if settings.plot:
        for path in plot_results(settings.output_dir):
            print(f"figure: {path}")
        return
    imp = imp_settings_of(settings)
    run_experiment(settings, load_data, build_recipe, imp)


if __name__ == "__main__":
    main()
