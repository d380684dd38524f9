"""Lottery tickets in pre-trained BERT (Chen et al., NeurIPS 2020): global IMP over the encoder's
linear layers and the pooler, rewinding to the pre-trained weights (or to the weights after
--warmup epochs), until exactly --sparsity; writes the ticket files and per-round results.

    python lottery_ticket_bert.py --task sst2 --sparsity 0.6 --epochs 3 --batch_size 32 --lr 2e-5 --seed 42
    python lottery_ticket_bert.py --task qqp --sparsity 0.7 --model_name_or_path minilm --subset 4000 --epochs 1

Chen et al.'s baselines are branches of that ticket (the same flags, in the same --output_dir): they share its
dense round 0 and train one round, at their own --sparsity, taken from the ticket that went to --ticket_sparsity:

    python lottery_ticket_bert.py --task sst2 --sparsity 0.5 --ticket_sparsity 0.7 --run_type random_prune --seed 42
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import LotterySettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(LotterySettings)

from pathlib import Path

from lth.arguments import resolve_device
from lth.errors import UserError, user_facing
from lth.experiment import configure_threads, seed_everything, ticket_dir_of
from lth.families import EntryScript
from lth.imp import IMPSettings, run_imp
from lth.masks import Mask
from lth.results import RunDirectory, RunFiles, is_finished
from lth.tickets import load_ticket, make_ticket, save_ticket

from .data import load_task_data
from .model import classifier_factory, load_tokenizer, resolve_model
from .pruning import bert_prunable_names, rounds_needed
from .trainer import build_recipe, rewind_iteration

ENTRY = EntryScript(LotterySettings)
parse_args, run_directory = ENTRY.parse_args, ENTRY.run_directory


def write_tickets(args: LotterySettings, run_path: Path) -> list[Path]:
    """The final ticket and the dense (sparsity 0) one, from the run's saved state."""
    state = RunFiles(run_path).load_state()
    mask = Mask.from_state_dict(state["mask"])
    k = state["rows"][0].get("rewind_iteration", 0) if state["rows"] else 0
    weights = state["rewind"] if args.rewind_to == "warmup" and state["rewind"] is not None else state["init"]
    rows = state["rows"]
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
        "run_name": args.run_name(),
        "settings": args.to_json(),
    }
    written = []
    dense = Mask({n: m | True for n, m in mask.layers.items()})
    # The dense ticket is the one of round 0; the final one was trained in the last round.
    for sparsity, ticket_mask, row in (
        (0.0, dense, rows[0] if rows else {}),
        (args.sparsity, mask, rows[-1] if rows else {}),
    ):
        path = args.ticket_path(sparsity)
        refuse_other_ticket(path, args, sparsity)
        accuracy = {
            key: row[key] for key in ("round", "dev_accuracy", "dev_f1", "dev_loss") if row.get(key) is not None
        }
        ticket = make_ticket(
            args.model_name_or_path,
            ticket_mask,
            weights,
            dict(metadata, target_sparsity=sparsity, accuracy=accuracy, owner=args.ticket_owner(sparsity)),
        )
        ticket.base_identity = args.model_identity().to_json()
        written.append(save_ticket(path, ticket))
    return written


def ticket_owner_of(path: Path) -> dict | None:
    """The settings that made an existing ticket file (None: a file that does not say, e.g. the earlier study's)."""
    metadata = load_ticket(path, "--ticket_dir").metadata
    if metadata.get("owner") is not None:
        return metadata["owner"]
    if isinstance(metadata.get("settings"), dict):  # this toolkit's earlier .pt tickets recorded their settings
        earlier = LotterySettings.from_saved(metadata["settings"])
        return earlier.ticket_owner(metadata.get("target_sparsity") or 0.0)
    return None


def refuse_other_ticket(path: Path, args: LotterySettings, sparsity: float) -> None:
    """A ticket file of other settings or another model is never overwritten, the dense one included (the same
    run's ticket, or the dense ticket of a run that differs only in its target, may be written again)."""
    if not path.exists():
        return
    owner, mine = ticket_owner_of(path), args.ticket_owner(sparsity)
    if owner != mine:
        differing = sorted(k for k in mine if owner is None or owner.get(k) != mine[k])
        detail = ", ".join(f"{k}: {owner.get(k) if owner else '?'!r} there, {mine[k]!r} here" for k in differing[:3])
        raise UserError(
            f"ticket {path} was written by another run ({detail or 'its settings are not recorded'}); "
            "pass another --ticket_dir or move that file"
        )


@user_facing
def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    configure_threads()
    resolve_model(args.model_name_or_path)  # an unusable --model_name_or_path fails before anything is written
    branch_round = args.baseline_round() if args.is_baseline() else None  # no round of its ticket: refused here
    run = RunDirectory(args.output_dir, args)
    # Winning tickets write ticket files; baselines only their results.
    targets = () if args.is_baseline() else (0.0, args.sparsity)
    tickets = [args.ticket_path(s) for s in targets]
    for sparsity, path in zip(targets, tickets, strict=True):
        refuse_other_ticket(path, args, sparsity)  # before any training: another run's ticket stops this one
    with run:  # opening compares the saved settings (the model by content) before the run counts as finished
        if is_finished(run.path) and all(p.exists() for p in tickets):
            made = f" (tickets: {', '.join(map(str, tickets))})" if tickets else ""
            print(f"{run.path}: finished earlier; nothing to do{made}")
            return
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
                rounds=branch_round or rounds_needed(total, args.sparsity, args.prune_step_of_original),
                seed=args.seed,
                run_type=args.run_type,
                rewind_iteration=k,
                extra_columns={
                    "rewind_iteration": k,
                    "train_examples": len(data.train),
                    "dev_examples": len(data.dev),
                },
                ticket_dir=ticket_dir_of(args),
                first_branch_round=branch_round or 1,
                ticket_hint=ticket_hint(args),
            )
            what = f"{settings.rounds} pruning rounds"
            if branch_round is not None:
                what = f"{args.run_type}: round {branch_round} of its ticket {args.ticket_run()}"
            print(
                f"{args.task}: {len(data.train)} train / {len(data.dev)} dev examples, {steps} steps per epoch, "
                f"{len(names)} prunable matrices ({total:,} weights), {what}"
            )
            run_imp(run, recipe, settings, quiet=args.quiet)
        written = write_tickets(args, run.path) if not args.is_baseline() else []
    print(f"results: {run.rounds_csv} and {run.curve_csv}")
    if written:
        print(f"tickets: {', '.join(map(str, written))}")


def ticket_hint(args: LotterySettings) -> str | None:
    """How to train a baseline's ticket, for the one line of a baseline whose ticket nobody trains."""
    if not args.is_baseline():
        return None
    return (
        f"train the ticket first: lottery_ticket_bert.py with the same flags, --run_type winning_ticket and "
        f"--sparsity {args.ticket_sparsity:g} (no --ticket_sparsity)"
    )


if __name__ == "__main__":
    main()
