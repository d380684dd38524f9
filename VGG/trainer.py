"""VGG's training recipe (Frankle & Carbin; Frankle et al. 2019): SGD with momentum 0.9, weight decay
1e-4, batch 64, lr 0.1 dropped 10x at 50% and 75% of training, optional linear warmup, crop + flip.

The settings that define a round's training are VGG/settings.py's TrainingSettings, shared by `train.py`
(the dense round) and `main.py` (the IMP rounds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from lth.experiment import batch_seeds
from lth.imp import IMPRecipe
from lth.training import RoundSchedule, image_evaluator

from .data import ImageData, training_batches
from .models import ARCH, conv_weight_names, vgg19
from .pruning import PRUNE_RATE, vgg_pruning
from .settings import TrainingSettings


def lr_schedule(
    lr: float, milestones: list[int], gamma: float = 0.1, warmup_iterations: int = 0
) -> Callable[[int], float]:
    """lr at iteration i: linear warmup to `lr` over `warmup_iterations`, then x gamma at each milestone."""

    def lr_at(iteration: int) -> float:
        scale = min(1.0, (iteration + 1) / warmup_iterations) if warmup_iterations else 1.0
        drops = sum(iteration >= m for m in milestones)
        return lr * scale * gamma**drops

    return lr_at


def make_sgd(settings: TrainingSettings) -> Callable[[torch.nn.Module], torch.optim.Optimizer]:
    return lambda model: torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, weight_decay=settings.weight_decay
    )


def build_recipe(settings: TrainingSettings, data: ImageData, device: str) -> IMPRecipe:
    def model_factory() -> torch.nn.Module:
        return vgg19(settings.width)

    template = model_factory()
    return IMPRecipe(
        arch=ARCH,
        model_factory=model_factory,
        policy=vgg_pruning(template, getattr(settings, "global_prune_rate", PRUNE_RATE)),
        prunable_names=conv_weight_names(template),
        make_optimizer=make_sgd(settings),
        batches=training_batches(data, settings.batch_size, augment=settings.augment, **batch_seeds(settings)),
        evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y, batch_size=1000),
        schedule=RoundSchedule(settings.train_iterations, settings.eval_every, settings.checkpoint_every),
        lr_at=lr_schedule(settings.lr, settings.milestones, settings.gamma, settings.warmup_iterations),
        device=device,
        compile=settings.compile,
    )
