"""Figures for the Conv nets (Frankle & Carbin, Figure 5 shape): early-stop iteration and test accuracy
at early stop vs weights remaining, winning ticket vs random re-init (and random pruning when present),
mean with min..max over seeds, matched by round.

One figure per condition: architecture and dropout, and every other setting of the run (lr, iterations,
rates, augmentation, ...) read from the identity columns of rounds.csv; conditions are never pooled.

    python plotter.py [RESULTS_DIR] [--output_dir D]      (or: python main.py --mode plot --output_dir RESULTS_DIR)

Only the Conv nets' runs are drawn; runs of other families in the same tree are passed over, and counted.
"""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from lth.arguments import ArgumentParser
from lth.errors import user_facing
from lth.plotting import (
    arch_is,
    condition_groups,
    figure_arguments,
    figure_dirs,
    load_rounds,
    plot_early_stop_panels,
    report_figures,
    setting_suffix,
    setting_title,
    varying,
)
from lth.settings import value_label


def figure_groups(rounds: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(file stem, title, rows) per figure: one per condition (every setting but the run type and seed),
    named by arch and dropout, and by any other setting that differs between the figures."""
    rounds = rounds.copy()
    if "dropout_rate" not in rounds:
        rounds["dropout_rate"] = 0.0
    rounds["dropout_rate"] = rounds["dropout_rate"].fillna(0.0).astype(float)
    groups = condition_groups(rounds)
    extra = [k for k in varying(groups) if k not in ("arch", "dropout_rate")]
    figures = []
    for setting, frame in groups:
        stem = f"plot_{setting['arch']}_d{value_label(setting['dropout_rate'])}" + setting_suffix(setting, extra)
        title = f"{setting['arch']}, dropout {setting['dropout_rate']:g}"
        if extra:
            title += ", " + setting_title(setting, extra)
        figures.append((stem, title, frame))
    return figures


CONV_RUNS = arch_is("Conv-")


def plot_results(results_dir: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Draw every figure for the Conv nets' rounds.csv files under `results_dir`; returns the PNG paths."""
    return plot_rounds(load_rounds(results_dir, CONV_RUNS), Path(figures_dir or results_dir))


def plot_rounds(rounds: pd.DataFrame, target: Path) -> list[Path]:
    return [
        plot_early_stop_panels(frame, target / f"{stem}.png", title) for stem, title, frame in figure_groups(rounds)
    ]


@user_facing
def main(argv: list[str] | None = None) -> None:
    parser = ArgumentParser(prog="CNN/plotter.py", description=__doc__.splitlines()[0])
    figure_arguments(parser, Path(__file__).resolve().parent / "results")
    results, output = figure_dirs(parser.parse_args(argv))
    rounds = load_rounds(results, CONV_RUNS)
    report_figures(plot_rounds(rounds, output), rounds.attrs["skipped"], results)


if __name__ == "__main__":
    main()
