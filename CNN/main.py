"""Conv-2/4/6 on CIFAR-10: layer-wise IMP, winning ticket vs random re-init (or random pruning), one run per call.

python main.py --arch Conv-2 --run_type winning_ticket --seed 1
python main.py --arch Conv-6 --run_type random_reinit --dropout_rate 0.5 --lr 2e-4 --seed 3
python main.py --plot                            # figures from every run under --output_dir (earlier: --mode plot)
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import ConvSettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(ConvSettings, unless=lambda settings: settings.plot)

from lth.experiment import ImageEntry

from .data import load_data
from .plotter import plot_results
from .trainer import build_recipe


def plot_instead(settings: ConvSettings) -> bool:
    """--plot: draw the figures of every run under --output_dir instead of training."""
    if settings.plot:
        for path in plot_results(settings.output_dir):
            print(f"figure: {path}")
    return settings.plot


ENTRY = ImageEntry(ConvSettings, load_data, build_recipe, instead=plot_instead)
parse_args, run_directory, main, run_one = ENTRY.parse_args, ENTRY.run_directory, ENTRY.main, ENTRY.run_one

if __name__ == "__main__":
    main()
