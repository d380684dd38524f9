"""LeNet-300-100 on MNIST: iterative or one-shot IMP, winning ticket vs controls, one run per call.

python main.py --imp_mode iterative --seed 42          (earlier flags: --mode iterative --trial 0)
python main.py --imp_mode oneshot --run_type random_reinit --seed 45 --train_iterations 5000
"""

from __future__ import annotations

from settings import LenetSettings

from lth.families import refuse_if_running

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(LenetSettings)

from data import load_data
from trainer import build_recipe

from lth.experiment import ImageEntry

ENTRY = ImageEntry(LenetSettings, load_data, build_recipe, extra_columns=lambda settings: {"trial": settings.trial})
parse_args, run_directory, main, run_one = ENTRY.parse_args, ENTRY.run_directory, ENTRY.main, ENTRY.run_one

if __name__ == "__main__":
    main()
