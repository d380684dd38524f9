"""IMP on your own model: the generic settings of a run and one call that finds tickets with the controls.

    import lth
    settings = lth.StudySettings(name="my-cnn", run_type="winning_ticket", seed=0, rounds=5, train_iterations=500)
    lth.run_lottery(settings, model_factory=MyNet, policy=lth.LayerwisePruning(...), make_optimizer=...,
                    batches=lth.ShuffledBatches(x, y, 60, seed=settings.seed), evaluate=lth.image_evaluator(...))

The run directory, its CSVs (with the settings as identity columns), resume after a kill, the lock and the
figures are those of the four families. Settings of your own go in a subclass of StudySettings, declared with
`lth.setting(...)`: they then name the run, fill its identity columns and keep conditions apart in figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lth.arguments import resolve_device
from lth.experiment import Job, ticket_dir_of, train_jobs
from lth.imp import IMPRecipe, IMPSettings
from lth.results import RunDirectory
from lth.settings import (
    IMPRunSettings,
    readable_name,
    setting,
)
from lth.training import RoundSchedule, classification_loss


@dataclass
class StudySettings(IMPRunSettings):
    """The settings every IMP run has; subclass it to add your own (model width, learning rate, ...)."""

    PROG = "lth-study"
    DESCRIPTION = "IMP on your own model"
    NAME_FIELDS = ("name", "imp_mode", "run_type", "control_mask", "seed")

    name: str = setting("study", "label of the experiment: the first part of its run directory names")

    def name_prefix(self) -> str:
        return readable_name([("", self.name), ("", self.imp_mode), ("", self.run_label()), ("seed", self.seed)])


def run_lottery(
    settings: StudySettings,
    *,
    model_factory: Callable[[], nn.Module],
    policy: Any,
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer],
    batches: Any,
    evaluate: Callable[[nn.Module], dict],
    step_loss: Callable = classification_loss,
    lr_at: Callable[[int], float] | None = None,
    prunable_names: list[str] | None = None,
) -> Path:
    """Run (or resume, or find finished) IMP for `settings`; returns the run directory.

    `policy` is a LayerwisePruning or GlobalPruning; `batches(i)` gives the training batch of iteration i
    (e.g. ShuffledBatches); `evaluate(model)` returns val_loss, val_accuracy, test_loss, test_accuracy
    (image_evaluator). Prunable weights are every conv and linear weight unless `prunable_names` says otherwise.
    """
    device = resolve_device(settings.device)
    recipe = IMPRecipe(
        arch=settings.name,
        model_factory=model_factory,
        policy=policy,
        make_optimizer=make_optimizer,
        batches=batches,
        evaluate=evaluate,
        schedule=RoundSchedule(settings.train_iterations, settings.eval_every, settings.checkpoint_every),
        step_loss=step_loss,
        lr_at=lr_at,
        prunable_names=prunable_names,
        device=device,
        compile=settings.compile,
    )
    imp = IMPSettings(
        rounds=settings.rounds,
        seed=settings.seed,
        mode=settings.imp_mode,
        run_type=settings.run_type,
        rewind_iteration=settings.rewind_iteration,
        ticket_dir=ticket_dir_of(settings),
    )
    run = RunDirectory(settings.output_dir, settings)
    train_jobs([Job(run, settings.seed, lambda: None, lambda _: (recipe, imp))], device, quiet=settings.quiet)
    return run.path
