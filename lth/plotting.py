"""Figure helpers shared by the families' plot scripts; they read only rounds.csv and curve.csv.

Points are matched across seeds by round (never by float equality of the weights-remaining value),
and each condition is a separate line (e.g. dropout and no-dropout runs are never pooled).
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import FixedLocator, NullLocator  # noqa: E402

from lth.atomic import atomic_savefig  # noqa: E402
from lth.errors import UserError  # noqa: E402
from lth.results import ENGINE_COLUMN, MEASURED_COLUMNS, RUN_COLUMN, condition_columns, engine_of  # noqa: E402
from lth.settings import BRANCH_SUFFIX, CONTROL_RUN_TYPES, value_label  # noqa: E402

OWN_MASKS = "-own-masks"  # run-type suffix of the earlier study's controls (their own masks), a line of their own


def controls_apart(frame: pd.DataFrame) -> pd.DataFrame:
    """Controls that pruned their own weights (`control_mask` own, or written before the column existed) become
    run types of their own, `random_reinit-own-masks`: drawn beside the ticket's controls, never averaged with
    them, and in the same figure as the winning tickets. A run named `<run type>-of-ticket...` is a branch of its
    ticket whatever its columns say (BERT's baselines, which have no control_mask setting)."""
    if "run_type" not in frame:
        return frame
    variant = frame["control_mask"] if "control_mask" in frame else pd.Series("own", index=frame.index)
    own = frame["run_type"].isin(CONTROL_RUN_TYPES) & variant.fillna("own").eq("own")
    if RUN_COLUMN in frame:
        own &= ~frame[RUN_COLUMN].astype(str).str.contains(BRANCH_SUFFIX, regex=False)
    frame = frame.copy()
    frame.loc[own, "run_type"] = frame.loc[own, "run_type"] + OWN_MASKS
    return frame.drop(columns=["control_mask"], errors="ignore")


RunFilter = Callable[[pd.DataFrame], bool]


def arch_is(*prefixes: str) -> RunFilter:
    """A family's runs: those whose rounds.csv names an architecture starting with one of `prefixes`."""
    return lambda rounds: "arch" in rounds and rounds["arch"].astype(str).str.startswith(prefixes).all()


def run_csvs(results_dir: str | os.PathLike, name: str) -> list[Path]:
    """Every `name` under `results_dir`, run directories reached through symbolic links included."""
    found, seen = [], set()
    for folder, subfolders, files in os.walk(results_dir, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:  # a link back up the tree
            subfolders.clear()
            continue
        seen.add(real)
        subfolders.sort()
        if name in files:
            found.append(Path(folder) / name)
    return sorted(found)


def _family_runs(results_dir, belongs: RunFilter | None) -> tuple[list[tuple[Path, pd.DataFrame]], int]:
    """(run directory, its rounds) for the runs `belongs` accepts, and how many others were passed over."""
    runs, skipped = [], 0
    for path in run_csvs(results_dir, "rounds.csv"):
        rounds = pd.read_csv(path)
        if belongs is not None and not belongs(rounds):
            skipped += 1
            continue
        runs.append((path.parent, rounds))
    return runs, skipped


def load_rounds(results_dir: str | os.PathLike, belongs: RunFilter | None = None) -> pd.DataFrame:
    """Every run's rounds.csv under `results_dir` (only the runs `belongs` accepts, e.g. one family's), with a
    `run` column naming its directory; `frame.attrs["skipped"]` counts the runs passed over."""
    runs, skipped = _family_runs(results_dir, belongs)
    if not runs:
        others = f" ({skipped} runs of other families)" if skipped else ""
        raise UserError(
            f"no rounds.csv of these runs found under {results_dir}{others}; run some experiments first or pass "
            "the right directory"
        )
    frames = []
    for folder, frame in runs:
        frame[RUN_COLUMN], frame[ENGINE_COLUMN] = folder.name, engine_of(folder)
        frames.append(frame)
    frame = controls_apart(pd.concat(frames, ignore_index=True))
    frame.attrs["skipped"] = skipped
    return frame


def load_curves(results_dir: str | os.PathLike, belongs: RunFilter | None = None) -> pd.DataFrame:
    """Every run's curve.csv, tagged with its run's identity columns and each round's weights remaining."""
    frames = []
    for folder, rounds in _family_runs(results_dir, belongs)[0]:
        if not (folder / "curve.csv").exists():
            continue
        curve = pd.read_csv(folder / "curve.csv")
        tags = [
            c
            for c in rounds.columns
            if c not in curve.columns and (c not in MEASURED_COLUMNS or c == "weights_remaining_pct")
        ]
        curve = curve.merge(rounds[["round", *tags]], on="round", how="left")
        curve[RUN_COLUMN], curve[ENGINE_COLUMN] = folder.name, engine_of(folder)
        frames.append(curve)
    if not frames:
        raise UserError(f"no curve.csv found under {results_dir}")
    return controls_apart(pd.concat(frames, ignore_index=True))


def figure_arguments(
    parser, default_results_dir: Path, output_aliases: tuple[str, ...] = (), default_output_dir: Path | None = None
) -> None:
    """Every family's plot command: `plotter.py RESULTS_DIR [--output_dir D]` (and the earlier
    `--results_dir DIR`, which means the same)."""
    parser.add_argument(
        "results_dir", nargs="?", default=None, help=f"searched for runs (default: {default_results_dir})"
    )
    parser.add_argument(
        "--results_dir", dest="results_dir_flag", default=None, help="the same, as a flag (earlier form)"
    )
    parser.add_argument(
        "--output_dir", *output_aliases, dest="output_dir", default=None, help="where figures go (default: RESULTS_DIR)"
    )
    parser.set_defaults(default_results_dir=default_results_dir, default_output_dir=default_output_dir)


def figure_dirs(args, must_exist: bool = True) -> tuple[Path, Path]:
    """(results directory, output directory) of parsed `figure_arguments`; a missing results directory is one line."""
    if args.results_dir and args.results_dir_flag and args.results_dir != args.results_dir_flag:
        raise UserError(
            f"give the results directory once (got {args.results_dir} and --results_dir {args.results_dir_flag})"
        )
    results = Path(args.results_dir or args.results_dir_flag or args.default_results_dir)
    if must_exist and not results.is_dir():
        raise UserError(f"results directory {results} is not a directory")
    return results, Path(args.output_dir or args.default_output_dir or results)


def report_figures(written: list[Path], skipped: int = 0, results_dir: Path | None = None) -> None:
    """What every plot command prints: one `wrote PATH` line a figure, and the runs of other families it passed over."""
    for path in written:
        print(f"wrote {path}")
    if skipped:
        print(f"skipped {skipped} runs of other families under {results_dir}")


def condition_groups(
    frame: pd.DataFrame, drawn_apart: tuple[str, ...] = ("run_type",)
) -> list[tuple[dict, pd.DataFrame]]:
    """Split runs into the groups one figure may show: every setting agrees within a group except the seeds
    and the columns the figure itself draws apart (e.g. one line per run type). Never pools conditions."""
    keys = [c for c in condition_columns(frame.columns) if c not in drawn_apart]
    if not keys:
        return [({}, frame)]
    groups = frame.groupby(keys, dropna=False, sort=True)
    return [(dict(zip(keys, values, strict=True)), group) for values, group in groups]


def varying(groups: list[tuple[dict, pd.DataFrame]]) -> list[str]:
    """The settings whose value differs between groups (what a figure's name and title must say)."""
    if len(groups) < 2:
        return []
    keys = list(groups[0][0])
    return [k for k in keys if len({value_label(setting[k]) for setting, _ in groups}) > 1]


def setting_suffix(setting: dict, keys: list[str]) -> str:
    """File-name part naming a group's values of `keys`, e.g. _train_iterations5000_lr0p001."""
    return "".join(f"_{k}{value_label(setting[k])}" for k in keys)


def setting_title(setting: dict, keys: list[str]) -> str:
    return ", ".join(f"{k} {setting[k]:g}" if isinstance(setting[k], float) else f"{k} {setting[k]}" for k in keys)


def mean_min_max(frame: pd.DataFrame, by: list[str], value: str) -> pd.DataFrame:
    """Mean, min and max of `value` over seeds, per group; x is the mean weights remaining of the group."""
    grouped = frame.groupby(by, dropna=False)
    result = grouped[value].agg(["mean", "min", "max", "count"]).reset_index()
    if "weights_remaining_pct" in frame and "weights_remaining_pct" not in by:
        result["weights_remaining_pct"] = grouped["weights_remaining_pct"].mean().values
    return result


def over_seeds(counts, unit: str = "seed") -> str:
    """How many seeds the points of a figure rest on: '5 seeds', or '1-2 seeds' while a study is in progress
    (its later rounds not yet reached by every seed)."""
    counts = list(counts)
    low, high = (int(min(counts)), int(max(counts))) if counts else (0, 0)
    return f"{high if low == high else f'{low}-{high}'} {unit}{'s' if high != 1 else ''}"


def sparsity_axis(ax, values) -> None:
    """Weights remaining on a log axis, decreasing to the right, ticked at the values plotted."""
    ax.set_xscale("log")
    ticks = sorted({round(float(v), 1) for v in values}, reverse=True)
    if len(ticks) > 10:
        ticks = ticks[:: max(1, len(ticks) // 10)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticklabels([f"{t:g}" for t in ticks])
    lo, hi = min(values), max(values)
    ax.set_xlim(hi * 1.15, lo / 1.15)
    ax.set_xlabel("weights remaining (%)")
    ax.grid(True, which="major", alpha=0.3)


def plot_mean_range(ax, stats: pd.DataFrame, x: str, label: str, color=None, linestyle="-", marker="o") -> None:
    stats = stats.sort_values(x, ascending=False)
    line = ax.plot(stats[x], stats["mean"], label=label, color=color, linestyle=linestyle, marker=marker, markersize=3)[
        0
    ]
    ax.fill_between(stats[x], stats["min"], stats["max"], color=line.get_color(), alpha=0.2, linewidth=0)


def fit_title(figure, text: str, fontsize: float = 12) -> None:
    """A figure title wrapped to the figure's width, so that no part of it falls outside."""
    characters = max(40, int(figure.get_figwidth() * 72 / (0.6 * fontsize)))
    figure.suptitle(textwrap.fill(text, characters), fontsize=fontsize)


def save_figure(figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    figure.tight_layout()
    atomic_savefig(figure, path, dpi=150)
    plt.close(figure)
    return path


RUN_TYPE_STYLE = {
    "winning_ticket": ("winning ticket", "tab:blue", "-"),
    "random_reinit": ("random re-init", "tab:orange", "--"),
    "random_prune": ("random pruning", "tab:green", ":"),
    f"random_reinit{OWN_MASKS}": ("random re-init, own masks (earlier study)", "tab:red", "-."),
    f"random_prune{OWN_MASKS}": ("random pruning, own masks (earlier study)", "tab:olive", "-."),
}


def plot_early_stop_panels(rounds: pd.DataFrame, path: str | os.PathLike, title: str) -> Path:
    """Frankle & Carbin's Figure 4 shape: early-stop iteration and test accuracy at early stop vs
    weights remaining, one line per run type, mean with min/max over seeds."""
    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    for run_type, group in rounds.groupby("run_type"):
        label, color, style = RUN_TYPE_STYLE.get(run_type, (run_type, None, "-"))
        for ax, value in zip(axes, ("early_stop_iteration", "test_accuracy_early_stop"), strict=True):
            plot_mean_range(ax, mean_min_max(group, ["round"], value), "weights_remaining_pct", label, color, style)
    for ax, ylabel in zip(
        axes, ("early-stop iteration (min validation loss)", "test accuracy at early stop (%)"), strict=True
    ):
        sparsity_axis(ax, rounds["weights_remaining_pct"])
        ax.set_ylabel(ylabel)
        ax.legend()
    seeds = over_seeds(rounds.groupby(["run_type", "round"])["seed"].nunique())
    fit_title(figure, f"{title} (mean, band = min..max over {seeds})")
    return save_figure(figure, path)
