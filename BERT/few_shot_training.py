"""Few-shot transfer: a ticket (or dense / earlier-format checkpoint) fine-tuned on k examples of a
target task with a fresh head, `headonly` (encoder frozen) or `full` (encoder trained, mask still
enforced), scored on the full target dev set; one row per run appended to a transfer CSV.

    python few_shot_training.py --checkpoint models/lottery_ticket_sst2_sparsity60_seed42.safetensors --target qqp --mode full --seed 42
"""

from __future__ import annotations

from lth.families import family_package, refuse_if_running

__package__ = __package__ or family_package(__file__)  # run as a script: its folder is its family's package
from .settings import FewShotSettings

if __name__ == "__main__":  # before the heavy imports: a start on a live run is refused within a second
    refuse_if_running(FewShotSettings)

import time
from pathlib import Path

import torch

from lth.arguments import resolve_device
from lth.atomic import atomic_write_json
from lth.errors import RunLockedError, UserError, user_facing
from lth.experiment import configure_threads, seed_everything
from lth.families import EntryScript
from lth.lease import DirectoryLock
from lth.results import RunDirectory, csv_value, is_finished, read_csv_rows, write_csv
from lth.text.data import LengthGroupedBatches
from lth.tickets import Ticket, head_replacement_note, load_ticket, load_ticket_into
from lth.training import RoundSchedule, train_round

from .data import load_task_data
from .model import classifier_factory, head_parameter_names, load_tokenizer, resolve_model
from .trainer import bert_step_loss, linear_schedule, make_adamw, text_evaluator

HERE = Path(__file__).resolve().parent
TRANSFER_CSV = "transfer.csv"
TRANSFER_COLUMNS = [
    "run",
    "source",
    "source_kind",
    "source_task",
    "source_sparsity_pct",
    "target",
    "mode",
    "k",
    "seed",
    "dev_accuracy",
    "dev_f1",
    "dev_loss",
    "dev_accuracy_before",
    "train_loss",
    "iterations",
    "epochs",
    "lr",
    "batch_size",
    "base_model",
    "dev_examples",
    "wall_time_s",
]
TRANSFER_KEY = ("run",)  # one row per run directory (its name carries every setting of the run)


ENTRY = EntryScript(FewShotSettings)
parse_args, run_directory = ENTRY.parse_args, ENTRY.run_directory


def missing_source_hint(path: Path) -> str:
    if path.name.startswith("ensemble_ticket"):
        return "create it first with create_ensemble_tickets.py --ticket_a ... --ticket_b ..."
    return "run lottery_ticket_bert.py (run_lth_bert.sh) first; it writes the lottery_ticket_* files"


def freeze_encoder(model: torch.nn.Module) -> list[str]:
    """headonly: only the classification head trains; returns the names left trainable."""
    heads = set(head_parameter_names(model))
    for name, param in model.named_parameters():
        param.requires_grad_(name in heads)
    return sorted(heads)


def append_transfer_row(csv_path: Path, row: dict) -> None:
    """Read-modify-write under a lock, so parallel array tasks never lose each other's rows; a row
    for the same (source, target, mode, k, seed) replaces the earlier one."""
    lock = DirectoryLock(csv_path.parent / ".transfer_csv")
    for attempt in range(600):
        try:
            lock.acquire()
            break
        except RunLockedError:
            if attempt == 599:
                raise
            time.sleep(0.1)
    try:
        rows = read_csv_rows(csv_path) if csv_path.exists() else []
        key = tuple(str(row[k]) for k in TRANSFER_KEY)
        rows = [r for r in rows if tuple(r.get(k, "") for k in TRANSFER_KEY) != key]
        rows.append(row)
        write_csv(csv_path, rows, TRANSFER_COLUMNS)
    finally:
        lock.release()


def fine_tune(args: FewShotSettings, ticket: Ticket, device: str) -> dict:
    base = args.model_name_or_path or ticket.base_model
    resolve_model(base)
    seed_everything(args.seed)
    tokenizer = load_tokenizer(base)
    data = load_task_data(
        args.target,
        tokenizer,
        args.data_dir,
        args.max_length,
        args.fewshot_size,
        args.seed,
        device,
        draw_purpose=1,
        size_flag="--fewshot_size",
    )
    torch.manual_seed(args.seed)  # the fresh head is a function of the seed alone
    model = classifier_factory(base)()
    load_ticket_into(model, ticket)  # the ticket's weights, pruned ones zero; the head stays fresh
    model.to(device)
    mask = ticket.mask.to(device)
    if args.finetune == "headonly":
        freeze_encoder(model)
    batches = LengthGroupedBatches(data.train, args.batch_size, seed=args.seed)
    iterations = args.epochs * batches.steps_per_epoch
    curve = train_round(
        model,
        make_adamw(model, args.lr, args.weight_decay),
        batches,
        bert_step_loss,
        text_evaluator(data),
        RoundSchedule(iterations, eval_every=iterations),
        enforce_mask=mask.enforcer(model) if args.finetune == "full" else (lambda: None),
        lr_at=linear_schedule(args.lr, iterations),
        description=f"few-shot {args.target} {args.finetune}",
        progress=not args.quiet,
        device=device,
    )
    params = dict(model.named_parameters())
    # The ticket's zeros are still zeros: `full` enforces them, `headonly` never touches the encoder.
    if any(bool(params[n].detach()[~mask[n]].any()) for n in mask):
        raise RuntimeError("a pruned weight became non-zero during few-shot training")
    before, after = curve[0], curve[-1]
    return {
        "source": Path(args.checkpoint).stem,
        "source_kind": ticket.kind,
        "source_task": ticket.metadata.get("task") or "",
        "source_sparsity_pct": 100.0 * ticket.sparsity,
        "target": args.target,
        "mode": args.finetune,
        "k": len(data.train),
        "seed": args.seed,
        "dev_accuracy": after["dev_accuracy"],
        "dev_f1": after.get("dev_f1", ""),
        "dev_loss": after["dev_loss"],
        "dev_accuracy_before": before["dev_accuracy"],
        "train_loss": after["train_loss"],
        "iterations": iterations,
        "epochs": args.epochs,
        "lr": args.lr,
        "batch_size": batches.batch_size,
        "base_model": base,
        "dev_examples": len(data.dev),
    }


@user_facing
def main(argv=None) -> dict | None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    configure_threads()
    checkpoint = Path(args.checkpoint)
    if not checkpoint.is_file() and not checkpoint.is_absolute() and (HERE / checkpoint).is_file():
        checkpoint = HERE / checkpoint  # config lines name files relative to BERT/
    if not checkpoint.is_file():
        raise UserError(f"--checkpoint {checkpoint}: source ticket does not exist; {missing_source_hint(checkpoint)}")
    run = RunDirectory(args.output_dir, args)
    if is_finished(run.path):
        print(f"{run.path}: finished earlier; nothing to do")
        return None
    started = time.perf_counter()
    # The ticket is checked before the run directory exists: a bad --checkpoint leaves nothing behind.
    ticket = load_ticket(checkpoint, model_name_or_path=args.model_name_or_path)
    note = head_replacement_note(ticket)
    if note:
        print(note)
    with run:
        row = fine_tune(args, ticket, device)
        row["wall_time_s"] = time.perf_counter() - started
        atomic_write_json(run.path / "result.json", row)
        row = {"run": run.name, **row, **{k: csv_value(v) for k, v in args.condition().items()}}
        append_transfer_row(Path(args.output_dir) / TRANSFER_CSV, row)
        run.mark_finished()
    f1 = f", F1 {row['dev_f1']:.2f}%" if row["dev_f1"] != "" else ""
    print(
        f"{row['source']} -> {args.target} ({args.finetune}, k={row['k']}, seed {args.seed}): "
        f"dev accuracy {row['dev_accuracy']:.2f}%{f1} (before: {row['dev_accuracy_before']:.2f}%)"
    )
    return row


if __name__ == "__main__":
    main()
