"""One iteration-based training loop for every family.

The loop trains for a fixed number of iterations, evaluates every `eval_every` iterations (and at
the first and last), re-zeroes pruned weights after every optimiser step, and can hand its whole
state to a callback every `checkpoint_every` iterations so a killed run resumes bit for bit.
What differs between families comes in as arguments: the batches, the loss of a batch, the
evaluation, the optimiser and the learning-rate schedule.

Inside the step loop nothing waits on the device: the training loss is summed as a tensor and
read once per evaluation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from lth.engine import RoundHooks, RoundStart, TrainedRound
from lth.rewinding import to_cpu
from lth.stopping import EvaluationInterrupted, StopRequested, check_during_evaluation, stop_requested

Batch = Any
StepLoss = Callable[[nn.Module, Batch], torch.Tensor]
Evaluate = Callable[[nn.Module], dict[str, float]]


@dataclass
class RoundSchedule:
    """How long one round trains and how often it reports and checkpoints (all in iterations)."""

    iterations: int
    eval_every: int
    checkpoint_every: int = 0  # 0: only the round's end is saved
    start_iteration: int = 0  # > 0 after rewinding to iteration k: the round trains from k to `iterations`

    def evaluation_points(self) -> list[int]:
        points = set(range(self.start_iteration, self.iterations, self.eval_every))
        points.add(self.iterations)
        return sorted(points)


def classification_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


@torch.no_grad()
def evaluate_classifier(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 5000
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy (%) over device tensors, in large batches."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device, dtype=torch.long)
    with autocast_for(x.device):
        for start in range(0, len(x), batch_size):
            check_during_evaluation()
            logits = model(x[start : start + batch_size]).float()
            target = y[start : start + batch_size]
            loss_sum += F.cross_entropy(logits, target, reduction="sum")
            correct += (logits.argmax(1) == target).sum()
    model.train(was_training)
    return loss_sum.item() / len(x), 100.0 * correct.item() / len(x)


def image_evaluator(val_x, val_y, test_x, test_y, batch_size: int = 5000) -> Evaluate:
    def evaluate(model: nn.Module) -> dict[str, float]:
        val_loss, val_acc = evaluate_classifier(model, val_x, val_y, batch_size)
        test_loss, test_acc = evaluate_classifier(model, test_x, test_y, batch_size)
        return {"val_loss": val_loss, "val_accuracy": val_acc, "test_loss": test_loss, "test_accuracy": test_acc}

    return evaluate


def autocast_for(device: torch.device | str, precision: str = "auto"):
    """The arithmetic of a forward pass. auto: bf16 autocast on CUDA (tensor cores), full precision elsewhere, so
    CPU runs are exact; bf16: bf16 autocast on any device (CPUs with AVX-512 BF16 or AMX run it natively);
    fp32: full precision everywhere."""
    device = torch.device(device)
    if precision == "bf16" or (precision == "auto" and device.type == "cuda"):
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_options(device: torch.device | str) -> dict:
    """torch.compile's options for a training step: CUDA graphs on a GPU, where a small model's step is bound by
    kernel launches (one replay instead of one launch per kernel); plain fused kernels elsewhere. Sets inductor's
    process-wide `fallback_random`: random ops (dropout) then draw from torch's generators as uncompiled code
    does, so a compiled run keeps its draws."""
    import torch._inductor.config

    torch._inductor.config.fallback_random = True
    return {"mode": "reduce-overhead" if torch.device(device).type == "cuda" else "default"}


def set_learning_rate(optimizer: torch.optim.Optimizer, lr_at: Callable[[int], float] | None, iteration: int) -> None:
    if lr_at is not None:
        lr = lr_at(iteration)
        for group in optimizer.param_groups:
            group["lr"] = lr


def run_schedule(
    schedule: RoundSchedule,
    iteration: int,
    recorded: set[int],
    step: Callable[[int], None],
    record: Callable[[int], None],
    checkpoint: Callable[[int], None],
    before_step: Callable[[int], None] | None = None,
    resumed_at: int | None = None,
    description: str = "training",
    progress: bool = True,
) -> None:
    """The schedule of one round, shared by every training path (one model, or several batched).

    From `iteration` to the round's end: `record(i)` evaluates at the evaluation points not yet in `recorded`,
    `checkpoint(i)` saves progress every `checkpoint_every` iterations (not again at `resumed_at`, where it was
    saved), when a stop is requested and when one interrupts an evaluation (which a resumed run repeats), and
    `before_step(i)` runs before iteration i is trained by `step(i)`.
    """
    points = schedule.evaluation_points()
    with tqdm(
        total=schedule.iterations - schedule.start_iteration,
        initial=iteration - schedule.start_iteration,
        desc=description,
        leave=False,
        mininterval=1.0,
        dynamic_ncols=True,
        disable=not progress,
    ) as bar:
        while True:
            if iteration in points and iteration not in recorded:
                try:
                    record(iteration)
                except EvaluationInterrupted:  # saved without this evaluation: a resumed run evaluates here again
                    checkpoint(iteration)
                    raise StopRequested(stop_requested(), f"at iteration {iteration}; its progress is saved") from None
                recorded.add(iteration)
            if iteration >= schedule.iterations:
                break
            if (
                schedule.checkpoint_every
                and iteration > schedule.start_iteration
                and (iteration - schedule.start_iteration) % schedule.checkpoint_every == 0
                and iteration != resumed_at
            ):
                checkpoint(iteration)
            signal_name = stop_requested()
            if signal_name is not None:  # a step boundary: save the round so far, then stop
                checkpoint(iteration)
                raise StopRequested(signal_name, f"at iteration {iteration}; its progress is saved")
            if before_step is not None:
                before_step(iteration)
            step(iteration)
            iteration += 1
            if iteration % 50 == 0 or iteration == schedule.iterations:
                bar.update(iteration - schedule.start_iteration - bar.n)


def train_round(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[int], Batch],
    step_loss: StepLoss,
    evaluate: Evaluate,
    schedule: RoundSchedule,
    enforce_mask: Callable[[], None] = lambda: None,
    lr_at: Callable[[int], float] | None = None,
    resume: dict | None = None,
    on_checkpoint: Callable[[dict], None] | None = None,
    on_iteration: Callable[[int], None] | None = None,
    on_evaluation: Callable[[dict], None] | None = None,
    description: str = "training",
    device: torch.device | str = "cpu",
    progress: bool = True,
    precision: str = "auto",
    max_grad_norm: float = 0.0,
) -> list[dict[str, float]]:
    """Train one round and return its curve: one row per evaluation (iteration, train_loss, metrics).

    `resume` is a dict previously passed to `on_checkpoint`; training continues from it exactly.
    `on_iteration(i)` runs before step i (used to snapshot the weights at a rewind iteration).
    `precision` is the training steps' arithmetic (autocast_for); `max_grad_norm` > 0 clips the gradients' global
    norm before each step (BERT's fine-tuning recipe).
    """
    model.train()
    # The CUDA generator only for a run on CUDA: touching it starts a CUDA context, which a CPU run on a GPU host
    # must not take (nor can a forked process).
    on_cuda = torch.device(device).type == "cuda"
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        torch.set_rng_state(resume["cpu_rng"])
        if resume.get("cuda_rng") is not None and on_cuda:
            torch.cuda.set_rng_state(resume["cuda_rng"], device)
        iteration = resume["iteration"]
        curve = list(resume["curve"])
        loss_sum = resume["loss_sum"].to(device)
        loss_count = resume["loss_count"]
    else:
        iteration, curve = schedule.start_iteration, []
        loss_sum, loss_count = torch.zeros((), device=device), 0

    def record(at: int) -> None:
        nonlocal loss_sum, loss_count
        row = {"iteration": at, "train_loss": (loss_sum.item() / loss_count) if loss_count else float("nan")}
        row.update(evaluate(model))
        curve.append(row)
        loss_sum, loss_count = torch.zeros((), device=device), 0
        if on_evaluation is not None:
            on_evaluation(row)

    def checkpoint(at: int) -> None:
        if on_checkpoint is None:
            return
        on_checkpoint(
            {
                "iteration": at,
                "model": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
                "optimizer": optimizer.state_dict(),
                "cpu_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state(device) if on_cuda else None,
                "curve": list(curve),
                "loss_sum": loss_sum.detach().cpu().clone(),
                "loss_count": loss_count,
            }
        )

    def before_step(at: int) -> None:
        if on_iteration is not None:
            on_iteration(at)
        set_learning_rate(optimizer, lr_at, at)

    def step(at: int) -> None:
        nonlocal loss_sum, loss_count
        batch = batches(at)
        with autocast_for(device, precision):
            loss = step_loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if max_grad_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
        optimizer.step()
        enforce_mask()
        loss_sum += loss.detach().float()
        loss_count += 1

    run_schedule(
        schedule,
        iteration,
        {row["iteration"] for row in curve},
        step,
        record,
        checkpoint,
        before_step,
        resumed_at=resume["iteration"] if resume is not None else None,
        description=description,
        progress=progress,
    )
    return curve


class OneNetwork:
    """The round engine of a run alone (lth.engine): one network, built once per run and trained by train_round.
    On CUDA the network is channels-last (cuDNN's fast convolution layout); with `compile` it is torch.compiled."""

    batched = False

    def __init__(self) -> None:
        self.model: nn.Module | None = None

    def prepare(self, replicates: list) -> None:
        if len(replicates) != 1:
            raise ValueError("OneNetwork trains one run; train several together with lth.batched.StackedNetworks")
        recipe = replicates[0].recipe
        device = torch.device(recipe.device)
        model = recipe.model_factory().to(device)
        if device.type == "cuda":
            model = model.to(memory_format=torch.channels_last)
        if recipe.compile:
            model.compile(**compile_options(device))  # in place: the state dict keeps its names
        self.model = model

    def train(self, round_index: int, replicates: list, starts: list[RoundStart], hooks: RoundHooks) -> list:
        (replicate,), (start,) = replicates, starts
        recipe, model = replicate.recipe, self.model
        device = torch.device(recipe.device)
        if start.resume is None:
            model.load_state_dict(start.weights)
            # Dropout draws from the global RNG: seeded per round, so a run resumed between rounds trains exactly
            # like one that never stopped (inside a round the checkpoint carries it).
            torch.manual_seed(start.dropout_seed)
        mask = start.mask.to(device)
        mask.apply(model)
        curve = train_round(
            model,
            recipe.make_optimizer(model),
            recipe.batches,
            recipe.step_loss,
            recipe.evaluate,
            hooks.schedule,
            enforce_mask=mask.enforcer(model),
            lr_at=recipe.lr_at,
            resume=start.resume["loop"] if start.resume is not None else None,
            on_checkpoint=lambda loop: hooks.checkpoint([{"loop": loop}]),
            on_iteration=lambda at: hooks.capture(0, at, lambda: to_cpu(model.state_dict())),
            on_evaluation=lambda point: hooks.evaluated(0, point),
            description=hooks.description,
            progress=hooks.progress,
            device=device,
            precision=recipe.precision,
            max_grad_norm=recipe.max_grad_norm,
        )
        return [TrainedRound(curve, to_cpu(model.state_dict()))]


def early_stop_summary(curve: list[dict[str, float]]) -> dict[str, float]:
    """Early stopping: the evaluation with the lowest validation loss (earliest on ties).

    Selection reads validation only; test accuracy is reported there and at the end.
    """
    best = min(curve, key=lambda row: (row["val_loss"], row["iteration"]))
    return {
        "early_stop_iteration": best["iteration"],
        "val_loss": best["val_loss"],
        "val_accuracy": best["val_accuracy"],
        "test_accuracy_early_stop": best["test_accuracy"],
        "test_accuracy_final": curve[-1]["test_accuracy"],
    }
