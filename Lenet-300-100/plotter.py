"""LeNet figures in the shape of Frankle & Carbin's Figures 3 and 4, drawn from rounds.csv/curve.csv.

    python plotter.py [RESULTS_DIR] [--output_dir D] [--mode iterative|oneshot] [--max_iteration N]
    python plotter.py RESULTS_DIR --pai_dir PAI_DIR        (IMP against pruning at initialization)

One pair of figures per condition and IMP mode (runs that differ in any setting but the trial are never averaged;
both modes where no --mode is given). Only LeNet runs are drawn; runs of other families are passed over, and counted.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd

from lth.arguments import ArgumentParser, positive_int
from lth.errors import UserError, user_facing
from lth.plotting import (
    OWN_MASKS,
    RUN_TYPE_STYLE,
    arch_is,
    condition_groups,
    figure_arguments,
    figure_dirs,
    fit_title,
    load_curves,
    load_rounds,
    mean_min_max,
    over_seeds,
    plot_early_stop_panels,
    plot_mean_range,
    report_figures,
    save_figure,
    setting_suffix,
    setting_title,
    sparsity_axis,
    varying,
)

HERE = Path(__file__).resolve().parent
LENET_RUNS = arch_is("LeNet-300-100")
IMP_MODES = ("iterative", "oneshot")
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
            label = f"{level:g}%" + (f" ({RUN_TYPE_STYLE[run_type][0]})" if run_type != "winning_ticket" else "")
            ax.plot(stats["iteration"], stats["mean"], linestyle=style, color=color, label=label)
            ax.fill_between(stats["iteration"], stats["min"], stats["max"], color=color, alpha=0.15, linewidth=0)
    ax.set_xlabel("training iterations")
    ax.set_ylabel("test accuracy (%)")
    if ax.lines:  # a panel whose levels the runs never reached stays empty, without a legend
        ax.legend(title="weights remaining", fontsize=8)
    ax.grid(alpha=0.3)


def plot_figure3(
    curves: pd.DataFrame,
    rounds: pd.DataFrame,
    path: Path,
    title: str,
    max_iteration: int | None = None,
    ymin: float = 94.0,
) -> Path:
    """Test accuracy during training at the paper's sparsity levels, for the runs of one condition."""
    max_iteration = max_iteration or int(curves["iteration"].max())
    figure, axes = plt.subplots(1, 3, figsize=(16, 4.5), sharey=True)
    _curve_panel(axes[0], curves, rounds, (100.0, 51.3, 21.1), ["winning_ticket"], max_iteration)
    _curve_panel(axes[1], curves, rounds, (100.0, 51.3, 21.1, 7.0, 3.6, 1.9), ["winning_ticket"], max_iteration)
    controls = [kind for kind in ("random_reinit", f"random_reinit{OWN_MASKS}") if kind in set(curves["run_type"])]
    _curve_panel(axes[2], curves, rounds, (51.3, 21.1, 7.0), ["winning_ticket", *controls], max_iteration)
    axes[0].set_ylim(ymin, min(100.0, float(curves["test_accuracy"].max()) + 0.3))
    axes[0].set_title("winning tickets")
    axes[1].set_title("winning tickets, sparser")
    axes[2].set_title(
        "winning ticket vs random re-init (dashed)" if len(controls) < 2 else "winning ticket vs both re-inits"
    )
    drawn = {nearest_round(rounds, level) for level in FIGURE3_LEVELS}  # the rounds the panels draw
    shown = curves[curves["round"].isin(drawn)]
    trials = over_seeds(shown.groupby(["run_type", "round"])["seed"].nunique(), "trial")
    fit_title(figure, f"{title}: test accuracy during training (mean, band = min..max over {trials})")
    return save_figure(figure, path)


def mode_of(frame: pd.DataFrame) -> pd.Series:
    """IMP mode per row (`mode` in runs written before it was called imp_mode)."""
    if "imp_mode" in frame:
        return frame["imp_mode"].fillna(frame["mode"]) if "mode" in frame else frame["imp_mode"]
    return frame["mode"]


def plot_mode(results_dir: Path, out: Path, mode: str, max_iteration: int | None = None) -> list[Path]:
    """Figures 3 and 4 for one IMP mode: one pair per condition (every setting but run type and trial),
    named by the settings that differ between conditions. Runs of different settings are never averaged."""
    rounds = load_rounds(results_dir, LENET_RUNS)
    curves = load_curves(results_dir, LENET_RUNS)
    rounds, curves = rounds[mode_of(rounds) == mode], curves[mode_of(curves) == mode]
    if rounds.empty:
        raise UserError(f"no {mode} runs under {results_dir}")
    groups = condition_groups(rounds.drop(columns=["mode"], errors="ignore"))
    shown = [k for k in varying(groups) if k != "imp_mode"]
    written = []
    for setting, group in groups:
        suffix = setting_suffix(setting, shown)
        title = f"LeNet-300-100 on MNIST, {mode} pruning" + (f" ({setting_title(setting, shown)})" if shown else "")
        runs = curves[curves["run"].isin(group["run"])]
        written.append(plot_figure3(runs, group, out / f"figure3_{mode}{suffix}.png", title, max_iteration))
        written.append(plot_early_stop_panels(group, out / f"figure4_{mode}{suffix}.png", title))
    return written


PAI_COLORS = {"snip": "tab:orange", "grasp": "tab:green", "synflow": "tab:red", "magnitude_init": "tab:purple",
              "random": "tab:gray"}  # fmt: skip


def plot_pai(pai_dir: Path, imp_dir: Path, path: Path, value: str = "test_accuracy_early_stop") -> Path:
    """IMP tickets against pruning at initialization and its layer-wise shuffles, by weights remaining
    (Frankle et al., ICLR 2021, Figure 2 shape): mean with min..max over the trials both have."""
    pai = load_rounds(pai_dir, LENET_RUNS)
    pai = pai[pai["pai_method"].fillna("none") != "none"]
    imp = load_rounds(imp_dir, LENET_RUNS)
    imp = imp[(imp["run_type"] == "winning_ticket") & (imp["round"].isin(sorted(pai["pai_round"].unique())))]
    imp = imp[imp["seed"].isin(pai["seed"].unique())]
    figure, ax = plt.subplots(figsize=(8, 5))
    stats = mean_min_max(imp, ["round"], value)
    plot_mean_range(
        ax, stats, "weights_remaining_pct", f"IMP winning ticket ({imp['seed'].nunique()} trials)", "tab:blue"
    )
    for (method, ablation), group in pai.groupby(["pai_method", "pai_ablation"]):
        stats = mean_min_max(group, ["pai_round"], value)
        label = method + (" (layer-wise shuffle)" if ablation == "shuffle" else "")
        style = "--" if ablation == "shuffle" else "-"
        plot_mean_range(ax, stats, "weights_remaining_pct", label, PAI_COLORS.get(method), style)
    sparsity_axis(ax, pd.concat([pai["weights_remaining_pct"], imp["weights_remaining_pct"]]))
    ax.set_ylabel(value.replace("_", " ") + " (%)")
    ax.legend(fontsize=8)
    iterations = int(pai["train_iterations"].iloc[0])
    ax.set_title(
        f"LeNet-300-100: IMP vs pruning at initialization ({iterations} iterations, {pai['seed'].nunique()} trials)"
    )
    return save_figure(figure, path)


@user_facing
def main(argv=None) -> None:
    parser = ArgumentParser(prog="Lenet-300-100/plotter.py", description=__doc__.splitlines()[0])
    figure_arguments(parser, HERE / "results")
    parser.add_argument("--mode", choices=IMP_MODES, default=None, help="one IMP mode (default: every mode present)")
    parser.add_argument("--max_iteration", type=positive_int, default=None, help="x-axis limit of Figure 3")
    parser.add_argument(
        "--pai_dir", default=None, help="draw IMP (from RESULTS_DIR) against pruning at initialization (runs here)"
    )
    args = parser.parse_args(argv)
    results, output = figure_dirs(args)
    rounds = load_rounds(results, LENET_RUNS)
    if args.pai_dir:
        written = [
            plot_pai(Path(args.pai_dir), results, Path(args.pai_dir) / f"pai_vs_imp_{value}.png", value)
            for value in ("test_accuracy_early_stop", "test_accuracy_final")
        ]
    else:
        present = set(mode_of(rounds).dropna())
        modes = [args.mode] if args.mode else [mode for mode in IMP_MODES if mode in present]
        written = [path for mode in modes for path in plot_mode(results, output, mode, args.max_iteration)]
    report_figures(written, rounds.attrs["skipped"], results)


if __name__ == "__main__":
    main()
