"""LeNet figures in the shape of Frankle & Carbin's Figures 3 and 4, drawn from rounds.csv/curve.csv."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lth.plotting import RUN_TYPE_STYLE, load_curves, load_rounds, plot_early_stop_panels, save_figure

# The paper's Figure 3 sparsity levels (weights remaining, %), reached after 0, 3, 7, 12, 15, 18 rounds.
FIGURE3_LEVELS = (100.0, 51.3, 21.1, 7.0, 3.6, 1.9)


def nearest_round(rounds: pd.DataFrame, level: float) -> int | None:
    """The round whose weights-remaining value is closest to `level` (None if none is within 10%)."""
    per_round = rounds.groupby("round")["weights_remaining_pct"].mean()
    best = (per_round - level).abs().idxmin()
    return int(best) if abs(per_round[best] - level) <= 0.1 * level else None


def _curve_panel(ax, curves: pd.DataFrame, rounds: pd.DataFrame, levels, run_types, max_iteration) -> None:
    colors = plt.cm.viridis([i / max(1, len(FIGURE3_LEVELS) - 1) for i in range(len(FIGURE3_LEVELS))])
    for level in levels:
        round_index = nearest_round(rounds, level)
        if round_index is None:
            continue
        color = colors[FIGURE3_LEVELS.index(level)] if level in FIGURE3_LEVELS else None
        for run_type in run_types:
            subset = curves[(curves["round"] == round_index) & (curves["run_type"] == run_type)]
            if subset.empty:
                continue
            stats = subset.groupby("iteration")["test_accuracy"].agg(["mean", "min", "max"]).reset_index()
            stats = stats[stats["iteration"] <= max_iteration]
            style = RUN_TYPE_STYLE.get(run_type, (run_type, None, "-"))[2]
            label = f"{level:g}%" + (" (random re-init)" if run_type == "random_reinit" else "")
            ax.plot(stats["iteration"], stats["mean"], linestyle=style, color=color, label=label)
            ax.fill_between(stats["iteration"], stats["min"], stats["max"], color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("training iterations")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(title="weights remaining", fontsize=8)
    ax.grid(alpha=0.3)


def plot_figure3(
    results_dir: Path, path: Path, mode: str = "iterative", max_iteration: int | None = None, ymin: float = 94.0
) -> Path:
    curves = load_curves(results_dir)
    rounds = load_rounds(results_dir)
    curves, rounds = curves[curves["mode"] == mode], rounds[rounds["mode"] == mode]
    max_iteration = max_iteration or int(curves["iteration"].max())
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    _curve_panel(axes[0], curves, rounds, (100.0, 51.3, 21.1), ["winning_ticket"], max_iteration)
    _curve_panel(axes[1], curves, rounds, (100.0, 51.3, 21.1, 7.0, 3.6, 1.9), ["winning_ticket"], max_iteration)
    _curve_panel(axes[2], curves, rounds, (51.3, 21.1, 7.0), ["winning_ticket", "random_reinit"], max_iteration)
    axes[0].set_ylim(ymin, min(100.0, float(curves["test_accuracy"].max()) + 0.3))
    axes[0].set_title("winning tickets")
    axes[1].set_title("winning tickets, sparser")
    axes[2].set_title("winning ticket vs random re-init (dashed)")
    trials = curves.groupby("run_type")["seed"].nunique().max()
    figure.suptitle(
        f"LeNet-300-100 on MNIST, {mode} pruning: test accuracy during training (mean, band = min..max over {trials} trials)"
    )
    return save_figure(figure, path)


def plot_figure4(results_dir: Path, path: Path, mode: str = "iterative") -> Path:
    rounds = load_rounds(results_dir)
    rounds = rounds[rounds["mode"] == mode]
    return plot_early_stop_panels(rounds, path, f"LeNet-300-100 on MNIST, {mode} pruning")
