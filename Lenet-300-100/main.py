"""LeNet-300-100 on MNIST: iterative or one-shot IMP, winning ticket vs controls, one run per call.

python main.py --imp_mode iterative --seed 42          (earlier flags: --mode iterative --trial 0)
python main.py --imp_mode oneshot --run_type random_reinit --seed 45 --train_iterations 5000
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import LenetSettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(LenetSettings)

from lth.experiment import ImageEntry

from .data import load_data
from .trainer import build_recipe

ENTRY = ImageEntry(LenetSettings, load_data, build_recipe, extra_columns=lambda settings: {"trial": settings.trial})
parse_args, run_directory, main, run_one = ENTRY.parse_args, ENTRY.run_directory, ENTRY.main, ENTRY.run_one

if __name__ == "__main__":
    main()
