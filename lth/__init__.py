"""Lottery Ticket Hypothesis toolkit: masks, pruning, rewinding, the IMP loop, results and resume.

Each mechanism lives here once; the family folders (Lenet-300-100, CNN, VGG, BERT) hold only their
architectures, data recipes, pruning rates, training recipes and figures. What a researcher needs to run
IMP with the controls on a model of their own is exported here (see README, "Your own model"); the
exports load on first use, so `lth` commands start without importing torch and matplotlib.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

_EXPORTS = {
    "StudySettings": "lth.api",
    "run_lottery": "lth.api",
    "ShuffledBatches": "lth.batches",
    "ImageData": "lth.datasets",
    "load_cifar10": "lth.datasets",
    "load_digits": "lth.datasets",
    "load_mnist": "lth.datasets",
    "resolve_data_root": "lth.datasets",
    "Mask": "lth.masks",
    "load_curves": "lth.plotting",
    "load_rounds": "lth.plotting",
    "plot_early_stop_panels": "lth.plotting",
    "GlobalPruning": "lth.pruning",
    "LayerwisePruning": "lth.pruning",
    "conv_fc_rates": "lth.pruning",
    "Alias": "lth.settings",
    "Settings": "lth.settings",
    "setting": "lth.settings",
    "image_evaluator": "lth.training",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'lth' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
