"""The entry driver every image family's entry script shares: settings -> run directories -> data -> IMP.

An image family's IMP entry script declares itself once, as an `ImageEntry` (its settings, data, recipe and the
hooks it may give); its `parse_args`, `run_directory`, `main` and `run_one` come from that declaration. One run or
several (`--seed 1 2 3`, `lth batch`, `lth sweep --batch`) go the same way: `train_jobs` takes each run's lease,
loads its data under it, builds its recipe and hands the runs to the one IMP driver (`lth.imp.run_replicates`),
alone (`lth.training.OneNetwork`) or batched (`lth.batched.StackedNetworks`).
"""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lth.arguments import resolve_device
from lth.batched import StackedNetworks
from lth.errors import UserError, user_facing
from lth.families import EntryScript, several_runs
from lth.imp import IMPRecipe, IMPSettings, Replicate, recording_failure, run_replicates
from lth.init_pruning import PruneAtInit
from lth.results import RunDirectory
from lth.settings import (
    CONTROL_RUN_TYPES,
    ImageRunSettings,
    IMPRunSettings,
    PruneAtInitSettings,
    RunSettings,
    Settings,
)
from lth.training import OneNetwork


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def configure_threads() -> None:
    """Small models gain nothing from more intra-op threads than cores; respect an explicit setting."""
    if "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(max(1, min(torch.get_num_threads(), os.cpu_count() or 1)))


def imp_settings_of(settings: RunSettings, **overrides) -> IMPSettings:
    """The IMP loop's settings from a run's declared settings, with `overrides` on top. A dense round's settings
    (VGG's train.py) are not IMP settings: one dense round, a winning ticket's."""
    values: dict = {"seed": settings.seed, "rounds": 0}
    if isinstance(settings, IMPRunSettings):
        values |= {
            "rounds": settings.rounds,
            "mode": settings.imp_mode,
            "run_type": settings.run_type,
            "rewind_iteration": settings.rewind_iteration,
        }
    if isinstance(settings, ImageRunSettings):
        values |= {"init_seed": settings.init_seed, "transformation_seed": settings.transformation_seed}
    values |= {"prune_at_init": prune_at_init_of(settings), "ticket_dir": ticket_dir_of(settings)}
    return IMPSettings(**{**values, **overrides})


def ticket_dir_of(settings: Settings) -> Path | None:
    """The run directory of the winning ticket a branch (a control, a BERT baseline) starts from, in the same
    output_dir (None: not a branch)."""
    ticket = settings.ticket_run()
    return None if ticket is None else (Path(settings.output_dir) / ticket).resolve()


def prune_at_init_of(settings: Settings) -> PruneAtInit | None:
    if not isinstance(settings, PruneAtInitSettings) or settings.pai_method == "none":
        return None
    return PruneAtInit(
        method=settings.pai_method,
        round=settings.pai_round,
        scope=settings.pai_scope,
        ablation=settings.pai_ablation,
        synflow_iterations=settings.synflow_iterations,
        batches=settings.pai_batches,
    )


def batch_seeds(settings: ImageRunSettings) -> dict:
    """ShuffledBatches' seeds: the data order's and the augmentation's, each --seed unless set apart."""
    order, transformation = settings.data_order_seed, settings.transformation_seed
    return {
        "seed": settings.seed if order is None else order,
        "augment_seed": settings.seed if transformation is None else transformation,
    }


@dataclass
class Job:
    """One run for `train_jobs`: its run directory (not yet opened), how to load its data (with its lease held)
    and how to build its recipe and IMP settings from that data."""

    run: RunDirectory
    seed: int
    load: Callable[[], object]
    build: Callable[[object], tuple[IMPRecipe, IMPSettings]]


def train_jobs(jobs: list[Job], device: str, quiet: bool = False, batched: bool = False) -> None:
    """Train the jobs' runs: alone, one after another, or (`batched`) together in one stacked step; a run started
    alone earlier is finished alone, saying so. Finished runs do nothing and say so. Every lease is taken before
    any data loads and held throughout."""
    configure_threads()
    pending = []
    for job in jobs:
        if job.run.is_finished():
            with job.run:  # still refuses a directory holding other settings
                print(f"{job.run.path}: finished earlier; nothing to do")
        else:
            pending.append(job)
    together = [job for job in pending if not job.run.started_alone()] if batched else []
    if together:
        with contextlib.ExitStack() as stack:
            replicates = [open_job(job, stack) for job in together]
            print(f"training {len(replicates)} runs batched on {device}: " + ", ".join(r.run.name for r in replicates))
            run_replicates(replicates, StackedNetworks(), quiet)
    for job in pending:
        if job in together:
            continue
        if batched:
            print(f"{job.run.name}: started alone earlier; training it alone", flush=True)
        with contextlib.ExitStack() as stack:
            run_replicates([open_job(job, stack)], OneNetwork(), quiet)


def open_job(job: Job, stack: contextlib.ExitStack) -> Replicate:
    """The job's run opened (its lease held until `stack` closes), its data loaded and recipe built."""
    # The lease first, so a second process on a live run stops at once; a missing or broken dataset then removes
    # the new run directory again (RunDirectory does, on a UserError).
    stack.enter_context(job.run)
    seed_everything(job.seed)
    data = job.load()
    with recording_failure([job.run]):
        seed_everything(job.seed)  # again: the recipe must not depend on what the data load drew
        recipe, cfg = job.build(data)
    return Replicate(job.run, recipe, cfg)


@dataclass(frozen=True)
class ImageEntry(EntryScript):
    """An image family's IMP entry script, declared once: the contract `lth sweep`, `lth batch` and
    `lth stability` read. The hooks a family may give (None: it gives none):

    - `extra_columns(settings)`: columns of its own in every row (LeNet: `trial`);
    - `imp_overrides(settings)`: IMP settings of its own (VGG train.py: no pruning rounds, snapshots kept);
    - `dense_round(settings, imp)`: a loader of a dense round 0 trained by another script, or None to train it
      here (VGG main.py: train.py's dense run);
    - `instead(settings)`: work that replaces training, True when it did (CNN's `--plot`).
    """

    load_data: Callable[[str | None, str, int], object]
    build_recipe: Callable[[Settings, object, str], IMPRecipe]
    extra_columns: Callable[[Settings], dict] | None = None
    imp_overrides: Callable[[Settings], dict] | None = None
    dense_round: Callable[[Settings, IMPSettings], Callable[[], dict] | None] | None = None
    instead: Callable[[Settings], bool] | None = None
    several: bool = True  # several seeds, trials, run types or modes in one command line (main_or_batch)

    def imp_settings(self, settings: Settings) -> IMPSettings:
        overrides = dict(self.imp_overrides(settings)) if self.imp_overrides else {}
        if self.extra_columns is not None:
            overrides["extra_columns"] = self.extra_columns(settings)
        imp = imp_settings_of(settings, **overrides)
        if self.dense_round is not None:
            imp.initial_state = self.dense_round(settings, imp)
        return imp

    def job(self, settings: Settings, device: str) -> Job:
        """The settings' run as a job of `train_jobs`."""
        imp = self.imp_settings(settings)  # before any lease: a dense round that cannot be used is refused at once
        return Job(
            RunDirectory(settings.output_dir, settings),
            imp.seed,
            lambda: self.load_data(settings.data_dir, device, imp.seed),
            lambda data: (self.build_recipe(settings, data, device), imp),
        )

    def run_one(self, argv: list[str] | None = None) -> Path | None:
        """One run's command line."""
        settings = self.parse_args(argv)
        if self.instead is not None and self.instead(settings):
            return None
        device = resolve_device(settings.device)
        job = self.job(settings, device)
        finished = job.run.is_finished()
        train_jobs([job], device, quiet=settings.quiet)
        if not finished:
            print(f"results: {job.run.rounds_csv} and {job.run.curve_csv}")
        return job.run.path

    def run_lines(self, lines: list[list[str]]) -> list[Path]:
        """`lth batch`: the runs named by `lines` (one list of flags each), trained together."""
        settings = [self.parse_args(argv) for argv in lines]
        if len({batch_key(s) for s in settings}) > 1:
            raise UserError(
                "the lines differ in more than seed, trial, run type and IMP mode; they cannot share a batch"
            )
        device = resolve_device(settings[0].device)
        jobs = [self.job(s, device) for s in settings]
        train_jobs(jobs, device, quiet=settings[0].quiet, batched=True)
        return [job.run.path for job in jobs]

    def main(self, argv: list[str] | None = None) -> None:
        """The entry script's main: one run; several named at once (e.g. --seed 1 2 3 --run_type winning_ticket
        random_reinit) train one after another on a CPU and batched on a GPU (main_or_batch)."""
        user_facing(self._main)(argv)

    def _main(self, argv: list[str] | None) -> None:
        if self.several:
            main_or_batch(self, argv)
        else:
            self.run_one(argv)


def batch_key(settings: Settings) -> str:
    """What runs sharing a batch must agree on: every setting but seeds, run type and IMP mode, and where they run."""
    condition = {k: v for k, v in settings.condition().items() if k not in ("run_type", "control_mask", "imp_mode")}
    where = (settings.output_dir, settings.data_dir, settings.device)
    return repr((sorted(condition.items()), where))


def main_or_batch(entry: ImageEntry, argv: list[str] | None) -> None:
    """Several runs named at once (e.g. `--trial 0 1 2`) train one after another on a CPU, where batching does not
    pay (benchmarks/results/batched_cpu.txt: 0.77x), and batched on a GPU; `--batch` batches them on a CPU too.
    One run goes to the script's run_one. One line says which was chosen and why."""
    argv = list(sys.argv[1:] if argv is None else argv)
    asked = "--batch" in argv
    argv = [arg for arg in argv if arg != "--batch"]
    lines = several_runs(argv)
    if lines is None:
        entry.run_one(argv)
        return
    device = resolve_device(argv[argv.index("--device") + 1] if "--device" in argv[:-1] else "auto")
    if asked or device != "cpu":
        reason = "as --batch asks" if asked else f"on {device}, where one stacked step trains them all"
        print(f"{len(lines)} runs named: training them batched, {reason}", flush=True)
        entry.run_lines(lines)
        return
    print(
        f"{len(lines)} runs named: training them one after another on the CPU, where batching is slower "
        "(add --batch to batch them anyway)",
        flush=True,
    )
    # Winning tickets before the controls that branch from them.
    lines.sort(key=lambda line: _named_run_type(line) in CONTROL_RUN_TYPES)
    for line in lines:
        entry.run_one(line)


def _named_run_type(argv: list[str]) -> str | None:
    return argv[argv.index("--run_type") + 1] if "--run_type" in argv[:-1] else None
