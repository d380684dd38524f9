"""Figures for the Conv nets (Frankle & Carbin, Figure 5 shape): early-stop iteration and test accuracy
at early stop vs weights remaining, winning ticket vs random re-init (and random pruning when present),
mean with min..max over seeds, matched by round.

One figure per architecture and dropout setting; if runs of one (arch, dropout) differ in another
setting (lr, iterations, rates, augmentation), each setting gets its own figure: conditions are never pooled.

    python plotter.py [results_dir]      (or: python main.py --mode plot --output_dir results_dir)
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pandas as pd

from lth.errors import user_facing
from lth.plotting import load_rounds, plot_early_stop_panels
from lth.results import run_name

# rounds.csv columns that tell conditions apart (written by main.py); absent ones are ignored.
CONDITION_COLUMNS = [
    "lr",
    "iterations",
    "batch_size",
    "conv_prune_rate",
    "fc_prune_rate",
    "output_prune_rate",
    "augment",
]


def _label(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def figure_groups(rounds: pd.DataFrame) -> list[tuple[str, str, pd.DataFrame]]:
    """(file stem, title, rows) per figure: one per arch x dropout, split further by any other setting that varies."""
    rounds = rounds.copy()
    if "dropout_rate" not in rounds:
        rounds["dropout_rate"] = 0.0
    rounds["dropout_rate"] = rounds["dropout_rate"].fillna(0.0).astype(float)
    groups = []
    for (arch, dropout), frame in rounds.groupby(["arch", "dropout_rate"], sort=True):
        varying = [c for c in CONDITION_COLUMNS if c in frame and frame[c].nunique(dropna=False) > 1]
        parts = [("plot_", arch), ("d", _label(dropout))]
        title = f"{arch}, dropout {_label(dropout)}"
        if not varying:
            groups.append((run_name(parts), title, frame))
            continue
        for values, sub in frame.groupby(varying, dropna=False, sort=True):
            values = values if isinstance(values, tuple) else (values,)
            extra = list(zip(varying, values, strict=True))
            stem = run_name(parts + [(f"{c}-", _label(v)) for c, v in extra])
            groups.append((stem, title + ", " + ", ".join(f"{c} {_label(v)}" for c, v in extra), sub))
    return groups


def plot_results(results_dir: str | os.PathLike, figures_dir: str | os.PathLike | None = None) -> list[Path]:
    """Draw every figure for the rounds.csv files under `results_dir`; returns the PNG paths."""
    rounds = load_rounds(results_dir)
    target = Path(figures_dir) if figures_dir is not None else Path(results_dir)
    return [
        plot_early_stop_panels(frame, target / f"{stem}.png", title) for stem, title, frame in figure_groups(rounds)
    ]


@user_facing
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    for figure in plot_results(argv[0] if argv else Path(__file__).resolve().parent / "results"):
        print(f"figure: {figure}")


if __name__ == "__main__":
    main()
