"""The part every image family's entry script shares: settings -> run directory -> data -> IMP."""

from __future__ import annotations

import argparse
import contextlib
import os
import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from lth.arguments import resolve_device
from lth.imp import IMPRecipe, IMPSettings, run_imp
from lth.results import RunDirectory, ensure_output_dir, is_finished
from lth.storage import atomic_write_text


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads() -> None:
    """Small models gain nothing from more intra-op threads than cores; respect an explicit setting."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def settings_of(args: argparse.Namespace) -> dict:
    return {k: v for k, v in sorted(vars(args).items()) if not callable(v)}


@contextlib.contextmanager
def recording_failure(run_path: Path):
    """Leave a `failed` note (for `lth status`) when a run stops on an error; clear it on success."""
    marker = Path(run_path) / "failed"
    try:
        yield
    except KeyboardInterrupt:
        raise
    except BaseException as error:
        atomic_write_text(marker, f"{type(error).__name__}: {error}\n")
        raise
    marker.unlink(missing_ok=True)


def run_experiment(
    args: argparse.Namespace,
    name: str,
    load_data: Callable[[str | None, str, int], object],
    build_recipe: Callable[[argparse.Namespace, object, str], IMPRecipe],
    imp_settings: IMPSettings,
) -> Path:
    """Open (or resume) the run directory `name` under args.output_dir and run IMP in it.

    `load_data(args.data_dir, device, seed)` gives the family's data; `build_recipe(args, data, device)` its recipe.
    """
    device = resolve_device(getattr(args, "device", "auto"))
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    configure_threads()
    run = RunDirectory(args.output_dir, name, settings_of(args))
    if is_finished(run.path):
        with run:  # still refuses a directory holding other settings
            print(f"{run.path}: finished earlier; nothing to do")
            return run.path
    ensure_output_dir(args.output_dir)
    # Data first: a missing or broken dataset must not leave a half-made run directory behind.
    seed_everything(imp_settings.seed)
    data = load_data(args.data_dir, device, imp_settings.seed)
    with run:
        with recording_failure(run.path):
            seed_everything(imp_settings.seed)  # again: the recipe must not depend on what the data load drew
            recipe = build_recipe(args, data, device)
            run_imp(run, recipe, imp_settings, quiet=getattr(args, "quiet", False))
    print(f"results: {run.rounds_csv} and {run.curve_csv}")
    return run.path
