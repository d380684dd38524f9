"""BERT figures: dev metric vs sparsity per task (dense model as reference), few-shot transfer as a
source x target heatmap per mode, per-layer sparsity of a ticket, and mask overlap between tickets.

    python plotter.py --results_dir results/lth --transfer_csv results/fewshot/transfer.csv \\
        --tickets models/lottery_ticket_*.safetensors --save_dir results/figures
"""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from lth.families import family_package

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from lth.arguments import ArgumentParser
from lth.errors import UserError, user_facing
from lth.masks import Mask
from lth.plotting import (
    condition_groups,
    figure_arguments,
    figure_dirs,
    load_rounds,
    mean_min_max,
    over_seeds,
    plot_mean_range,
    report_figures,
    save_figure,
    setting_suffix,
    setting_title,
    varying,
)
from lth.results import condition_columns
from lth.settings import IDENTITY
from lth.tickets import Ticket, load_ticket

from .settings import KEEP_POOLER_LABEL, FewShotSettings

HERE = Path(__file__).resolve().parent
# BERT's runs: rounds.csv names a GLUE task (the image families' runs have no task column).
BERT_RUNS = lambda rounds: "task" in rounds and rounds["task"].notna().all()  # noqa: E731
METRIC_LABEL = {"dev_accuracy": "dev accuracy (%)", "dev_f1": "dev F1 (%)"}
LAYER_KINDS = [
    ("attention.self.query", "query"),
    ("attention.self.key", "key"),
    ("attention.self.value", "value"),
    ("attention.output.dense", "attn out"),
    ("intermediate.dense", "intermediate"),
    ("output.dense", "output"),
]


def plot_sparsity_curves(rounds: pd.DataFrame, path: Path) -> Path:
    """Per task, the end-of-round dev metrics vs sparsity (mean, band over seeds), the dense round
    as a dashed reference line."""
    tasks = sorted(rounds["task"].unique())
    metrics_of = {
        t: [m for m in ("dev_accuracy", "dev_f1") if m in rounds and rounds.loc[rounds.task == t, m].notna().any()]
        for t in tasks
    }
    panels = [(t, m) for t in tasks for m in metrics_of[t]]
    figure, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    rounds = rounds.assign(variant=rounds["run"].map(pooler_note))  # runs written before keep_pooler was a column
    for ax, (task, metric) in zip(axes[0], panels, strict=True):
        group = rounds[rounds.task == task]
        conditions = condition_groups(group, drawn_apart=("task",))
        # A baseline is named by its run type (in place of "ticket"); its round 0 is its ticket's dense model.
        hidden = ("arch", "model_name_or_path", "variant", "keep_pooler", "run_type", "ticket_sparsity")
        shown = [k for k in varying(conditions) if k not in hidden]
        for setting, by_model in conditions:
            kept = setting["variant"]
            label = Path(str(setting["arch"])).name + (f" ({setting_title(setting, shown)})" if shown else "")
            run_type = str(setting.get("run_type", "winning_ticket"))
            method = "ticket" if run_type == "winning_ticket" else run_type
            stats = mean_min_max(by_model, ["round"], metric)
            stats["sparsity_pct"] = by_model.groupby("round")["sparsity_pct"].mean().values
            if method != "ticket":  # its one trained round; round 0 is the ticket's dense line
                stats = stats[stats["round"] > 0]
            plot_mean_range(ax, stats, "sparsity_pct", f"{label} {method}{kept}")
            dense = stats.loc[stats["round"] == 0, "mean"]
            if len(dense):
                ax.axhline(
                    float(dense.iloc[0]),
                    linestyle="--",
                    color="gray",
                    label=f"{label} dense{kept}: {float(dense.iloc[0]):.1f}",
                )
        ax.set_xlabel("sparsity of the prunable weights (%)")
        ax.set_ylabel(METRIC_LABEL[metric])
        ax.set_title(f"{task.upper()}: {METRIC_LABEL[metric]} ({over_seeds(group.groupby('round')['seed'].nunique())})")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    return save_figure(figure, path)


METHODS = {  # Chen et al.'s comparison, in the order a figure's legend lists it
    "winning_ticket": "IMP (winning ticket)",
    "random_prune": "random pruning",
    "random_reinit": "random re-initialisation",
    "standard_pruning": "standard pruning",
}
STUDY_APART = ("run_type", "sparsity", "ticket_sparsity")  # what differs between the methods of one study


def method_table(rounds: pd.DataFrame, metric: str = "dev_accuracy") -> pd.DataFrame:
    """Chen et al.'s table: per study (its settings less seed, run type and sparsities), method and sparsity, the
    dev metric's mean and standard deviation over seeds. The dense model is the tickets' round 0; a baseline counts
    only its one trained round (its round 0 is its ticket's)."""
    keys = [c for c in condition_columns(rounds.columns) if c not in STUDY_APART and c != "task"]
    kept = rounds[(rounds["round"] > 0) | (rounds["run_type"] == "winning_ticket")]
    kept = kept.assign(
        method=np.where(kept["round"] == 0, "dense", kept["run_type"]), sparsity_pct=kept["sparsity_pct"].round(1)
    )
    by = ["task", *keys, "method", "sparsity_pct"]
    table = kept.groupby(by, dropna=False)[metric].agg(["mean", "std", "count"]).reset_index()
    return table.rename(columns={"count": "seeds"})


def matching_sparsity(table: pd.DataFrame) -> float | None:
    """The highest sparsity at which IMP's mean is within one standard deviation of the dense model's (Chen et
    al.'s criterion for a matching subnetwork), and every lower sparsity too; None where none is."""
    dense = table[table.method == "dense"]
    if dense.empty:
        return None
    floor = float(dense["mean"].iloc[0]) - float(np.nan_to_num(dense["std"].iloc[0]))
    found = None
    for _, row in table[table.method == "winning_ticket"].sort_values("sparsity_pct").iterrows():
        if row["mean"] < floor:
            break
        found = float(row["sparsity_pct"])
    return found


def plot_methods(rounds: pd.DataFrame, save_dir: Path) -> list[Path]:
    """Chen et al.'s figure, one per task, metric and study: dev metric against sparsity, a line per method with a
    band of one standard deviation over seeds, the dense model as a dashed line with its band; and the table as
    CSV. Drawn where a study has baselines."""
    written = []
    for metric in ("dev_accuracy", "dev_f1"):
        if metric not in rounds or rounds[metric].isna().all():
            continue
        table = method_table(rounds[rounds[metric].notna()], metric)
        keys = [c for c in table.columns if c not in ("method", "sparsity_pct", "mean", "std", "seeds")]
        for values, study in table.groupby(keys, dropna=False):
            if set(study.method) <= {"dense", "winning_ticket"}:
                continue  # no baselines: the sparsity curves say it all
            setting = dict(zip(keys, values if isinstance(values, tuple) else (values,), strict=True))
            figure, ax = plt.subplots(figsize=(6, 4))
            for method, label in METHODS.items():
                line = study[study.method == method].sort_values("sparsity_pct")
                if line.empty:
                    continue
                (drawn,) = ax.plot(line["sparsity_pct"], line["mean"], marker="o", markersize=3, label=label)
                color = drawn.get_color()
                spread = np.nan_to_num(line["std"])
                ax.fill_between(
                    line["sparsity_pct"], line["mean"] - spread, line["mean"] + spread, color=color, alpha=0.2
                )
            dense = study[study.method == "dense"]
            if not dense.empty:
                mean, std = float(dense["mean"].iloc[0]), float(np.nan_to_num(dense["std"].iloc[0]))
                ax.axhline(mean, linestyle="--", color="gray", label=f"dense: {mean:.2f}")
                ax.axhspan(mean - std, mean + std, color="gray", alpha=0.15)
            matching = matching_sparsity(study)
            seeds = int(study["seeds"].max())
            task = str(setting["task"])
            ax.set_title(
                f"{task.upper()}, {Path(str(setting.get('arch', ''))).name}: {METHODS['winning_ticket']} against "
                f"baselines ({seeds} seed{'s' if seeds > 1 else ''}, band: 1 std)",
                fontsize=9,
            )
            ax.set_xlabel("sparsity of the prunable weights (%)")
            ax.set_ylabel(METRIC_LABEL[metric])
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize=8, title=f"matching up to {matching:g}%" if matching is not None else None)
            name = f"bert_{task}_{metric}_methods{setting_suffix(setting, [k for k in keys if k != 'task' and k in varying_keys(table, keys)])}"
            written.append(save_figure(figure, save_dir / f"{name}.png"))
            study.to_csv(save_dir / f"{name}.csv", index=False)
            written.append(save_dir / f"{name}.csv")
    return written


def varying_keys(table: pd.DataFrame, keys: list[str]) -> list[str]:
    return [k for k in keys if table[k].astype(str).nunique() > 1]


def pooler_note(name: str) -> str:
    """--keep_pooler runs and tickets are another method, never averaged with the others; their run
    and file names carry KEEP_POOLER_LABEL."""
    return " (pooler kept)" if KEEP_POOLER_LABEL in str(name) else ""


def source_label(row) -> str:
    """A readable source name: 'sst2 ticket 60%', 'union sst2+qqp 60%', 'sst2 dense'."""
    kind, task, sparsity = row["source_kind"], row["source_task"], float(row["source_sparsity_pct"])
    note = pooler_note(row["source"])
    if kind == "ensemble":
        match = re.search(r"_(union|intersection)_", str(row["source"]))
        return f"{match.group(1) if match else 'ensemble'} {task} {sparsity:.0f}%{note}"
    if sparsity == 0:
        return f"{task} dense{note}"
    return f"{task} ticket {sparsity:.0f}%{note}"


# transfer.csv columns a heatmap draws apart (source ticket x target, one panel per mode); every other setting of
# the few-shot runs is the same within one figure.
TRANSFER_DRAWN_APART = ("checkpoint", "target", "finetune")


def transfer_conditions(transfer: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    """(file-name suffix, rows) per condition of the few-shot runs: never pools runs of other settings."""
    keys = [
        f.name
        for f in FewShotSettings.declared(IDENTITY)
        if f.name not in (*TRANSFER_DRAWN_APART, *FewShotSettings.SEED_FIELDS) and f.name in transfer
    ]
    if not keys:
        return [("", transfer)]
    groups = [(dict(zip(keys, v, strict=True)), g) for v, g in transfer.groupby(keys, dropna=False, sort=True)]
    shown = varying(groups)
    return [(setting_suffix(setting, shown), group) for setting, group in groups]


def plot_transfer_heatmaps(transfer: pd.DataFrame, path: Path, metric: str = "dev_accuracy") -> Path:
    """Source x target, one panel per mode: mean dev metric over seeds (± sd in the cell)."""
    transfer = transfer.copy()
    transfer["source_label"] = transfer.apply(source_label, axis=1)
    modes = sorted(transfer["mode"].unique())
    figure, axes = plt.subplots(
        1, len(modes), figsize=(5.5 * len(modes), 0.6 * transfer["source_label"].nunique() + 2.5), squeeze=False
    )
    for ax, mode in zip(axes[0], modes, strict=True):
        group = transfer[transfer["mode"] == mode]
        mean = group.pivot_table(index="source_label", columns="target", values=metric, aggfunc="mean")
        # With one seed per cell pandas drops the all-NaN std table: align both to the mean's cells.
        sd = group.pivot_table(index="source_label", columns="target", values=metric, aggfunc="std", dropna=False)
        sd = sd.reindex(index=mean.index, columns=mean.columns)
        count = group.pivot_table(index="source_label", columns="target", values=metric, aggfunc="count")
        count = count.reindex(index=mean.index, columns=mean.columns).fillna(0)
        image = ax.imshow(mean.values, cmap="viridis", aspect="auto")
        ax.set_xticks(range(len(mean.columns)), mean.columns)
        ax.set_yticks(range(len(mean.index)), mean.index)
        for i in range(mean.shape[0]):
            for j in range(mean.shape[1]):
                value = mean.values[i, j]
                if np.isnan(value):
                    continue
                spread = sd.values[i, j]
                text = (
                    f"{value:.1f}"
                    + (f"\n±{spread:.1f}" if not np.isnan(spread) else "")
                    + f"\nn={int(count.values[i, j])}"
                )
                ax.text(j, i, text, ha="center", va="center", color="white", fontsize=8)
        ax.set_xlabel("target task")
        ax.set_title(f"few-shot {mode}: {METRIC_LABEL.get(metric, metric)}")
        figure.colorbar(image, ax=ax)
    return save_figure(figure, path)


def layer_grid(ticket: Ticket) -> tuple[np.ndarray, list[str], list[str]]:
    """Sparsity (%) per encoder layer (rows) and matrix kind (columns), plus the pooler as its own row."""
    sparsity = ticket.mask.layer_sparsity()
    layers = sorted({int(m.group(1)) for n in sparsity if (m := re.search(r"layer\.(\d+)\.", n))})
    grid = np.full((len(layers) + 1, len(LAYER_KINDS)), np.nan)
    for name, value in sparsity.items():
        match = re.search(r"layer\.(\d+)\.(.+)\.weight$", name)
        if match:
            kinds = [k for k, _ in LAYER_KINDS]
            grid[layers.index(int(match.group(1))), kinds.index(match.group(2))] = 100 * value
        elif "pooler" in name:
            grid[-1, 0] = 100 * value
    return grid, [f"layer {i}" for i in layers] + ["pooler"], [label for _, label in LAYER_KINDS]


def plot_layer_sparsity(ticket: Ticket, path: Path) -> Path:
    """Which matrices IMP pruned most: sparsity per layer and kind."""
    grid, rows, columns = layer_grid(ticket)
    figure, ax = plt.subplots(figsize=(8, 0.35 * len(rows) + 2))
    image = ax.imshow(grid, cmap="magma_r", aspect="auto", vmin=0, vmax=100)
    ax.set_xticks(range(len(columns)), columns, rotation=30)
    ax.set_yticks(range(len(rows)), rows)
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if not np.isnan(grid[i, j]):
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.0f}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if grid[i, j] > 50 else "black",
                )
    ax.set_title(f"{ticket.label}: sparsity per matrix (%), overall {100 * ticket.sparsity:.1f}%")
    figure.colorbar(image, ax=ax)
    return save_figure(figure, path)


def shared_jaccard(a: Mask, b: Mask) -> float:
    """Jaccard overlap over the layers both masks cover: a --keep_pooler ticket has no pooler mask,
    so it is compared with the others on the encoder alone."""
    in_b = set(b.names())
    shared = [n for n in a.names() if n in in_b]
    return Mask({n: a[n] for n in shared}).jaccard(Mask({n: b[n] for n in shared}))


def jaccard_matrix(tickets: list[Ticket]) -> np.ndarray:
    size = len(tickets)
    matrix = np.eye(size)
    for i in range(size):
        for j in range(i + 1, size):
            matrix[i, j] = matrix[j, i] = shared_jaccard(tickets[i].mask, tickets[j].mask)
    return matrix


def plot_jaccard(tickets: list[Ticket], path: Path) -> Path:
    """Overlap of the surviving weights between tickets of different tasks and seeds."""
    matrix = jaccard_matrix(tickets)
    labels = [t.label.replace("lottery_ticket_", "") for t in tickets]
    figure, ax = plt.subplots(figsize=(1.0 * len(tickets) + 3, 0.8 * len(tickets) + 2))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    for i in range(len(labels)):
        for j in range(len(labels)):
            ax.text(
                j,
                i,
                f"{matrix[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=8,
                color="white" if matrix[i, j] < 0.6 else "black",
            )
    ax.set_title("Jaccard overlap of surviving weights")
    figure.colorbar(image, ax=ax)
    return save_figure(figure, path)


def parse_args(argv=None):
    parser = ArgumentParser(prog="BERT/plotter.py", description=__doc__.splitlines()[0])
    figure_arguments(
        parser,
        HERE / "results" / "lth",
        output_aliases=("--save_dir",),
        default_output_dir=HERE / "results" / "figures",
    )
    parser.add_argument("--transfer_csv", default=str(HERE / "results" / "fewshot" / "transfer.csv"))
    parser.add_argument("--tickets", nargs="*", default=[], help="ticket files for the per-layer and Jaccard figures")
    return parser.parse_args(argv)


@user_facing
def main(argv=None) -> list[Path]:
    args = parse_args(argv)
    results, save_dir = figure_dirs(args, must_exist=False)
    written, skipped = [], 0
    if results.exists():
        rounds = load_rounds(results, BERT_RUNS)
        skipped = rounds.attrs["skipped"]
        written.append(plot_sparsity_curves(rounds, save_dir / "bert_dev_metric_vs_sparsity.png"))
        written.extend(plot_methods(rounds, save_dir))
    if Path(args.transfer_csv).exists():
        for suffix, transfer in transfer_conditions(pd.read_csv(args.transfer_csv)):
            written.append(plot_transfer_heatmaps(transfer, save_dir / f"bert_fewshot_transfer_accuracy{suffix}.png"))
            if transfer["dev_f1"].notna().any():
                written.append(
                    plot_transfer_heatmaps(
                        transfer[transfer.target == "qqp"],
                        save_dir / f"bert_fewshot_transfer_qqp_f1{suffix}.png",
                        "dev_f1",
                    )
                )
    tickets = [load_ticket(p, "--tickets") for p in args.tickets]
    for ticket in tickets:
        if ticket.sparsity > 0:
            written.append(plot_layer_sparsity(ticket, save_dir / f"layer_sparsity_{ticket.label}.png"))
    sparse = [t for t in tickets if t.sparsity > 0]
    if len(sparse) >= 2:
        written.append(plot_jaccard(sparse, save_dir / "ticket_jaccard.png"))
    if not written:
        raise UserError(
            f"nothing to plot: no runs under {results}, no --transfer_csv {args.transfer_csv}, no --tickets"
        )
    report_figures(written, skipped, results)
    return written


if __name__ == "__main__":
    main()
