"""BERT's training recipe: AdamW with weight decay (not on biases and LayerNorm), a linear schedule
with 10% warmup, length-grouped dynamic-padding batches, and metrics on the full dev set."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from lth.imp import IMPRecipe
from lth.model_identity import model_key
from lth.text.data import LengthGroupedBatches, evaluate_text, sequence_logits
from lth.training import RoundSchedule

from .data import TaskData
from .model import reinitialized_factory
from .pruning import ChenPruning, bert_prunable_names
from .settings import WARMUP_FRACTION, WEIGHT_DECAY


def bert_step_loss(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    return F.cross_entropy(sequence_logits(model, batch), batch["labels"])


def make_adamw(model: nn.Module, lr: float, weight_decay: float = WEIGHT_DECAY) -> torch.optim.Optimizer:
    """AdamW over the trainable parameters; biases and LayerNorm get no decay (as BERT's recipe).
    Pruned weights are re-zeroed after every step by the IMP loop's mask enforcer."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if name.endswith("bias") or "LayerNorm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    groups = [g for g in groups if g["params"]]
    device = next(model.parameters()).device
    # The fused kernel is one call per step instead of one per tensor: a large share of a CPU step.
    fused = device.type in ("cpu", "cuda")
    return torch.optim.AdamW(groups, lr=lr, fused=fused)


def linear_schedule(lr: float, total_iterations: int, warmup_fraction: float = WARMUP_FRACTION):
    """Linear warmup over the first `warmup_fraction` of the iterations, then linear decay to zero at the end."""
    warmup = max(1, math.ceil(warmup_fraction * total_iterations))

    def lr_at(iteration: int) -> float:
        if iteration < warmup:
            return lr * (iteration + 1) / warmup
        return lr * max(0.0, (total_iterations - iteration) / max(1, total_iterations - warmup))

    return lr_at


# GLUE has no labelled test set: rows and curves report the dev set (dev_f1 follows for QQP).
BERT_ROUND_COLUMNS = [
    "round",
    "weights_remaining_pct",
    "sparsity_pct",
    "dev_accuracy",
    "dev_loss",
    "train_loss",
    "dev_accuracy_best",
    "iterations",
    "run_type",
    "arch",
    "seed",
    "wall_time_s",
]
BERT_CURVE_COLUMNS = ["round", "iteration", "train_loss", "dev_loss", "dev_accuracy"]


def summarize_round(curve: list[dict]) -> dict:
    """A round's row: dev metrics at the end of the round (no selection on dev), the round's mean
    training loss, and the best dev accuracy seen during the round for reference."""
    last = curve[-1]
    row = {k: v for k, v in last.items() if k.startswith("dev_")}
    # Each evaluation's train_loss is the mean since the previous one: weight it by that span.
    spans = [(b["iteration"] - a["iteration"], b["train_loss"]) for a, b in zip(curve[:-1], curve[1:], strict=True)]
    steps = sum(span for span, _ in spans)
    row["train_loss"] = sum(span * loss for span, loss in spans) / steps if steps else float("nan")
    row["dev_accuracy_best"] = max(point["dev_accuracy"] for point in curve)
    row["iterations"] = last["iteration"]
    return row


def describe_round(row: dict) -> str:
    f1 = f", dev F1 {row['dev_f1']:.2f}%" if "dev_f1" in row else ""
    return (
        f"round {row['round']:>2}: sparsity {row['sparsity_pct']:6.2f}% of the prunable weights, "
        f"dev accuracy {row['dev_accuracy']:.2f}%{f1}, train loss {row['train_loss']:.4f}, {row['wall_time_s']:.0f} s"
    )


def text_evaluator(data: TaskData, batch_size: int = 256):
    return lambda model: evaluate_text(model, data.dev, data.task.metrics, batch_size)


def build_recipe(
    args, data: TaskData, device: str, model_factory, prunable_names: list[str] | None = None
) -> IMPRecipe:
    batches = LengthGroupedBatches(data.train, args.batch_size, seed=args.seed)
    steps = batches.steps_per_epoch
    iterations = round_iterations(args, steps)
    if prunable_names is None:
        prunable_names = bert_prunable_names(model_factory())
    return IMPRecipe(
        arch=model_key(args.model_name_or_path),  # the model by content: two folders of one model are one arch
        model_factory=model_factory,
        # random_reinit's weights: the architecture initialised from scratch (model_factory loads pre-trained ones)
        fresh_model_factory=reinitialized_factory(args.model_name_or_path),
        policy=ChenPruning(args.prune_step_of_original, args.sparsity),
        make_optimizer=lambda model: make_adamw(model, args.lr, args.weight_decay),
        batches=batches,
        evaluate=text_evaluator(data),
        schedule=RoundSchedule(iterations, args.eval_every or steps, args.checkpoint_every),
        step_loss=bert_step_loss,
        lr_at=linear_schedule(args.lr, iterations, args.warmup_fraction),
        prunable_names=prunable_names,
        device=device,
        precision=args.precision,
        max_grad_norm=args.max_grad_norm,
        summarize=summarize_round,
        describe_row=describe_round,
        round_columns=BERT_ROUND_COLUMNS,
        curve_columns=BERT_CURVE_COLUMNS,
    )


def round_iterations(args, steps_per_epoch: int) -> int:
    """Iterations of the dense round: --epochs, plus --warmup before them when rewinding to warmup
    (later rounds start at the rewind point, so every round trains --epochs after it)."""
    epochs = args.epochs + (args.warmup if args.rewind_to == "warmup" else 0)
    return epochs * steps_per_epoch


def rewind_iteration(args, steps_per_epoch: int) -> int:
    return args.warmup * steps_per_epoch if args.rewind_to == "warmup" else 0
