"""LeNet's training recipe: plain Adam, batch 60, fixed iterations per round (Frankle & Carbin)."""

from __future__ import annotations

import torch

from lth.batches import ShuffledBatches
from lth.datasets import ImageData
from lth.experiment import batch_seeds
from lth.imp import IMPRecipe
from lth.training import RoundSchedule, image_evaluator

from .models import LeNet300100
from .pruning import lenet_pruning
from .settings import LenetSettings


def build_recipe(settings: LenetSettings, data: ImageData, device: str) -> IMPRecipe:
    return IMPRecipe(
        arch="LeNet-300-100",
        model_factory=LeNet300100,
        policy=lenet_pruning(LeNet300100(), settings.fc_prune_rate, settings.output_prune_rate),
        make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=settings.lr),
        batches=ShuffledBatches(data.train_x, data.train_y, settings.batch_size, **batch_seeds(settings)),
        evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y),
        schedule=RoundSchedule(settings.train_iterations, settings.eval_every, settings.checkpoint_every),
        device=device,
        compile=settings.compile,
    )
