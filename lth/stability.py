"""Instability analysis (Frankle, Dziugaite, Roy & Carbin, ICML 2020, "Linear mode connectivity and the lottery
ticket hypothesis").

From the weights at iteration k of a run's dense training (with the run's final mask applied for a ticket: IMP
with rewinding to k), two copies train to the end of the schedule under different SGD noise (their own data-order
and augmentation seeds; the optimiser state at k is copied to both). The error barrier is the maximum error on the
straight line between the two trained networks minus the mean of the two ends' errors. For networks with
BatchNorm the running statistics are recomputed at every point of the path on training batches (the CSV says so).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path

import torch
from torch import nn

from lth.errors import UserError
from lth.imp import IMPRecipe, fresh_state
from lth.masks import Mask
from lth.rewinding import derived_seed, to_cpu
from lth.training import RoundSchedule, evaluate_classifier, train_round

STABILITY_COLUMNS = [
    "k", "alpha", "train_loss", "train_error", "val_loss", "val_error", "test_loss", "test_error", "bn_recomputed",
]  # fmt: skip
BARRIER_COLUMNS = ["k", "train_barrier", "val_barrier", "test_barrier", "end_test_error_a", "end_test_error_b"]
TRAIN_SUBSET = 5000  # training examples the train loss and error along the path are measured on
BN_BATCHES = 20  # training batches that recompute BatchNorm statistics at a point of the path


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def interpolate(a: dict, b: dict, alpha: float) -> dict:
    """(1 - alpha) a + alpha b for floating tensors; integer buffers (BatchNorm's batch count) from a."""
    return {n: torch.lerp(a[n], b[n], alpha) if a[n].is_floating_point() else a[n].clone() for n in a}


def recompute_batchnorm(model: nn.Module, batches, count: int = BN_BATCHES) -> None:
    """Running statistics as the plain average over `count` training batches (train mode, no gradient)."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None  # cumulative average
    model.train()
    with torch.no_grad():
        for i in range(count):
            model(batches(i)[0])


def evaluate_point(model: nn.Module, recipe: IMPRecipe, train_x, train_y) -> dict:
    metrics = recipe.evaluate(model)
    train_loss, train_accuracy = evaluate_classifier(model, train_x, train_y)
    return {
        "train_loss": train_loss,
        "train_error": 100.0 - train_accuracy,
        "val_loss": metrics["val_loss"],
        "val_error": 100.0 - metrics["val_accuracy"],
        "test_loss": metrics["test_loss"],
        "test_error": 100.0 - metrics["test_accuracy"],
    }


def train_parent(recipe: IMPRecipe, init: dict, k: int, device) -> tuple[dict, dict | None]:
    """Dense weights and optimiser state at iteration k of the run's own training (k = 0: the initialisation)."""
    model = recipe.model_factory().to(device)
    model.load_state_dict(init)
    optimizer = recipe.make_optimizer(model)
    if k == 0:
        return to_cpu(model.state_dict()), None
    schedule = RoundSchedule(k, eval_every=k)
    train_round(model, optimizer, recipe.batches, recipe.step_loss, lambda m: {}, schedule, lr_at=recipe.lr_at,
                progress=False, device=device)  # fmt: skip
    return to_cpu(model.state_dict()), optimizer.state_dict()


def train_child(recipe: IMPRecipe, parent: dict, optimizer_state: dict | None, mask: Mask, k: int, device) -> dict:
    """One copy trained from iteration k to the end of the schedule, its mask enforced."""
    model = recipe.model_factory().to(device)
    model.load_state_dict(parent)
    mask = mask.to(device)
    mask.apply(model)
    optimizer = recipe.make_optimizer(model)
    if optimizer_state is not None:  # a copy: the optimiser updates its state tensors in place
        optimizer.load_state_dict(copy.deepcopy(optimizer_state))
    schedule = RoundSchedule(recipe.schedule.iterations, eval_every=recipe.schedule.iterations, start_iteration=k)
    train_round(model, optimizer, recipe.batches, recipe.step_loss, lambda m: {}, schedule,
                enforce_mask=mask.enforcer(model), lr_at=recipe.lr_at, progress=False, device=device)  # fmt: skip
    return to_cpu(model.state_dict())


def linear_path(
    recipe: IMPRecipe, a: dict, b: dict, mask: Mask, points: int, train_x, train_y, k: int, device
) -> list[dict]:
    """Errors at `points` evenly spaced points from a (alpha 0) to b (alpha 1)."""
    model = recipe.model_factory().to(device)
    batchnorm = has_batchnorm(model)
    rows = []
    for i in range(points):
        alpha = i / (points - 1)
        model.load_state_dict(interpolate(a, b, alpha))
        mask.to(device).apply(model)  # already zero at both ends; kept exact
        if batchnorm:
            recompute_batchnorm(model, recipe.batches)
        rows.append(
            {"k": k, "alpha": alpha, **evaluate_point(model, recipe, train_x, train_y), "bn_recomputed": batchnorm}
        )
    return rows


def barrier(rows: list[dict], split: str) -> float:
    errors = [r[f"{split}_error"] for r in sorted(rows, key=lambda r: r["alpha"])]
    return max(errors) - (errors[0] + errors[-1]) / 2


def child_recipes(build, settings, data, device, seed: int) -> tuple[IMPRecipe, IMPRecipe]:
    """The two copies' recipes: the run's recipe with data-order and augmentation seeds of their own."""
    recipes = []
    for copy_index in (1, 2):
        noise = derived_seed(seed, 21, copy_index)
        changed = dataclasses.replace(copy.copy(settings), data_order_seed=noise, transformation_seed=noise)
        recipes.append(build(changed, data, device))
    return recipes[0], recipes[1]


def run_stability(script: str, run_argv: list[str], ks: list[int], points: int, output_dir: str | None) -> Path:
    """Instability analysis of the run that `script run_argv` names: its dense network, or (if that run has
    finished pruning rounds) its last round's ticket. One CSV per k, resumable; barriers.csv and the figures."""
    from lth.arguments import resolve_device
    from lth.experiment import configure_threads, imp_settings_of, seed_everything
    from lth.lease import DirectoryLock
    from lth.results import RunFiles, csv_value, ensure_output_dir, read_csv_rows, write_csv
    from lth.sweep import image_entry, load_script

    entry = image_entry(load_script(script), f"lth stability: {script}", "give LeNet's, CNN's or VGG's main.py")
    settings = entry.parse_args(run_argv)
    device = resolve_device(settings.device)
    configure_threads()
    run_dir = Path(entry.run_directory(settings))
    if not run_dir.is_absolute():
        run_dir = Path(script).resolve().parent / run_dir
    seed_everything(settings.seed)
    data = entry.load_data(settings.data_dir, device, settings.seed)
    recipe = entry.build_recipe(settings, data, device)
    too_late = [k for k in ks if k >= recipe.schedule.iterations]
    if too_late:  # the copies would get no training: a barrier of 0 that means nothing
        raise UserError(
            f"--k {' '.join(map(str, too_late))}: at or beyond the run's {recipe.schedule.iterations} training "
            "iterations; give k below it (the copies train from k to the end)"
        )
    # Nothing is created before the checks above pass.
    out = ensure_output_dir(Path(output_dir) if output_dir else run_dir.parent / "stability", "--output_dir")
    target = out / f"{run_dir.name}_stability"
    target.mkdir(exist_ok=True)
    with DirectoryLock(target):
        state = RunFiles(run_dir).load_state()
        if state is not None and state["next_round"] > 1:
            mask, init = Mask.from_state_dict(state["mask"]), state["init"]
            subnetwork = f"ticket of round {state['next_round'] - 1} ({mask.weights_remaining_pct():.1f}% remaining)"
        else:  # the run's own initial weights, drawn as the IMP driver draws them
            start = fresh_state(recipe, dataclasses.replace(imp_settings_of(settings), prune_at_init=None))
            mask, init = Mask.from_state_dict(start["mask"]), start["init"]
            subnetwork = "dense network"
        print(f"instability of {run_dir.name}: {subnetwork}; k in {ks}; results in {target}")
        first, second = child_recipes(entry.build_recipe, settings, data, device, settings.seed)
        train_x, train_y = data.train_x[:TRAIN_SUBSET], data.train_y[:TRAIN_SUBSET]
        for k in ks:
            path_csv = target / f"path_k{k}.csv"
            if path_csv.exists():
                print(f"k={k}: done earlier")
                continue
            parent, optimizer_state = train_parent(recipe, init, k, device)
            ends = []
            for copy_index, child in enumerate((first, second), start=1):
                torch.manual_seed(derived_seed(settings.seed, 22, copy_index))  # the copies' dropout draws
                ends.append(train_child(child, parent, optimizer_state, mask, k, device))
            rows = linear_path(recipe, ends[0], ends[1], mask, points, train_x, train_y, k, device)
            rows = [
                {**row, "subnetwork": subnetwork, "weights_remaining_pct": mask.weights_remaining_pct()} for row in rows
            ]
            write_csv(path_csv, rows, STABILITY_COLUMNS)
            print(f"k={k}: test error barrier {barrier(rows, 'test'):.2f} points")
        summary = []
        for k in ks:
            rows = [{**r, **{c: float(r[c]) for c in STABILITY_COLUMNS if c not in ("bn_recomputed",)}}
                    for r in read_csv_rows(target / f"path_k{k}.csv")]  # fmt: skip
            ends = sorted(rows, key=lambda r: r["alpha"])
            summary.append(
                {
                    "k": k,
                    **{f"{s}_barrier": barrier(rows, s) for s in ("train", "val", "test")},
                    "end_test_error_a": ends[0]["test_error"],
                    "end_test_error_b": ends[-1]["test_error"],
                    "subnetwork": subnetwork,
                    **{n: csv_value(v) for n, v in settings.identity().items()},
                }  # fmt: skip
            )
        write_csv(target / "barriers.csv", summary, BARRIER_COLUMNS)
        plot_stability(target, ks)
    return target


def plot_stability(target: Path, ks: list[int]) -> list[Path]:
    import pandas as pd

    from lth.plotting import plt, save_figure

    barriers = pd.read_csv(target / "barriers.csv").sort_values("k")
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for split in ("train", "test"):
        axes[0].plot(barriers["k"], barriers[f"{split}_barrier"], marker="o", label=split)
    axes[0].set_xscale("symlog", linthresh=max(1, min([k for k in ks if k > 0], default=1)))
    axes[0].set_xlabel("k (iteration the two copies start from)")
    axes[0].set_ylabel("error barrier (percentage points)")
    axes[0].legend()
    for k in sorted(ks):
        path = pd.read_csv(target / f"path_k{k}.csv")
        axes[1].plot(path["alpha"], path["test_error"], marker=".", label=f"k={k}")
    axes[1].set_xlabel("interpolation alpha")
    axes[1].set_ylabel("test error (%)")
    axes[1].legend(fontsize=8)
    subnetwork = barriers["subnetwork"].iloc[0]
    figure.suptitle(f"Instability analysis: {target.name.removesuffix('_stability')} ({subnetwork})", fontsize=9)
    return [save_figure(figure, target / "instability.png")]
