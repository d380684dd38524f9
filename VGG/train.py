"""Pre-train the dense VGG-19 (round 0) and keep its weights at the iterations main.py rewinds to.

    python train.py --seed 0 --save_iterations 500 2000
    python main.py  --seed 0 --rewind_iteration 2000     # reuses this dense round

This is round 0 of the IMP loop (the same training loop, schedule and resume), run on its own so
that every rewinding point and control of a seed shares one dense network.
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import DenseSettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(DenseSettings)

from lth.experiment import ImageEntry

from .data import load_data
from .trainer import build_recipe

ENTRY = ImageEntry(
    DenseSettings,
    load_data,
    build_recipe,
    imp_overrides=lambda settings: {"rounds": 0, "snapshot_iterations": settings.save_iterations},
    several=False,
)
parse_args, run_directory, main, run_one = ENTRY.parse_args, ENTRY.run_directory, ENTRY.main, ENTRY.run_one


if __name__ == "__main__":
    main()
