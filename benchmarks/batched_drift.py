"""How far runs trained batched drift from the same runs trained alone, and whether the two agree over seeds.

Each seed's run is trained twice through its family's own entry script on real data: alone (`main.py --seed S`)
and batched with the other seeds (`main.py --seed S1 S2 ... --batch`), two rounds each (the dense round 0 and
one pruning round, so round 1's mask is pruned from round 0's trained weights). Per seed it compares round 1's
mask (weights that differ), round 0's last training loss and both rounds' test accuracy; over the seeds it compares
the two paths' mean test accuracy with the seeds' spread (Welch's t: how many standard errors apart).

    python benchmarks/batched_drift.py --family lenet --iterations 30 300 3000 --seeds 1 2 3 4 5
    python benchmarks/batched_drift.py --family conv2 --iterations 30 300 --dropout 0 0.5 --seeds 1 2 3

Runs keep their run directories under --out/runs, so a killed measurement resumes where it stopped and a rerun
only redoes the comparison. Rows go to --out/drift.csv (per seed) and --out/agreement.csv (per setting).
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import platform
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from lth.mask_file import load_mask_file  # noqa: E402
from lth.masks import Mask  # noqa: E402
from lth.results import read_csv_rows  # noqa: E402
from lth.sweep import load_script  # noqa: E402

FAMILIES = {
    "lenet": (REPO / "Lenet-300-100" / "main.py", []),
    "conv2": (REPO / "CNN" / "main.py", ["--arch", "Conv-2"]),
}
DRIFT_COLUMNS = [
    "family", "iterations", "dropout", "seed", "mask_weights_differing", "mask_weights_kept", "mask_layer_most_differing",
    "train_loss_alone", "train_loss_batched", "train_loss_rel_diff", "test_accuracy_r0_alone", "test_accuracy_r0_batched",
    "test_accuracy_r1_alone", "test_accuracy_r1_batched",
]  # fmt: skip
AGREEMENT_COLUMNS = [
    "family", "iterations", "dropout", "round", "seeds", "alone_mean", "alone_std", "batched_mean", "batched_std",
    "mean_diff", "welch_t", "max_seed_abs_diff", "masks_identical_seeds",
]  # fmt: skip


def flags(family: str, iterations: int, dropout: float | None, out: Path, data_dir: str | None) -> list[str]:
    argv = [*FAMILIES[family][1], "--train_iterations", str(iterations), "--rounds", "1", "--eval_every",
            str(iterations), "--checkpoint_every", str(max(iterations, 1000)), "--device", "cpu", "--quiet"]  # fmt: skip
    if dropout is not None:
        argv += ["--dropout_rate", str(dropout)]
    if data_dir:
        argv += ["--data_dir", data_dir]
    return argv + ["--output_dir", str(out)]


def trained(entry, argv: list[str], seeds: list[int], batched: bool) -> dict[int, Path]:
    """Each seed's run directory, trained (or found finished) alone or in one batch of all the seeds."""
    if batched:
        paths = entry.run_lines([[*argv, "--seed", str(s)] for s in seeds])
    else:
        paths = [entry.run_one([*argv, "--seed", str(s)]) for s in seeds]
    return dict(zip(seeds, paths, strict=True))


def round_mask(run: Path, round_index: int) -> Mask:
    return load_mask_file(run / "masks" / f"round_{round_index:02d}.safetensors")[0]


def last_train_loss(run: Path, round_index: int) -> float:
    losses = [float(r["train_loss"]) for r in read_csv_rows(run / "curve.csv") if int(r["round"]) == round_index]
    return [x for x in losses if not math.isnan(x)][-1]


def test_accuracy(run: Path, round_index: int) -> float:
    return float(
        next(r for r in read_csv_rows(run / "rounds.csv") if int(r["round"]) == round_index)["test_accuracy_final"]
    )


def compare(family: str, iterations: int, dropout: float | None, alone: dict, batched: dict) -> tuple[list, list]:
    rows = []
    for seed in alone:
        a, b = round_mask(alone[seed], 1), round_mask(batched[seed], 1)
        per_layer = {name: int((a[name] != b[name]).sum()) for name in a}
        la, lb = last_train_loss(alone[seed], 0), last_train_loss(batched[seed], 0)
        rows.append(
            {
                "family": family, "iterations": iterations, "dropout": dropout, "seed": seed,
                "mask_weights_differing": sum(per_layer.values()), "mask_weights_kept": a.kept(),
                "mask_layer_most_differing": max(per_layer, key=per_layer.get) if any(per_layer.values()) else "",
                "train_loss_alone": la, "train_loss_batched": lb, "train_loss_rel_diff": abs(la - lb) / abs(la),
                **{f"test_accuracy_r{r}_{way}": test_accuracy(runs[seed], r)
                   for r in (0, 1) for way, runs in (("alone", alone), ("batched", batched))},
            }
        )  # fmt: skip
    agreement = []
    for r in (0, 1):
        xa = [row[f"test_accuracy_r{r}_alone"] for row in rows]
        xb = [row[f"test_accuracy_r{r}_batched"] for row in rows]
        sa, sb = (statistics.stdev(x) if len(x) > 1 else 0.0 for x in (xa, xb))
        se = math.sqrt((sa**2 + sb**2) / len(rows))
        diff = statistics.mean(xb) - statistics.mean(xa)
        agreement.append(
            {
                "family": family, "iterations": iterations, "dropout": dropout, "round": r, "seeds": len(rows),
                "alone_mean": statistics.mean(xa), "alone_std": sa, "batched_mean": statistics.mean(xb),
                "batched_std": sb, "mean_diff": diff, "welch_t": diff / se if se else 0.0,
                "max_seed_abs_diff": max(abs(x - y) for x, y in zip(xa, xb, strict=True)),
                "masks_identical_seeds": sum(row["mask_weights_differing"] == 0 for row in rows),
            }
        )  # fmt: skip
    return rows, agreement


def write(path: Path, rows: list[dict], columns: list[str]) -> None:
    """Rows replace earlier rows of the same setting (a rerun), others are kept."""
    key = ("family", "iterations", "dropout")
    mine = {tuple(str(row[k]) for k in key) for row in rows}
    kept = []
    if path.exists():
        kept = [row for row in read_csv_rows(path) if tuple(row[k] for k in key) not in mine]
    with path.open("w", newline="") as file:
        writer = csv.DictWriter(file, columns)
        writer.writeheader()
        writer.writerows(kept)
        writer.writerows({k: f"{v:.6g}" if isinstance(v, float) else v for k, v in row.items()} for row in rows)


def markdown_table(out: Path) -> str:
    """The README's table: per setting, the masks that differ and both paths' test accuracy over the seeds."""
    drift = read_csv_rows(out / "drift.csv")
    agreement = read_csv_rows(out / "agreement.csv")
    lines = [
        "| model | iterations a round | dropout | seeds | round-1 masks identical | round-1 mask weights differing "
        "(of those kept) | test accuracy round 0, alone / batched | round 1 | Welch t (round 0, 1) |",
        "| --- | ---: | ---: | ---: | ---: | --- | --- | --- | --- |",
    ]
    key = ("family", "iterations", "dropout")
    for r0 in (row for row in agreement if row["round"] == "0"):
        r1 = next(row for row in agreement if row["round"] == "1" and all(row[k] == r0[k] for k in key))
        differing = [int(row["mask_weights_differing"]) for row in drift if all(row[k] == r0[k] for k in key)]
        kept = next(row["mask_weights_kept"] for row in drift if all(row[k] == r0[k] for k in key))
        spread = f"{min(differing):,}-{max(differing):,}" if min(differing) != max(differing) else f"{differing[0]:,}"

        def acc(row):
            return (
                f"{float(row['alone_mean']):.2f} ± {float(row['alone_std']):.2f} / "
                f"{float(row['batched_mean']):.2f} ± {float(row['batched_std']):.2f}"
            )

        lines.append(
            f"| {'LeNet-300-100' if r0['family'] == 'lenet' else 'Conv-2'} | {int(r0['iterations']):,} | "
            f"{r0['dropout'] or '-'} | {r0['seeds']} | {r0['masks_identical_seeds']}/{r0['seeds']} | "
            f"{spread} (of {int(kept):,}) | {acc(r0)} | {acc(r1)} | "
            f"{float(r0['welch_t']):.2f}, {float(r1['welch_t']):.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=FAMILIES, default="lenet")
    parser.add_argument("--iterations", type=int, nargs="+", default=[30, 300, 3000])
    parser.add_argument("--dropout", type=float, nargs="+", default=None, help="Conv-2's dropout rates")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--data_dir", default=None)
    parser.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "batched-drift")
    parser.add_argument(
        "--table", action="store_true", help="print the markdown table of what --out holds; train nothing"
    )
    args = parser.parse_args()
    if args.table:
        print(markdown_table(args.out))
        return
    if args.dropout is not None and args.family != "conv2":
        parser.error("--dropout: only Conv-2 has dropout")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "machine.txt").write_text(
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} thread(s)\n"
    )
    script, _ = FAMILIES[args.family]
    entry = load_script(script)
    for iterations in args.iterations:
        for dropout in args.dropout or [None]:
            label = f"{args.family}_it{iterations}" + ("" if dropout is None else f"_d{dropout:g}")
            runs = args.out / "runs" / label
            alone = trained(
                entry, flags(args.family, iterations, dropout, runs / "alone", args.data_dir), args.seeds, batched=False
            )
            batched = trained(
                entry,
                flags(args.family, iterations, dropout, runs / "batched", args.data_dir),
                args.seeds,
                batched=True,
            )
            rows, agreement = compare(args.family, iterations, dropout, alone, batched)
            write(args.out / "drift.csv", rows, DRIFT_COLUMNS)
            write(args.out / "agreement.csv", agreement, AGREEMENT_COLUMNS)
            for row in agreement:
                print(
                    f"{label} round {row['round']}: alone {row['alone_mean']:.2f} ± {row['alone_std']:.2f}, batched "
                    f"{row['batched_mean']:.2f} ± {row['batched_std']:.2f} (t {row['welch_t']:.2f}); masks identical "
                    f"in {row['masks_identical_seeds']}/{row['seeds']} seeds",
                    flush=True,
                )


if __name__ == "__main__":
    main()
