"""Ensemble tickets: the union (or intersection) of two tickets' masks over the same base model, on
the pre-trained weights; reports both input sparsities, the result's, and the masks' Jaccard overlap
per layer and overall (all over the prunable weights).

    python create_ensemble_tickets.py --ticket_a models/lottery_ticket_sst2_sparsity60_seed42.safetensors \\
        --ticket_b models/lottery_ticket_qqp_sparsity70_seed42.safetensors --combine union
"""

from __future__ import annotations

from pathlib import Path

import torch

from lth.families import family_package

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from lth.arguments import ArgumentParser
from lth.atomic import atomic_write_json
from lth.checked_load import read_json
from lth.errors import UserError, user_facing
from lth.model_identity import identify_model
from lth.results import write_csv
from lth.settings import TICKET_SUFFIX
from lth.tickets import Ticket, load_ticket, make_ticket, save_ticket

from .model import classifier_factory, resolve_model
from .settings import KEEP_POOLER_LABEL

HERE = Path(__file__).resolve().parent
LAYER_COLUMNS = ["layer", "weights", "sparsity_a_pct", "sparsity_b_pct", "sparsity_result_pct", "jaccard"]


def parse_args(argv=None):
    parser = ArgumentParser(prog="BERT/create_ensemble_tickets.py", description=__doc__.splitlines()[0])
    parser.add_argument("--ticket_a", required=True, help="first ticket file")
    parser.add_argument("--ticket_b", required=True, help="second ticket file")
    parser.add_argument("--save_dir", default=str(HERE / "models"), help="where the ensemble ticket and its report go")
    parser.add_argument(
        "--combine",
        choices=["union", "intersection"],
        default="union",
        help="union: a weight survives if it survives in either ticket; intersection: in both",
    )
    parser.add_argument(
        "--output_name",
        default=None,
        help="file name (default: ensemble_ticket_<taskA>_<taskB>_<combine>_seed<seed>.safetensors)",
    )
    parser.add_argument(
        "--model_name_or_path",
        default=None,
        help="where to read the pre-trained weights when neither ticket holds them (default: the tickets' base model)",
    )
    return parser.parse_args(argv)


def base_model_key(ticket: Ticket) -> str:
    """The ticket's base model by content: as its file records it, else what its base model is now."""
    return (ticket.base_identity or {}).get("key") or identify_model(ticket.base_model).key


def check_same_base(a: Ticket, b: Ticket) -> None:
    if base_model_key(a) != base_model_key(b):
        raise UserError(
            f"tickets of different base models: --ticket_a {a.path} is {base_model_key(a)}, "
            f"--ticket_b {b.path} is {base_model_key(b)}"
        )
    a.mask.check_compatible(b.mask, what=f"tickets {a.path.name} and {b.path.name}")


def pretrained_weights(a: Ticket, b: Ticket, model_name_or_path: str | None) -> dict:
    """The pre-trained weights under the combined mask.

    Two tickets rewound to the pre-trained weights hold them wherever their masks survive, so the
    union's values are A's where A survives and B's elsewhere (no model load). Tickets rewound to
    warmup weights, or earlier-format files (trained weights), do not: the base model is loaded.
    """
    if all(t.metadata.get("rewind_to") == "pretrained" for t in (a, b)):
        merged = dict(a.rewind_weights)
        for name in a.mask:
            merged[name] = torch.where(a.mask[name], a.rewind_weights[name], b.rewind_weights[name])
        return merged
    source = model_name_or_path or a.base_model
    resolve_model(source)
    print(
        f"reading the pre-trained weights from {source} (the tickets hold {a.metadata.get('rewind_to')} / "
        f"{b.metadata.get('rewind_to')} weights)"
    )
    return classifier_factory(source)().state_dict()


def ensemble_name(a: Ticket, b: Ticket, combine: str) -> str:
    tasks = [str(t.metadata.get("task") or t.label) for t in (a, b)]
    seeds = {t.metadata.get("seed") for t in (a, b)}
    seed = "-".join(str(t.metadata.get("seed")) for t in (a, b)) if len(seeds) > 1 else str(seeds.pop())
    suffix = f"_{KEEP_POOLER_LABEL}" if all(t.metadata.get("keep_pooler") for t in (a, b)) else ""
    return f"ensemble_ticket_{tasks[0]}_{tasks[1]}_{combine}_seed{seed}{suffix}{TICKET_SUFFIX}"


def refuse_other_ensemble(out: Path, summary: dict) -> None:
    """Writing the same ensemble again is harmless (every array task of run_fewshot.sh may build it);
    replacing an ensemble of other tickets is not."""
    saved = out.with_name(out.stem + "_summary.json")
    if not saved.exists():
        return
    earlier = read_json(saved, "ensemble summary")
    same = [Path(p).name for p in earlier.get("sources", [])] == [Path(p).name for p in summary["sources"]]
    if not same or earlier.get("combine") != summary["combine"]:
        raise UserError(
            f"{out} already holds the {earlier.get('combine')} of {', '.join(earlier.get('sources', []))}; "
            "give another --save_dir or --output_name"
        )


def combine_tickets(a: Ticket, b: Ticket, combine: str, weights: dict) -> tuple[Ticket, list[dict], dict]:
    check_same_base(a, b)
    mask = a.mask.union(b.mask) if combine == "union" else a.mask.intersection(b.mask)
    jaccard = a.mask.layer_jaccard(b.mask)
    sa, sb, sr = a.mask.layer_sparsity(), b.mask.layer_sparsity(), mask.layer_sparsity()
    layers = [
        {
            "layer": n,
            "weights": a.mask[n].numel(),
            "sparsity_a_pct": 100 * sa[n],
            "sparsity_b_pct": 100 * sb[n],
            "sparsity_result_pct": 100 * sr[n],
            "jaccard": jaccard[n],
        }
        for n in mask
    ]
    summary = {
        "combine": combine,
        "sources": [str(a.path), str(b.path)],
        "source_tasks": [a.metadata.get("task"), b.metadata.get("task")],
        "sparsity_a": a.sparsity,
        "sparsity_b": b.sparsity,
        "sparsity": mask.sparsity(),
        "jaccard": a.mask.jaccard(b.mask),
    }
    metadata = dict(
        summary,
        task="+".join(str(t.metadata.get("task") or "unknown") for t in (a, b)),  # never 'None+qqp'
        seed=a.metadata.get("seed"),
        rewind_to="pretrained",
        target_sparsity=None,
        history=None,
    )
    ticket = make_ticket(a.base_model, mask, weights, metadata, kind="ensemble")
    ticket.head = {}  # no task owns the ensemble: a fresh head is drawn when it is fine-tuned
    return ticket, layers, summary


@user_facing
def main(argv=None) -> Path:
    args = parse_args(argv)
    a, b = load_ticket(args.ticket_a, "--ticket_a"), load_ticket(args.ticket_b, "--ticket_b")
    check_same_base(a, b)
    weights = pretrained_weights(a, b, args.model_name_or_path)
    ticket, layers, summary = combine_tickets(a, b, args.combine, weights)
    out = Path(args.save_dir) / (args.output_name or ensemble_name(a, b, args.combine))
    refuse_other_ensemble(out, summary)
    save_ticket(out, ticket)
    write_csv(out.with_name(out.stem + "_layers.csv"), layers, LAYER_COLUMNS)
    atomic_write_json(out.with_name(out.stem + "_summary.json"), dict(summary, output=str(out)))
    print(f"{'layer':<55} {'A %':>7} {'B %':>7} {args.combine + ' %':>14} {'Jaccard':>8}")
    for row in layers:
        print(
            f"{row['layer']:<55} {row['sparsity_a_pct']:7.2f} {row['sparsity_b_pct']:7.2f} "
            f"{row['sparsity_result_pct']:14.2f} {row['jaccard']:8.4f}"
        )
    print(
        f"{'all prunable weights':<55} {100 * summary['sparsity_a']:7.2f} {100 * summary['sparsity_b']:7.2f} "
        f"{100 * summary['sparsity']:14.2f} {summary['jaccard']:8.4f}"
    )
    print(f"ensemble ticket: {out}")
    return out


if __name__ == "__main__":
    main()
