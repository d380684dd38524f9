"""Lottery tickets in pre-trained BERT (Chen et al., NeurIPS 2020): global IMP over the encoder's
linear layers and the pooler, rewinding to the pre-trained weights (or to the weights after
--warmup epochs), until exactly --sparsity; writes the ticket files and per-round results.

    python lottery_ticket_bert.py --task sst2 --sparsity 0.6 --epochs 3 --batch_size 32 --lr 2e-5 --seed 42
    python lottery_ticket_bert.py --task qqp --sparsity 0.7 --model_name_or_path minilm --subset 4000 --epochs 1
"""

from __future__ import annotations

from pathlib import Path

from data import MAX_LENGTH, load_task_data
from model import DEFAULT_MODEL, classifier_factory, load_tokenizer, resolve_model
from pruning import PRUNE_RATE, bert_prunable_names, rounds_needed
from trainer import WEIGHT_DECAY, build_recipe, rewind_iteration

from lth.arguments import (
    ArgumentParser,
    add_device_argument,
    fraction,
    non_negative_int,
    positive_float,
    positive_int,
    resolve_device,
)
from lth.errors import UserError, user_facing
from lth.experiment import configure_threads, seed_everything, settings_of
from lth.imp import IMPSettings, run_imp
from lth.masks import Mask
from lth.results import RunDirectory, is_finished, run_name
from lth.storage import load_checkpoint
from lth.text_data import GLUE_TASKS
from lth.tickets import KEEP_POOLER_LABEL, make_ticket, save_ticket

HERE = Path(__file__).resolve().parent


def parse_args(argv=None):
    parser = ArgumentParser(prog="BERT/lottery_ticket_bert.py", description=__doc__.splitlines()[0])
    parser.add_argument("--task", choices=sorted(GLUE_TASKS), default="sst2", help="source task")
    parser.add_argument(
        "--sparsity",
        type=fraction,
        default=0.6,
        help="final sparsity of the prunable weights (Chen et al.: SST-2 0.6, QQP 0.9)",
    )
    parser.add_argument(
        "--warmup", type=non_negative_int, default=1, help="epochs before the rewind point with --rewind_to warmup"
    )
    parser.add_argument("--epochs", type=positive_int, default=3, help="training epochs per pruning round")
    parser.add_argument(
        "--subset",
        type=positive_int,
        default=None,
        help="train on a seeded random subset of this many examples (default: all)",
    )
    parser.add_argument("--batch_size", type=positive_int, default=32)
    parser.add_argument(
        "--lr", type=positive_float, default=2e-5, help="AdamW peak learning rate (linear schedule, 10%% warmup)"
    )
    parser.add_argument(
        "--weight_decay", type=float, default=WEIGHT_DECAY, help="AdamW weight decay (not on biases and LayerNorm)"
    )
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--model_name_or_path",
        default=DEFAULT_MODEL,
        help="hub name, local folder, or 'minilm' (offline MiniLM-L6-H384)",
    )
    parser.add_argument(
        "--rewind_to",
        choices=["pretrained", "warmup"],
        default="pretrained",
        help="pretrained: the pre-trained weights and initial head (Chen et al.); warmup: the weights after --warmup epochs",
    )
    parser.add_argument(
        "--prune_rate",
        type=fraction,
        default=PRUNE_RATE,
        help="share of the ORIGINAL prunable weights removed per round",
    )
    parser.add_argument(
        "--keep_pooler",
        action="store_true",
        help="leave the pooler dense and out of the global ranking (for a pooler that was never trained, "
        "as in the offline MiniLM, whose small weights global pruning would remove first)",
    )
    parser.add_argument(
        "--max_length", type=positive_int, default=MAX_LENGTH, help="tokens per example (longer ones are truncated)"
    )
    parser.add_argument(
        "--eval_every",
        type=non_negative_int,
        default=0,
        help="evaluate on the dev set every N iterations (0: once per epoch)",
    )
    parser.add_argument(
        "--checkpoint_every",
        type=non_negative_int,
        default=1000,
        help="save progress every N iterations (0: per round only)",
    )
    parser.add_argument(
        "--data_dir",
        default=None,
        help="data root holding glue/SST-2 and glue/QQP (default: $LTH_DATA_DIR, else ./data; online: the hub)",
    )
    parser.add_argument("--save_dir", default=str(HERE / "models"), help="where the ticket files are written")
    parser.add_argument(
        "--output_dir",
        default=str(HERE / "results" / "lth"),
        help="where run directories (CSVs, resumable state) are written",
    )
    parser.add_argument("--quiet", action="store_true", help="no per-round lines")
    add_device_argument(parser)
    args = parser.parse_args(argv)
    if args.prune_rate <= 0:
        raise UserError("--prune_rate must be above 0 (a share of the original prunable weights per round)")
    if args.rewind_to == "warmup" and args.warmup == 0:
        raise UserError("--rewind_to warmup needs --warmup of at least 1 epoch")
    return args


def percent(value: float) -> int:
    return int(round(100 * value))


def ticket_path(save_dir: str | Path, task: str, sparsity: float, seed: int, keep_pooler: bool = False) -> Path:
    """The earlier study's names, which the few-shot configs use (a dense-pooler ticket says so)."""
    suffix = f"_{KEEP_POOLER_LABEL}" if keep_pooler else ""
    return Path(save_dir) / f"lottery_ticket_{task}_sparsity{percent(sparsity)}_seed{seed}{suffix}.pt"


def model_label(name_or_path: str) -> str:
    return Path(name_or_path.rstrip("/")).name or "model"


def run_directory(args) -> Path:
    parts = [
        ("bert-", args.task),
        ("", model_label(args.model_name_or_path)),
        ("sparsity", percent(args.sparsity)),
        ("rewind-", args.rewind_to),
    ]
    if args.subset:
        parts.append(("subset", args.subset))
    if args.keep_pooler:
        parts.append(("", KEEP_POOLER_LABEL))
    parts.append(("seed", args.seed))
    return Path(args.output_dir) / run_name(parts)


def write_tickets(args, run_path: Path) -> list[Path]:
    """The final ticket and the dense (sparsity 0) one, from the run's saved state."""
    state = load_checkpoint(run_path / "state.pt", "run state")
    mask = Mask.from_state_dict(state["mask"])
    k = state["rows"][0].get("rewind_iteration", 0) if state["rows"] else 0
    weights = state["rewind"] if args.rewind_to == "warmup" and state["rewind"] is not None else state["init"]
    metadata = {
        "task": args.task,
        "target_sparsity": args.sparsity,
        "seed": args.seed,
        "rewind_to": args.rewind_to,
        "rewind_iteration": k,
        "keep_pooler": args.keep_pooler,
        "model_name_or_path": args.model_name_or_path,
        "history": state["rows"],
        "run_dir": str(run_path),
    }
    written = []
    dense = Mask({n: m | True for n, m in mask.layers.items()})
    for sparsity, ticket_mask in ((0.0, dense), (args.sparsity, mask)):
        ticket = make_ticket(args.model_name_or_path, ticket_mask, weights, dict(metadata, target_sparsity=sparsity))
        written.append(
            save_ticket(ticket_path(args.save_dir, args.task, sparsity, args.seed, args.keep_pooler), ticket)
        )
    return written


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    configure_threads()
    resolve_model(args.model_name_or_path)  # an unusable --model_name_or_path fails before anything is written
    run = RunDirectory(args.output_dir, run_directory(args).name, settings_of(args))
    tickets = [ticket_path(args.save_dir, args.task, s, args.seed, args.keep_pooler) for s in (0.0, args.sparsity)]
    if is_finished(run.path) and all(p.exists() for p in tickets):
        print(f"{run.path}: finished earlier; nothing to do (tickets: {', '.join(map(str, tickets))})")
        return
    with run:
        if not is_finished(run.path):
            seed_everything(args.seed)
            tokenizer = load_tokenizer(args.model_name_or_path)
            data = load_task_data(args.task, tokenizer, args.data_dir, args.max_length, args.subset, args.seed, device)
            factory = classifier_factory(args.model_name_or_path)
            probe = factory()
            names = bert_prunable_names(probe, include_pooler=not args.keep_pooler)
            total = Mask.dense(probe, names).total()
            del probe
            recipe = build_recipe(args, data, device, factory, names)
            steps = recipe.batches.steps_per_epoch
            k = rewind_iteration(args, steps)
            settings = IMPSettings(
                rounds=rounds_needed(total, args.sparsity, args.prune_rate),
                seed=args.seed,
                rewind_iteration=k,
                extra_columns={
                    "task": args.task,
                    "target_sparsity": args.sparsity,
                    "rewind_to": args.rewind_to,
                    "rewind_iteration": k,
                    "train_examples": len(data.train),
                    "dev_examples": len(data.dev),
                },
            )
            print(
                f"{args.task}: {len(data.train)} train / {len(data.dev)} dev examples, {steps} steps per epoch, "
                f"{len(names)} prunable matrices ({total:,} weights), {settings.rounds} pruning rounds"
            )
            run_imp(run, recipe, settings, quiet=args.quiet)
        written = write_tickets(args, run.path)
    print(f"results: {run.rounds_csv} and {run.curve_csv}")
    print(f"tickets: {', '.join(map(str, written))}")


if __name__ == "__main__":
    main()
