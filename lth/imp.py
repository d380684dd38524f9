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
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from lth import provenance
from lth.branches import TicketBranch, keep_round_mask, state_from_results
from lth.energy import EnergyMeter, Reading, meter_for
from lth.errors import UserError
from lth.init_pruning import PruneAtInit, prune_at_init
from lth.mask_file import load_mask
from lth.masks import Mask
from lth.pruning import GlobalPruning, LayerwisePruning, magnitude_scores, random_mask_like
from lth.results import CURVE_COLUMNS, ROUND_COLUMNS, RunDirectory, is_finished, round_mask_path
from lth.rewinding import derived_seed, fresh_initialization, to_cpu
from lth.settings import IMP_MODES, IMP_RUN_TYPES, STANDARD_PRUNING
from lth.storage import atomic_write_text
from lth.tracking import NoTracker, tracker_for
from lth.training import (
    Evaluate,
    RoundSchedule,
    StepLoss,
    classification_loss,
    compile_options,
    early_stop_summary,
    train_round,
)


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


def _policy_for(recipe: IMPRecipe, mask: Mask):
    """Policies may depend on the mask's layer names (rates per layer); a callable builds them."""
    if isinstance(recipe.policy, (LayerwisePruning, GlobalPruning)):
        return recipe.policy
    return recipe.policy(mask)


def _new_state(recipe: IMPRecipe, cfg: IMPSettings) -> dict:
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
        spec, model, dense.to(recipe.device), _policy_for(recipe, dense), recipe.batches, recipe.step_loss, generator
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
    elsewhere, or a fresh initialisation (every training path starts here)."""
    state = run.load_state()
    if state is not None:
        return state
    identity = set(run.settings.identity())
    rebuilt = None if cfg.rewind_iteration > 0 else state_from_results(run.path, _new_state(recipe, cfg), identity)
    if rebuilt is not None:  # its state.pt did not travel with its results: the next round from its kept mask
        print(f"{run.name}: no run state; continuing at round {rebuilt['next_round']} from its results", flush=True)
        run.save_state(rebuilt)
        return rebuilt
    if cfg.ticket_dir is not None:
        branch = TicketBranch(cfg.ticket_dir, run.name, train_first=cfg.ticket_hint)
        state = branch.start_state(
            _new_state(recipe, cfg),
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
        return _new_state(recipe, cfg)
    keep_round_mask(run.path, 0, Mask.from_state_dict(state["mask"]), run.name)  # round 0, trained elsewhere
    run.save_state(state)
    run.write_results(state["rows"], state["curve"], recipe.round_columns, recipe.curve_columns)
    return state


def round_start(run: RunDirectory, round_index: int, state: dict, recipe: IMPRecipe, cfg: IMPSettings):
    """The mask of this round and the weights its training starts from; the run keeps the mask. A mask kept when
    the round first started is the round's mask (a run rebuilt from its results has no trained weights to prune)."""
    kept = round_mask_path(run.path, round_index)
    if round_index > 0 and kept.exists() and cfg.run_type != STANDARD_PRUNING:
        return load_mask(kept)[0], _round_weights(round_index, state, recipe, cfg)
    mask, weights = _prepare_round(round_index, state, recipe, cfg, run.name)
    keep_round_mask(run.path, round_index, mask, run.name)
    return mask, weights


def _prepare_round(
    round_index: int, state: dict, recipe: IMPRecipe, cfg: IMPSettings, name: str = "this run"
) -> tuple[Mask, dict]:
    if round_index == 0:
        return Mask.from_state_dict(state["mask"]), state["init"]
    previous = Mask.from_state_dict(state["mask"])
    dense = Mask({n: torch.ones_like(m) for n, m in previous.layers.items()})
    if cfg.run_type == STANDARD_PRUNING:  # the trained dense network pruned once to this round's target, not rewound
        trained = state["dense_trained"]
        mask = _policy_for(recipe, dense).prune(magnitude_scores(trained, dense), dense, rounds=round_index)
        return mask, trained
    if cfg.ticket_dir is not None:  # a branch of the winning ticket: its mask of this round, drawn inside the dense
        mask, within = TicketBranch(cfg.ticket_dir, name, train_first=cfg.ticket_hint).mask(round_index), dense
    else:  # the run's own magnitude mask (the earlier study's controls prune their own weights too)
        if cfg.mode == "oneshot":
            within, source, rounds = dense, state["dense_trained"], round_index
        else:
            within, source, rounds = previous, state["trained"], 1
        mask = _policy_for(recipe, within).prune(magnitude_scores(source, within), within, rounds=rounds)
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


def run_imp(run: RunDirectory, recipe: IMPRecipe, cfg: IMPSettings, quiet: bool = False) -> list[dict]:
    """Run (or resume) IMP in an opened run directory; returns the per-round rows."""
    if cfg.mode not in IMP_MODES:
        raise ValueError(f"mode must be one of {IMP_MODES}")
    if cfg.run_type not in IMP_RUN_TYPES:
        raise ValueError(f"run type must be one of {IMP_RUN_TYPES}")
    if cfg.first_branch_round != 1 and (cfg.ticket_dir is None or not 1 <= cfg.first_branch_round <= cfg.rounds):
        raise ValueError("first_branch_round is a round of a branch's ticket, from 1 to `rounds`")
    if is_finished(run.path):
        print(f"{run.path}: finished earlier; nothing to do")
        state = run.load_state()
        return state["rows"] if state else []

    if (run.path / "batched.json").exists():  # never continued by another training path
        raise UserError(f"{run.path} is being trained batched with other runs; finish it with the same batched command")
    state = starting_state(run, recipe, cfg)
    device = torch.device(recipe.device)
    model = recipe.model_factory().to(device)
    if recipe.device != "cpu" and device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    if recipe.compile:
        model.compile(**compile_options(device))  # in place: the state dict keeps its names
    meter = meter_for(run.settings)
    provenance.record(run.path, recipe.device)
    tracker = tracker_for(run.settings, run.path)

    rounds_bar = tqdm(
        total=cfg.rounds + 1,
        initial=state["next_round"],
        desc=run.name,
        unit="round",
        dynamic_ncols=True,
        disable=quiet,
    )
    try:
        for round_index in range(state["next_round"], cfg.rounds + 1):
            row = _run_round(round_index, run, recipe, cfg, state, model, quiet, meter, tracker)
            rounds_bar.update(1)
            if not quiet:
                tqdm.write((recipe.describe_row or describe_early_stop_row)(row))
    finally:
        rounds_bar.close()
        tracker.close()
    atomic_write_text(run.path / "finished", time.strftime("%Y-%m-%dT%H:%M:%S\n"))
    return state["rows"]


def _run_round(
    round_index: int,
    run: RunDirectory,
    recipe: IMPRecipe,
    cfg: IMPSettings,
    state: dict,
    model: nn.Module,
    quiet: bool,
    meter: EnergyMeter,
    tracker: NoTracker,
) -> dict:
    """Prepare (or resume) one round, train it, and save its row, curve and the run state."""
    device = torch.device(recipe.device)
    k = cfg.rewind_iteration
    progress = run.load_progress()
    if progress is not None and progress["round"] != round_index:
        progress = None  # left over from a round that was finished after it was written
    if progress is not None:
        mask = Mask.from_state_dict(progress["mask"])
        keep_round_mask(run.path, round_index, mask, run.name)  # progress saved before runs kept their masks
    else:
        mask, weights = round_start(run, round_index, state, recipe, cfg)
        model.load_state_dict(weights)
        # Dropout draws from the global RNG: seed it per round, so a run resumed between rounds
        # trains exactly like one that never stopped (inside a round the checkpoint carries it).
        torch.manual_seed(derived_seed(transformation_seed(cfg), 3, round_index))
    mask = mask.to(device)
    mask.apply(model)

    captured = new_captures(progress)
    elapsed_before = progress["elapsed"] if progress else 0.0
    started = time.perf_counter()
    # Energy and CO2e, like the wall time, add up over the pieces of a resumed round.
    spent = Reading(progress.get("energy_kwh", 0.0), progress.get("co2_kg", 0.0)) if progress else Reading(0.0, 0.0)
    meter.start()

    def energy_so_far(final: bool = False) -> Reading:
        return spent.add(meter.stop() if final else meter.lap())

    def capture_rewind(iteration: int) -> None:
        capture_weights(round_index, iteration, cfg, captured, lambda: to_cpu(model.state_dict()))

    def save_progress(loop_state: dict) -> None:
        run.save_progress(
            {
                "round": round_index,
                "mask": mask.state_dict(),
                "loop": loop_state,
                "rewind": captured["rewind"],
                "snapshots": captured["snapshots"],
                "elapsed": elapsed_before + time.perf_counter() - started,
                "energy_kwh": energy_so_far().energy_kwh,
                "co2_kg": spent.co2_kg,
            }
        )

    schedule = RoundSchedule(
        iterations=recipe.schedule.iterations,
        eval_every=recipe.schedule.eval_every,
        checkpoint_every=recipe.schedule.checkpoint_every,
        start_iteration=k if round_index > 0 else 0,
    )
    curve = train_round(
        model,
        recipe.make_optimizer(model),
        recipe.batches,
        recipe.step_loss,
        recipe.evaluate,
        schedule,
        enforce_mask=mask.enforcer(model),
        lr_at=recipe.lr_at,
        resume=progress["loop"] if progress else None,
        on_checkpoint=save_progress,
        on_iteration=capture_rewind,
        on_evaluation=lambda point: tracker.log_curve(round_index, point),
        description=f"round {round_index}/{cfg.rounds}",
        progress=not quiet,
        device=device,
        precision=recipe.precision,
        max_grad_norm=recipe.max_grad_norm,
    )
    cost = {"wall_time_s": elapsed_before + time.perf_counter() - started, **meter.columns(energy_so_far(final=True))}
    row = finish_round(round_index, run, recipe, cfg, state, mask, to_cpu(model.state_dict()), curve, cost, captured)
    tracker.log_round(row)
    return row


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
    """A trained round's row and curve into the run's state and CSVs (every training path ends here)."""
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
