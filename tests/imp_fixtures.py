"""A tiny, fast IMP setup on scikit-learn's digits for loop, rewinding and resume tests."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import torch

from lth.api import StudySettings
from lth.batches import ShuffledBatches
from lth.datasets import load_digits
from lth.demo import DigitsMLP
from lth.imp import IMPRecipe
from lth.pruning import LayerwisePruning, conv_fc_rates
from lth.results import COST_COLUMNS
from lth.settings import setting
from lth.training import RoundSchedule, image_evaluator

DIGITS = load_digits(seed=0)


@dataclass
class FixtureSettings(StudySettings):
    """A run directory's settings for loop tests (the recipe itself comes from digits_recipe)."""

    name: str = setting("fixture", "label")
    lr: float = setting(0.1, "a result-changing setting for the identity tests")


def digits_recipe(
    iterations: int = 60, eval_every: int = 20, checkpoint_every: int = 0, optimizer: str = "adam"
) -> IMPRecipe:
    def make_optimizer(model):
        if optimizer == "sgd":
            return torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        return torch.optim.Adam(model.parameters(), lr=2e-3)

    return IMPRecipe(
        arch="digits-MLP",
        model_factory=DigitsMLP,
        policy=LayerwisePruning(conv_fc_rates(DigitsMLP(), 0.0, 0.2)),
        make_optimizer=make_optimizer,
        batches=ShuffledBatches(DIGITS.train_x, DIGITS.train_y, 32, seed=0),
        evaluate=image_evaluator(DIGITS.val_x, DIGITS.val_y, DIGITS.test_x, DIGITS.test_y),
        schedule=RoundSchedule(iterations, eval_every, checkpoint_every),
    )


def csv_without_wall_time(path) -> list[list[str]]:
    """The CSV's rows without the columns that differ between identical runs (wall time, energy, CO2e)."""
    with open(path, newline="") as handle:
        rows = list(csv.reader(handle))
    keep = [i for i, name in enumerate(rows[0]) if name not in COST_COLUMNS]
    return [[row[i] for i in keep] for row in rows]
