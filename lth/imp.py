"""The iterative magnitude pruning loop: train, prune, rewind, repeat, with resume at any moment.

Round 0 trains the dense network. Each later round derives its mask from the weights as they are
after the previous round's training (iterative) or from the dense trained weights straight to the
round's compounded target (one-shot), then sets the surviving weights according to the run type:

- winning_ticket: rewound to iteration 0, or to iteration k of the dense run (late rewinding);
- random_reinit:  the winning ticket's mask of the round on fresh weights from the init distribution (own
                  seeded draw);
- random_prune:   a random mask with the ticket's per-layer counts of the round, on the rewind weights;
- standard_pruning: the dense trained weights pruned once by magnitude to the round's target, trained again from
                  those weights, not rewound (Chen et al.'s comparison for BERT).

The controls are branches of the winning ticket of the same settings (lth.branches): they share its round 0 and
take its mask of each round from its run directory, where a ticket keeps them. With `ticket_dir` unset they
prune their own trained weights instead (the earlier study's variant, `--control_mask own`). A branch may start
at a later round than 1 (`first_branch_round`: BERT's baselines train only the round of their sparsity).

After every round the run's state (masks, rewind weights, rows) is saved; inside a round the loop
checkpoints every `checkpoint_every` iterations. Started again, a run continues where it stopped.

This module is the one IMP driver: `run_replicates` trains R runs (R = 1 for a run alone, `run_imp`) and owns,
once, their start state, provenance and tracker, the round loop and its resume rule, wall time and energy (one
meter per round, shared evenly among the round's runs), the in-round progress records, round finishing and the
finished and failed marks. Beneath it one seam (lth.engine): an engine trains a round of the runs it is given,
one network (lth.training.OneNetwork) or R stacked ones (lth.batched.StackedNetworks).
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lth import provenance
from lth.branches import TicketBranch, keep_round_mask, state_from_results
from lth.energy import Reading, meter_for
from lth.engine import RoundEngine, RoundHooks, RoundStart
from lth.errors import UserError
from lth.init_pruning import PruneAtInit, prune_at_init
from lth.mask_file import load_mask
from lth.masks import Mask
from lth.pruning import GlobalPruning, LayerwisePruning, magnitude_scores, random_mask_like
from lth.results import CURVE_COLUMNS, ROUND_COLUMNS, RunDirectory
from lth.rewinding import derived_seed, fresh_initialization, to_cpu
from lth.settings import IMP_MODES, IMP_RUN_TYPES, STANDARD_PRUNING
from lth.stopping import StopRequested
from lth.tracking import NoTracker, tracker_for
from lth.training import Evaluate, OneNetwork, RoundSchedule, StepLoss, classification_loss, early_stop_summary


@dataclass
class IMPRecipe:
    """What a family supplies: its model, pruning policy, data, optimiser and schedule."""

    arch: str
    model_factory: Callable[[], nn.Module]
    policy: LayerwisePruning | GlobalPruning | Callable[[Mask], Any]
    make_optimizer: Callable[[nn.Module], torch.optim.Optimizer]
    batches: Callable[[int], Any]
    evaluate: Evaluate
    schedule: RoundSchedule
    step_loss: StepLoss = classification_loss
    lr_at: Callable[[int], float] | None = None
    prunable_names: list[str] | None = None
    device: str = "cpu"
    compile: bool = False  # torch.compile the network's forward and backward (lth.training.compile_options)
    precision: str = "auto"  # the training steps' arithmetic (lth.training.autocast_for)
    max_grad_norm: float = 0.0  # > 0: clip the gradients' global norm before each step
    # The network random_reinit draws its fresh weights from (None: model_factory). A family whose model_factory
    # loads pre-trained weights (BERT) gives one that initialises the architecture from scratch.
    fresh_model_factory: Callable[[], nn.Module] | None = None
    # Turns a round's curve into its row's metric columns; image families select on validation loss.
    summarize: Callable[[list[dict]], dict] = early_stop_summary
    # One line printed per finished round (None: the image families' early-stop line).
    describe_row: Callable[[dict], str] | None = None
    # Leading CSV columns (others a row carries follow them); text families report dev metrics instead.
    round_columns: list[str] = field(default_factory=lambda: list(ROUND_COLUMNS))
    curve_columns: list[str] = field(default_factory=lambda: list(CURVE_COLUMNS))


@dataclass
class IMPSettings:
    rounds: int
    seed: int
    mode: str = "iterative"
    run_type: str = "winning_ticket"
    rewind_iteration: int = 0
    extra_columns: dict[str, Any] = field(default_factory=dict)
    # Round 0 also keeps the weights at these iterations (state["snapshots"]), so later runs can rewind to them.
    snapshot_iterations: tuple[int, ...] = ()
    # Separate sources of randomness (None: `seed`, as before they existed): the initial weights, and the
    # dropout draws; the data order and augmentation seeds live in the recipe's batches.
    init_seed: int | None = None
    transformation_seed: int | None = None
    # Pruning at initialization: round 0 trains the initial weights under this method's mask.
    prune_at_init: PruneAtInit | None = None
    # Where a run with no saved state starts (e.g. `start_from_dense` of a dense round trained earlier);
    # None: a fresh initialisation and round 0 trained here.
    initial_state: Callable[[], dict] | None = None
    # A control's winning ticket (its run directory), whose round 0 and masks it takes; None for a ticket, and
    # for a control of the earlier study's variant, which prunes its own trained weights.
    ticket_dir: Path | None = None
    # The first round after round 0 that a branch of the ticket trains; the rounds between are not run (a BERT
    # baseline trains the ticket's round of its sparsity only). 1 for the image families' controls.
    first_branch_round: int = 1
    # How to train the ticket, for the one line of a branch whose ticket nobody trains (None: the generic line).
    ticket_hint: str | None = None


def describe_early_stop_row(row: dict) -> str:
    return (
        f"round {row['round']:>2}: {row['weights_remaining_pct']:6.2f}% weights remain, "
        f"early stop at {row['early_stop_iteration']} (val loss {row['val_loss']:.4f}), "
        f"test acc {row['test_accuracy_early_stop']:.2f}% there, {row['test_accuracy_final']:.2f}% at end"
    )


def policy_for(recipe: IMPRecipe, mask: Mask):
    """Policies may depend on the mask's layer names (rates per layer); a callable builds them."""
    if isinstance(recipe.policy, (LayerwisePruning, GlobalPruning)):
        return recipe.policy
    return recipe.policy(mask)


def fresh_state(recipe: IMPRecipe, cfg: IMPSettings) -> dict:
    """The state of a run before its round 0: its initial weights (seeded) and the dense mask (or the mask of
    its pruning-at-initialization method)."""
    torch.manual_seed(cfg.seed if cfg.init_seed is None else cfg.init_seed)
    model = recipe.model_factory()
    init = to_cpu(model.state_dict())
    mask = Mask.dense(model, recipe.prunable_names)
    if cfg.prune_at_init is not None:
        mask, init = _pruned_at_init(recipe, cfg, model, mask, init)
    return {
        "next_round": 0,
        "init": init,
        "rewind": None,  # weights at the rewind iteration k of the dense run (k > 0 only)
        "dense_trained": None,  # weights after round 0, for one-shot pruning
        "trained": None,  # weights after the last finished round, for iterative pruning
        "mask": mask.state_dict(),
        "rows": [],
        "curve": [],
    }


def _pruned_at_init(recipe: IMPRecipe, cfg: IMPSettings, model: nn.Module, dense: Mask, init: dict):
    """The mask of a pruning-at-initialization run and the weights it trains from (fresh ones for `reinit`)."""
    spec = cfg.prune_at_init
    model = model.to(recipe.device)
    generator = torch.Generator().manual_seed(derived_seed(cfg.seed, 6))
    mask = prune_at_init(
        spec, model, dense.to(recipe.device), policy_for(recipe, dense), recipe.batches, recipe.step_loss, generator
    ).to("cpu")
    if spec.ablation == "reinit":
        init = fresh_initialization(recipe.model_factory, derived_seed(cfg.seed, 7))
    return mask, init


def start_from_dense(dense: dict, cfg: IMPSettings) -> dict:
    """The state of a run whose round 0 is a dense round trained earlier (a finished `rounds=0` run's state).

    Training round 0 here would give the same weights and rows (same seed and recipe), so a dense run
    shared by several runs (rewinding points, controls) replaces it. Rewinding to k > 0 needs the dense
    run to have kept a snapshot at k (`snapshot_iterations`).
    """
    if dense.get("next_round", 0) < 1 or not dense.get("rows"):
        raise ValueError("the dense run has not finished its round 0")
    k = cfg.rewind_iteration
    snapshots = dense.get("snapshots") or {}
    if k > 0 and k not in snapshots:
        raise ValueError(f"the dense run kept no weights at iteration {k} (it kept {sorted(snapshots)})")
    row = {**dense["rows"][0], "run_type": cfg.run_type, "seed": cfg.seed, **cfg.extra_columns}
    return {
        "next_round": 1,
        "init": dense["init"],
        "rewind": snapshots[k] if k > 0 else None,
        "dense_trained": dense["dense_trained"],
        "trained": dense["dense_trained"],
        "mask": dense["mask"],
        "rows": [row],
        "curve": [point for point in dense["curve"] if point["round"] == 0],
    }


def starting_state(run: RunDirectory, recipe: IMPRecipe, cfg: IMPSettings) -> dict:
    """A run's saved state, or where it starts: a control at its ticket's round 0, a dense round trained
    elsewhere, or a fresh initialisation."""
    state = run.load_state()
    if state is not None:
        return state
    identity = set(run.settings.identity())
    rebuilt = None if cfg.rewind_iteration > 0 else state_from_results(run.path, fresh_state(recipe, cfg), identity)
    if rebuilt is not None:  # its state.pt did not travel with its results: the next round from its kept mask
        print(f"{run.name}: no run state; continuing at round {rebuilt['next_round']} from its results", flush=True)
        run.save_state(rebuilt)
        return rebuilt
    if cfg.ticket_dir is not None:
        branch = TicketBranch(cfg.ticket_dir, run.name, train_first=cfg.ticket_hint)
        state = branch.start_state(
            fresh_state(recipe, cfg),
            cfg.run_type,
            cfg.seed,
            cfg.rewind_iteration,
            cfg.extra_columns,
            identity=identity,
            first_round=cfg.first_branch_round,
        )
    elif cfg.initial_state is not None:  # e.g. VGG's dense round trained by train.py
        state = cfg.initial_state()
    else:
        return fresh_state(recipe, cfg)
    keep_round_mask(run.path, 0, Mask.from_state_dict(state["mask"]), run.name)  # round 0, trained elsewhere
    run.save_state(state)
    run.write_results(state["rows"], state["curve"], recipe.round_columns, recipe.curve_columns)
    return state


def round_start(run: RunDirectory, round_index: int, state: dict, recipe: IMPRecipe, cfg: IMPSettings):
    """The mask of this round and the weights its training starts from; the run keeps the mask. A mask kept when
    the round first started is the round's mask (a run rebuilt from its results has no trained weights to prune)."""
    kept = run.mask_file(round_index)
    if round_index > 0 and kept.exists() and cfg.run_type != STANDARD_PRUNING:
        return load_mask(kept)[0], _round_weights(round_index, state, recipe, cfg)
    mask, weights = round_mask_and_weights(round_index, state, recipe, cfg, run.name)
    keep_round_mask(run.path, round_index, mask, run.name)
    return mask, weights


def round_mask_and_weights(
    round_index: int, state: dict, recipe: IMPRecipe, cfg: IMPSettings, name: str = "this run"
) -> tuple[Mask, dict]:
    """The mask of round `round_index` and the weights it trains from, by the run type (see the module's text)."""
    if round_index == 0:
        return Mask.from_state_dict(state["mask"]), state["init"]
    previous = Mask.from_state_dict(state["mask"])
    dense = Mask({n: torch.ones_like(m) for n, m in previous.layers.items()})
    if cfg.run_type == STANDARD_PRUNING:  # the trained dense network pruned once to this round's target, not rewound
        trained = state["dense_trained"]
        mask = policy_for(recipe, dense).prune(magnitude_scores(trained, dense), dense, rounds=round_index)
        return mask, trained
    if cfg.ticket_dir is not None:  # a branch of the winning ticket: its mask of this round, drawn inside the dense
        mask, within = TicketBranch(cfg.ticket_dir, name, train_first=cfg.ticket_hint).mask(round_index), dense
    else:  # the run's own magnitude mask (the earlier study's controls prune their own weights too)
        if cfg.mode == "oneshot":
            within, source, rounds = dense, state["dense_trained"], round_index
        else:
            within, source, rounds = previous, state["trained"], 1
        mask = policy_for(recipe, within).prune(magnitude_scores(source, within), within, rounds=rounds)
    if cfg.run_type == "random_prune":
        generator = torch.Generator().manual_seed(derived_seed(cfg.seed, 4, round_index))
        mask = random_mask_like(mask, within=within, generator=generator)
    return mask, _round_weights(round_index, state, recipe, cfg)


def _round_weights(round_index: int, state: dict, recipe: IMPRecipe, cfg: IMPSettings) -> dict:
    """The weights a round > 0 trains from: fresh ones for random_reinit, else the rewind point."""
    if cfg.run_type == "random_reinit":
        fresh = recipe.fresh_model_factory or recipe.model_factory
        return fresh_initialization(fresh, derived_seed(cfg.seed, 5, round_index))
    return state["rewind"] if cfg.rewind_iteration > 0 else state["init"]


def transformation_seed(cfg: IMPSettings) -> int:
    """The seed of a run's dropout draws."""
    return cfg.seed if cfg.transformation_seed is None else cfg.transformation_seed


def new_captures(progress: dict | None) -> dict:
    """The weights a round keeps for later rounds (at the rewind iteration, and snapshots), as saved so far."""
    return {
        "rewind": progress.get("rewind") if progress else None,
        "snapshots": dict(progress.get("snapshots") or {}) if progress else {},
    }


def capture_weights(round_index: int, iteration: int, cfg: IMPSettings, captured: dict, weights) -> None:
    """Before iteration `iteration` of round 0: keep `weights()` if a later round rewinds to it or it is a snapshot."""
    if round_index != 0:
        return
    if cfg.rewind_iteration > 0 and iteration == cfg.rewind_iteration:
        captured["rewind"] = weights()
    if iteration in cfg.snapshot_iterations:
        captured["snapshots"][iteration] = weights()


def finish_round(
    round_index: int,
    run: RunDirectory,
    recipe: IMPRecipe,
    cfg: IMPSettings,
    state: dict,
    mask: Mask,
    trained: dict,
    curve: list[dict],
    cost: dict,
    captured: dict,
) -> dict:
    """A trained round's row and curve into the run's state and CSVs."""
    row = {
        "round": round_index,
        "weights_remaining_pct": mask.weights_remaining_pct(),
        "sparsity_pct": 100.0 * mask.sparsity(),
        **recipe.summarize(curve),
        "run_type": cfg.run_type,
        "arch": recipe.arch,
        "seed": cfg.seed,
        **cost,
        **cfg.extra_columns,
    }
    state["rows"].append(row)
    state["curve"].extend({"round": round_index, **point} for point in curve)
    state["mask"] = mask.state_dict()
    state["trained"] = trained
    if round_index == 0:
        state["dense_trained"] = trained
        state["rewind"] = captured["rewind"]
        if cfg.snapshot_iterations:
            state["snapshots"] = captured["snapshots"]
    state["next_round"] = round_index + 1
    run.save_state(state)
    run.clear_progress()
    run.write_results(state["rows"], state["curve"], recipe.round_columns, recipe.curve_columns)
    return row


# --- the driver ----------------------------------------------------------------------------------------------
@dataclass
class Replicate:
    """One run the driver trains: its opened run directory (lease held), recipe and IMP settings."""

    run: RunDirectory
    recipe: IMPRecipe
    cfg: IMPSettings
    state: dict | None = None
    tracker: NoTracker = field(default_factory=NoTracker)


def check_imp_settings(cfg: IMPSettings) -> None:
    if cfg.mode not in IMP_MODES:
        raise ValueError(f"mode must be one of {IMP_MODES}")
    if cfg.run_type not in IMP_RUN_TYPES:
        raise ValueError(f"run type must be one of {IMP_RUN_TYPES}")
    if cfg.first_branch_round != 1 and (cfg.ticket_dir is None or not 1 <= cfg.first_branch_round <= cfg.rounds):
        raise ValueError("first_branch_round is a round of a branch's ticket, from 1 to `rounds`")


@contextlib.contextmanager
def recording_failure(runs: list[RunDirectory]) -> Iterator[None]:
    """Leave a `failed` note (for `lth status`) in every run of the work when it stops on an error; clear them on
    success. A stop on request is no failure: the runs resume."""
    try:
        yield
    except (KeyboardInterrupt, StopRequested):
        raise
    except BaseException as error:
        for run in runs:
            with contextlib.suppress(OSError):
                run.note_failure(error)
        raise
    for run in runs:
        run.clear_failure()


def run_imp(run: RunDirectory, recipe: IMPRecipe, cfg: IMPSettings, quiet: bool = False) -> list[dict]:
    """Run (or resume) IMP in an opened run directory, alone (a batch of one); returns the per-round rows."""
    run_replicates([Replicate(run, recipe, cfg)], OneNetwork(), quiet)
    state = run.load_state()
    return state["rows"] if state else []


def run_replicates(replicates: list[Replicate], engine: RoundEngine, quiet: bool = False) -> None:
    """Run (or resume) IMP for the replicates (opened run directories), their rounds trained by `engine`; each
    ends as its own finished run directory. Every training path comes here."""
    for r in replicates:
        check_imp_settings(r.cfg)
    todo = []
    for r in replicates:
        if r.run.is_finished():
            print(f"{r.run.path}: finished earlier; nothing to do")
        else:
            todo.append(r)
    if not todo:
        return
    # Winning tickets first: each starts its round (and keeps its mask) before the controls that branch from it.
    todo.sort(key=lambda r: r.cfg.ticket_dir is not None)
    engine.prepare(todo)  # refusals before anything is written
    for r in todo:  # a run is never continued by the other engine
        if not engine.batched and r.run.trained_batched():
            raise UserError(
                f"{r.run.path} is being trained batched with other runs; finish it with the same batched command"
            )
        if engine.batched and r.run.started_alone():
            raise UserError(
                f"{r.run.path} was being trained alone; finish it alone (a run is never continued by another path)"
            )
    if engine.batched:  # any batch may continue a batched run: a replicate's results do not depend on its batch-mates
        names = sorted(r.run.name for r in todo)
        for r in todo:
            r.run.mark_batched(names)
    if any(torch.device(r.recipe.device).type == "cuda" for r in todo):
        torch.backends.cudnn.benchmark = True
    with recording_failure([r.run for r in todo]):
        try:
            _round_loop(todo, engine, quiet)
        finally:
            for r in todo:
                r.tracker.close()
    for r in todo:
        r.run.mark_finished()


def _round_loop(todo: list[Replicate], engine: RoundEngine, quiet: bool) -> None:
    in_batch = {r.run.path.resolve() for r in todo}
    for r in todo:
        # A control whose ticket trains its round 0 in this batch starts once that round is done.
        waits_for_batch_mate = r.cfg.ticket_dir is not None and not r.run.has_state() and r.cfg.ticket_dir in in_batch
        r.state = None if waits_for_batch_mate else starting_state(r.run, r.recipe, r.cfg)
        provenance.record(r.run.path, r.recipe.device)
        r.tracker = tracker_for(r.run.settings, r.run.path)
    rounds = max(r.cfg.rounds for r in todo)
    waiting = any(r.state is None for r in todo)
    first = 0 if waiting else min(r.state["next_round"] for r in todo)
    describe = todo[0].recipe.describe_row or describe_early_stop_row
    name = todo[0].run.name if len(todo) == 1 else f"{len(todo)} runs batched"
    with tqdm(total=rounds + 1, initial=min(first, rounds + 1), desc=name, unit="round", dynamic_ncols=True,
              disable=quiet) as bar:  # fmt: skip
        for round_index in range(first, rounds + 1):
            for r in todo:
                if r.state is None and round_index > 0:
                    r.state = starting_state(r.run, r.recipe, r.cfg)
            group = [r for r in todo if r.state is not None and r.state["next_round"] == round_index]
            if group:
                rows = _train_round(round_index, group, engine, quiet)
                if not quiet:
                    for r, row in zip(group, rows, strict=True):
                        tqdm.write(("" if len(todo) == 1 else f"{r.run.name}: ") + describe(row))
            bar.update(1)
    for r in todo:  # a branch of a ticket in a batch of no pruning rounds: the ticket's round 0 is its result
        if r.state is None:
            r.state = starting_state(r.run, r.recipe, r.cfg)


def _train_round(round_index: int, group: list[Replicate], engine: RoundEngine, quiet: bool) -> list[dict]:
    """Prepare (or resume) one round of the group, have the engine train it, and finish each replicate's round.

    Resume rule: the round continues from the saved progress only if every replicate holds progress of this
    round, written by this kind of engine, at the same iteration; otherwise it starts again from its saved start,
    which gives the same results (everything in a round follows from its start)."""
    count = len(group)
    progress = [r.run.load_progress() for r in group]
    resumable = all(
        p is not None
        and p["round"] == round_index
        and bool(p.get("batched")) == engine.batched
        and p["loop"]["iteration"] == progress[0]["loop"]["iteration"]
        for p in progress
    )
    if not resumable:
        progress = [None] * count  # e.g. left over from a round that was finished after it was written
    starts = []
    for r, p in zip(group, progress, strict=True):
        dropout_seed = derived_seed(transformation_seed(r.cfg), 3, round_index)
        if p is not None:
            mask = Mask.from_state_dict(p["mask"])
            keep_round_mask(r.run.path, round_index, mask, r.run.name)  # progress saved before runs kept masks
            starts.append(RoundStart(mask, None, p, dropout_seed))
        else:
            mask, weights = round_start(r.run, round_index, r.state, r.recipe, r.cfg)
            starts.append(RoundStart(mask, weights, None, dropout_seed))
    captured = [new_captures(p) for p in progress]
    elapsed = [p["elapsed"] if p else 0.0 for p in progress]
    # Energy and CO2e, like the wall time, add up over the pieces of a resumed round.
    spent = [Reading(p.get("energy_kwh", 0.0), p.get("co2_kg", 0.0)) if p else Reading(0.0, 0.0) for p in progress]
    meter = meter_for(group[0].run.settings)
    first = group[0]
    schedule = dataclasses.replace(
        first.recipe.schedule, start_iteration=first.cfg.rewind_iteration if round_index > 0 else 0
    )
    meter.start()
    began = time.perf_counter()

    def energy_so_far(final: bool = False) -> list[Reading]:
        lap = meter.stop() if final else meter.lap()
        return [s.add(lap, share=1.0 / count) for s in spent]  # one meter for the round, shared evenly

    def checkpoint(engine_states: list[dict]) -> None:
        wall = (time.perf_counter() - began) / count
        energy = energy_so_far()
        for j, r in enumerate(group):
            r.run.save_progress(
                {
                    "round": round_index,
                    **({"batched": True} if engine.batched else {}),
                    "mask": starts[j].mask.state_dict(),
                    **engine_states[j],
                    **captured[j],
                    "elapsed": elapsed[j] + wall,
                    "energy_kwh": energy[j].energy_kwh,
                    "co2_kg": energy[j].co2_kg,
                }
            )

    def capture(j: int, iteration: int, weights: Callable[[], dict]) -> None:
        capture_weights(round_index, iteration, group[j].cfg, captured[j], weights)

    hooks = RoundHooks(
        schedule=schedule,
        checkpoint=checkpoint,
        capture=capture,
        evaluated=lambda j, point: group[j].tracker.log_curve(round_index, point),
        description=f"round {round_index}/{first.cfg.rounds}",
        progress=not quiet,
    )
    trained = engine.train(round_index, group, starts, hooks)
    wall = (time.perf_counter() - began) / count
    energy = energy_so_far(final=True)
    rows = []
    for j, r in enumerate(group):
        cost = {"wall_time_s": elapsed[j] + wall, **meter.columns(energy[j])}
        if engine.batched and cost["energy_method"] and meter.available:
            cost["energy_method"] += f"; shared evenly by {count} batched runs"
        row = finish_round(round_index, r.run, r.recipe, r.cfg, r.state, starts[j].mask, trained[j].weights,
                           trained[j].curve, cost, captured[j])  # fmt: skip
        r.tracker.log_round(row)
        rows.append(row)
    return rows
