"""The part every image family's entry script shares: settings -> run directory -> data -> IMP."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lth.arguments import resolve_device
from lth.imp import IMPRecipe, IMPSettings, run_imp
from lth.init_pruning import PruneAtInit
from lth.results import RunDirectory, is_finished
from lth.settings import Settings
from lth.stopping import StopRequested
from lth.storage import atomic_write_text


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads() -> None:
    """Small models gain nothing from more intra-op threads than cores; respect an explicit setting."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def imp_settings_of(settings: Settings, **overrides) -> IMPSettings:
    """The IMP loop's settings from an image family's declared settings (a dense round's settings have no rounds,
    run type or mode: one dense round), with `overrides` on top."""
    declared = {
        "rounds": getattr(settings, "rounds", 0),
        "seed": settings.seed,
        "mode": getattr(settings, "imp_mode", "iterative"),
        "run_type": getattr(settings, "run_type", "winning_ticket"),
        "rewind_iteration": getattr(settings, "rewind_iteration", 0),
        "init_seed": getattr(settings, "init_seed", None),
        "transformation_seed": getattr(settings, "transformation_seed", None),
        "prune_at_init": prune_at_init_of(settings),
        "ticket_dir": ticket_dir_of(settings),
    }
    return IMPSettings(**{**declared, **overrides})


def ticket_dir_of(settings: Settings) -> Path | None:
    """The run directory of the winning ticket a branch (a control, a BERT baseline) starts from, in the same
    output_dir (None: not a branch)."""
    ticket = settings.ticket_run()
    return None if ticket is None else (Path(settings.output_dir) / ticket).resolve()


def prune_at_init_of(settings: Settings) -> PruneAtInit | None:
    method = getattr(settings, "pai_method", "none")
    if method == "none":
        return None
    return PruneAtInit(
        method=method,
        round=settings.pai_round,
        scope=settings.pai_scope,
        ablation=settings.pai_ablation,
        synflow_iterations=settings.synflow_iterations,
        batches=settings.pai_batches,
    )


def batch_seeds(settings: Settings) -> dict:
    """ShuffledBatches' seeds: the data order's and the augmentation's, each --seed unless set apart."""
    order = getattr(settings, "data_order_seed", None)
    transformation = getattr(settings, "transformation_seed", None)
    return {
        "seed": settings.seed if order is None else order,
        "augment_seed": settings.seed if transformation is None else transformation,
    }


@contextlib.contextmanager
def recording_failure(run_path: Path):
    """Leave a `failed` note (for `lth status`) when a run stops on an error; clear it on success."""
    marker = Path(run_path) / "failed"
    try:
        yield
    except (KeyboardInterrupt, StopRequested):
        raise
    except BaseException as error:
        atomic_write_text(marker, f"{type(error).__name__}: {error}\n")
        raise
    marker.unlink(missing_ok=True)


def run_experiment(
    settings: Settings,
    load_data: Callable[[str | None, str, int], object],
    build_recipe: Callable[[Settings, object, str], IMPRecipe],
    imp_settings: IMPSettings,
) -> Path:
    """Open (or resume) the settings' run directory under its output_dir and run IMP in it.

    `load_data(settings.data_dir, device, seed)` gives the family's data; `build_recipe(settings, data, device)`
    its recipe.
    """
    device = resolve_device(settings.device)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    configure_threads()
    run = RunDirectory(settings.output_dir, settings)
    if is_finished(run.path):
        with run:  # still refuses a directory holding other settings
            print(f"{run.path}: finished earlier; nothing to do")
            return run.path
    # The lease first, so a second process on a live run stops at once; a missing or broken dataset then
    # removes the new run directory again (RunDirectory does, on a UserError).
    with run:
        seed_everything(imp_settings.seed)
        data = load_data(settings.data_dir, device, imp_settings.seed)
        with recording_failure(run.path):
            seed_everything(imp_settings.seed)  # again: the recipe must not depend on what the data load drew
            recipe = build_recipe(settings, data, device)
            run_imp(run, recipe, imp_settings, quiet=settings.quiet)
    print(f"results: {run.rounds_csv} and {run.curve_csv}")
    return run.path
