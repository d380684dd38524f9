"""VGG figures from rounds.csv: test accuracy vs weights remaining for each rewinding point and control,
as the rewinding figure of Frankle et al. 2019 ("Stabilizing the Lottery Ticket Hypothesis").

    python plotter.py [RESULTS_DIR] [--output_dir D]      # every VGG run under results/, one figure per condition
    python plotter.py results --metric early_stop            (earlier form: --results_dir results)

Only VGG runs are drawn; runs of other families in the same tree are passed over, and counted.

Left panels: one per rewinding iteration, IMP (winning ticket) against random pruning and random
re-init. Right panel: winning tickets of every rewinding point together. Mean over seeds, band =
min..max; points are matched across seeds by round.
"""

from __future__ import annotations

import os
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lth.families import family_package

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from lth.arguments import ArgumentParser
from lth.errors import UserError, user_facing
from lth.plotting import (
    RUN_TYPE_STYLE,
    arch_is,
    condition_groups,
    figure_arguments,
    figure_dirs,
    fit_title,
    load_rounds,
    mean_min_max,
    over_seeds,
    plot_mean_range,
    report_figures,
    save_figure,
    setting_suffix,
    setting_title,
    sparsity_axis,
    varying,
)
from lth.settings import value_label

from .settings import RESULTS_DIR

METRICS = {"final": "test_accuracy_final", "early_stop": "test_accuracy_early_stop"}
METRIC_LABELS = {"final": "test accuracy at the end of training (%)", "early_stop": "test accuracy at early stop (%)"}
VGG_RUNS = arch_is("VGG")
REWIND_COLORS = ["tab:blue", "tab:purple", "tab:red", "tab:brown", "tab:olive", "tab:cyan"]


def pruning_runs(rounds: pd.DataFrame) -> pd.DataFrame:
    """IMP runs only: train.py's dense runs repeat round 0 of every run and are left out."""
    rounds = rounds[~rounds["run"].str.contains("_dense_seed")]
    if rounds.empty:
        raise UserError("only dense (train.py) runs found; run main.py first")
    return rounds


def accuracy_stats(rounds: pd.DataFrame, value: str) -> pd.DataFrame:
    """Mean, min and max over seeds per (rewinding point, run type, round)."""
    return mean_min_max(rounds, ["rewind_iteration", "run_type", "round"], value)


def rewinding_figure(
    rounds: pd.DataFrame, path: str | os.PathLike, metric: str = "final", title: str = "VGG-19"
) -> Path:
    value = METRICS[metric]
    stats = accuracy_stats(rounds, value)
    rewinds = sorted(stats["rewind_iteration"].unique())
    figure, axes = plt.subplots(
        1, len(rewinds) + 1, figsize=(4.2 * (len(rewinds) + 1), 3.8), sharey=True, squeeze=False
    )
    axes = axes[0]
    for ax, k in zip(axes[:-1], rewinds, strict=True):
        for run_type, (label, color, style) in RUN_TYPE_STYLE.items():
            group = stats[(stats["rewind_iteration"] == k) & (stats["run_type"] == run_type)]
            if not group.empty:
                plot_mean_range(ax, group, "weights_remaining_pct", label, color, style)
        ax.set_title(f"rewind to iteration {k}")
    overview = axes[-1]
    for index, k in enumerate(rewinds):
        color = REWIND_COLORS[index % len(REWIND_COLORS)]
        group = stats[(stats["rewind_iteration"] == k) & (stats["run_type"] == "winning_ticket")]
        if not group.empty:
            plot_mean_range(overview, group, "weights_remaining_pct", f"IMP, rewind to {k}", color)
    overview.set_title("winning tickets by rewinding point")
    for ax in axes:
        sparsity_axis(ax, rounds["weights_remaining_pct"])
        ax.legend(fontsize=8)
    axes[0].set_ylabel(METRIC_LABELS[metric])
    fit_title(figure, f"{title} on CIFAR-10 (mean, band = min..max over {over_seeds(stats['count'])})")
    return save_figure(figure, path)


def plot_all(
    results_dir: str | os.PathLike, output_dir: str | os.PathLike | None = None, metric: str = "final"
) -> list[Path]:
    """One figure per condition: every setting but the run type, the rewinding point and the seed agrees
    within a figure (width and schedule name it; any other setting that differs between figures too)."""
    return plot_rounds(pruning_runs(load_rounds(results_dir, VGG_RUNS)), Path(output_dir or results_dir), metric)


def plot_rounds(rounds, output_dir: Path, metric: str) -> list[Path]:
    groups = condition_groups(rounds, drawn_apart=("run_type", "rewind_iteration"))
    extra = [k for k in varying(groups) if k not in ("width", "train_iterations")]
    written = []
    for setting, group in groups:
        label = f"vgg19-w{value_label(setting['width'])}_it{setting['train_iterations']}" + setting_suffix(
            setting, extra
        )
        title = (
            f"VGG-19 (width {setting['width']:g}, {setting['train_iterations']} iterations per round, "
            f"lr {setting['lr']:g}, batch {setting['batch_size']}"
        )
        if extra:
            title += ", " + setting_title(setting, extra)
        written.append(rewinding_figure(group, output_dir / f"{label}_rewinding_{metric}.png", metric, title + ")"))
    return written


@user_facing
def main(argv=None) -> None:
    parser = ArgumentParser(prog="VGG/plotter.py", description=__doc__.splitlines()[0])
    figure_arguments(parser, RESULTS_DIR)
    parser.add_argument("--metric", choices=sorted(METRICS), default="final", help="which test accuracy to plot")
    args = parser.parse_args(argv)
    results, output = figure_dirs(args)
    rounds = load_rounds(results, VGG_RUNS)
    report_figures(plot_rounds(pruning_runs(rounds), output, args.metric), rounds.attrs["skipped"], results)


if __name__ == "__main__":
    main()
