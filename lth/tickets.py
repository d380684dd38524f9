"""BERT ticket files: masks, base model, head, rewind weights and metadata in one file.

Format (a dict saved with torch.save, written atomically):

    format          "lth-bert-ticket", version 1
    kind            "ticket" (found by IMP), "ensemble" (union/intersection of two tickets)
    base_model      the --model_name_or_path the weights came from (e.g. bert-base-uncased)
    masks           {parameter name: bool tensor}, True = the weight survives; over the prunable set
    rewind_weights  the model's state at the rewind point without the head (pre-trained weights,
                    or the weights after the warmup epochs), pruned entries already zero
    head            the classification head at the rewind point ({} when a ticket has none)
    metadata        task, sparsity (measured), target_sparsity, seed, rewind_to, history (per-round rows), ...

The earlier study's files (keys model_state_dict / mask_dict / sparsity / seed / history) load too:
their weights are the TRAINED weights (the earlier code saved after training), the mask comes from
`mask_dict` or, where it is empty, from the zeros of the prunable weights.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lth.errors import UserError
from lth.masks import Mask
from lth.storage import atomic_torch_save, load_checkpoint

TICKET_FORMAT = "lth-bert-ticket"
TICKET_VERSION = 1
HEAD_PREFIX = "classifier."
EARLIER_BASE_MODEL = "bert-base-uncased"  # the earlier study's only model

# Chen et al.'s prunable set: every encoder linear weight and the pooler; never embeddings,
# LayerNorm, biases or the classification head.
_PRUNABLE = re.compile(
    r"(^|\.)(encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
    r"intermediate\.dense|output\.dense)|pooler\.dense)\.weight$"
)


def is_prunable_bert_weight(name: str) -> bool:
    return bool(_PRUNABLE.search(name))


# Runs, tickets and ensembles made with the pooler left out of pruning carry this in their names;
# the figures use it to keep them apart from the others.
KEEP_POOLER_LABEL = "keep-pooler"


def prunable_bert_names(names, include_pooler: bool = True) -> list[str]:
    return [n for n in names if is_prunable_bert_weight(n) and (include_pooler or "pooler." not in n)]


@dataclass
class Ticket:
    base_model: str
    mask: Mask
    rewind_weights: dict[str, torch.Tensor]
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    kind: str = "ticket"  # ticket | ensemble | earlier-format
    path: Path | None = None

    @property
    def sparsity(self) -> float:
        return self.mask.sparsity()

    @property
    def label(self) -> str:
        return self.path.stem if self.path is not None else self.metadata.get("task", "ticket")

    def to_dict(self) -> dict:
        return {
            "format": TICKET_FORMAT,
            "version": TICKET_VERSION,
            "kind": self.kind,
            "base_model": self.base_model,
            "masks": self.mask.state_dict(),
            "rewind_weights": {k: v.detach().cpu().clone() for k, v in self.rewind_weights.items()},
            "head": {k: v.detach().cpu().clone() for k, v in self.head.items()},
            "metadata": dict(self.metadata, sparsity=self.sparsity),
        }


def split_head(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(everything but the head, the head)."""
    body = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIX)}
    head = {k: v for k, v in state.items() if k.startswith(HEAD_PREFIX)}
    return body, head


def make_ticket(
    base_model: str, mask: Mask, weights: dict[str, torch.Tensor], metadata: dict, kind: str = "ticket"
) -> Ticket:
    """A ticket from a full model state at the rewind point (pruned entries zeroed here)."""
    body, head = split_head({k: v.detach().cpu().clone() for k, v in weights.items()})
    for name, keep in mask.layers.items():
        body[name] = body[name] * keep.to(body[name].dtype).cpu()
    return Ticket(base_model, mask.to("cpu"), body, head, metadata, kind)


def save_ticket(path: str | os.PathLike, ticket: Ticket) -> Path:
    path = Path(path)
    atomic_torch_save(path, ticket.to_dict())
    ticket.path = path
    return path


# --- loading ------------------------------------------------------------------------------------
def load_ticket(path: str | os.PathLike, flag: str = "--checkpoint") -> Ticket:
    """A ticket file of this toolkit or of the earlier study; anything else is one line naming it."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist")
    raw = load_checkpoint(path, "ticket file")
    if not isinstance(raw, dict):
        raise UserError(f"{flag} {path} is not a ticket file (holds a {type(raw).__name__})")
    if raw.get("format") == TICKET_FORMAT:
        ticket = _from_current(raw, path, flag)
    elif "model_state_dict" in raw:
        ticket = _from_earlier(raw, path, flag)
    else:
        raise UserError(
            f"{flag} {path} is not a ticket file (keys {', '.join(sorted(map(str, raw))[:6])}; "
            "expected a file written by lottery_ticket_bert.py or the earlier study's model_state_dict/mask_dict)"
        )
    ticket.path = path
    return ticket


def _from_current(raw: dict, path: Path, flag: str) -> Ticket:
    if raw.get("version", 0) > TICKET_VERSION:
        raise UserError(
            f"{flag} {path} is ticket format version {raw['version']}; this toolkit reads up to {TICKET_VERSION}"
        )
    mask = Mask.from_state_dict(raw["masks"])
    weights = raw["rewind_weights"]
    _check_mask_fits(mask, weights, path, flag)
    return Ticket(
        raw["base_model"], mask, weights, raw.get("head", {}), raw.get("metadata", {}), raw.get("kind", "ticket")
    )


def _normalise_earlier_name(name: str) -> str:
    name = name.removeprefix("model.")
    if name.endswith("weight_mask"):
        name = name[: -len("_mask")]
    elif name.endswith("_mask"):
        name = name[: -len("_mask")]
    elif not name.endswith(".weight"):
        name = f"{name}.weight"
    return name


def _from_earlier(raw: dict, path: Path, flag: str) -> Ticket:
    """The earlier study's BertForCustomTask files: `bert.*` weights (maybe prefixed `model.`)."""
    state = raw["model_state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"{flag} {path}: model_state_dict is not a state dict")
    if state and all(k.startswith("model.") for k in state):
        state = {k.removeprefix("model."): v for k, v in state.items()}
    # Files saved while torch pruning hooks were attached hold weight_orig and weight_mask.
    weights, hook_masks = {}, {}
    for key, value in state.items():
        if key.endswith(".weight_orig"):
            base = key[: -len("_orig")]
            mask_value = state.get(f"{base}_mask")
            weights[base] = value * mask_value if mask_value is not None else value
        elif key.endswith(".weight_mask"):
            hook_masks[key[: -len("_mask")]] = value.bool()
        else:
            weights[key] = value
    body, old_head = split_head(weights)
    body = {k: v for k, v in body.items() if not k.endswith("position_ids")}
    names = prunable_bert_names(body)
    if not names:
        raise UserError(
            f"{flag} {path}: no BERT encoder weights in model_state_dict (keys like bert.encoder.layer.0...)"
        )
    given = {}
    for key, value in ((raw.get("mask_dict") or {}) | hook_masks).items():
        name = _normalise_earlier_name(key)
        if name in names:
            given[name] = torch.as_tensor(value).bool()
    layers = {n: given.get(n, body[n] != 0) for n in names}
    mask = Mask(layers)
    mask_source = (
        "mask_dict" if len(given) == len(names) else "zeros of the weights" if not given else "mask_dict + zeros"
    )
    _check_mask_fits(mask, body, path, flag)
    for n in names:
        body[n] = body[n] * mask[n].to(body[n].dtype)
    metadata = {
        "task": _task_from_name(path.name),
        "target_sparsity": raw.get("sparsity"),
        "seed": raw.get("seed"),
        "history": raw.get("history"),
        "rewind_to": "trained (earlier-format file: weights saved after training)",
        "mask_source": mask_source,
        "earlier_head_keys": sorted(old_head),  # a 2-layer head that HF's classifier cannot take
    }
    return Ticket(EARLIER_BASE_MODEL, mask, body, {}, metadata, "earlier-format")


def _task_from_name(filename: str) -> str | None:
    match = re.search(r"(sst2|qqp)", filename)
    return match.group(1) if match else None


def _check_mask_fits(mask: Mask, weights: dict, path: Path, flag: str) -> None:
    for name, keep in mask.layers.items():
        if name not in weights:
            raise UserError(f"{flag} {path}: mask layer {name} has no weight in the file")
        if tuple(weights[name].shape) != tuple(keep.shape):
            raise UserError(
                f"{flag} {path}: mask of {name} has shape {tuple(keep.shape)}, weight {tuple(weights[name].shape)}"
            )


# --- using --------------------------------------------------------------------------------------
def load_ticket_into(model: nn.Module, ticket: Ticket, with_head: bool = False) -> None:
    """Load the ticket's weights into `model` and zero its pruned weights; the head stays fresh
    unless `with_head`. Any key or shape disagreement is one line naming the ticket."""
    own = model.state_dict()
    body_keys = {k for k in own if not k.startswith(HEAD_PREFIX) and not k.endswith("position_ids")}
    given = {k for k in ticket.rewind_weights if not k.endswith("position_ids")}
    where = ticket.path or "ticket"
    missing, unexpected = sorted(body_keys - given), sorted(given - body_keys)
    if missing or unexpected:
        raise UserError(
            f"ticket {where} does not fit the model (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "pass the ticket's base model as --model_name_or_path"
        )
    for key in given:
        if own[key].shape != ticket.rewind_weights[key].shape:
            raise UserError(
                f"ticket {where}: {key} has shape {tuple(ticket.rewind_weights[key].shape)}, the model {tuple(own[key].shape)}; "
                "pass the ticket's base model as --model_name_or_path"
            )
    state = {k: ticket.rewind_weights[k] for k in given}
    if with_head and ticket.head:
        state.update(ticket.head)
    model.load_state_dict(state, strict=False)
    ticket.mask.apply(model)


def describe_ticket(path: str | os.PathLike) -> str:
    """A readable summary of a ticket file: what it is, where it came from, and its per-layer sparsity."""
    ticket = load_ticket(path, flag="ticket")
    meta = ticket.metadata
    lines = [
        f"ticket file      {ticket.path}",
        f"kind             {ticket.kind}",
        f"base model       {ticket.base_model}",
        f"task             {meta.get('task')}",
        f"seed             {meta.get('seed')}",
        f"rewound to       {meta.get('rewind_to')}",
        f"sparsity         {100 * ticket.sparsity:.2f}% of {ticket.mask.total():,} prunable weights "
        f"(target {meta.get('target_sparsity')})",
        f"head             {', '.join(ticket.head) or 'none (a fresh head is drawn when it is used)'}",
    ]
    if ticket.kind == "ensemble":
        lines.append(f"combined         {meta.get('combine')} of {', '.join(map(str, meta.get('sources', [])))}")
        lines.append(f"Jaccard overlap  {meta.get('jaccard')}")
    history = meta.get("history")
    if isinstance(history, list) and history:
        lines.append("history          round  sparsity%  dev metrics")
        for row in history:
            metrics = "  ".join(
                f"{k}={row[k]:.2f}" for k in ("dev_accuracy", "dev_f1") if isinstance(row.get(k), float)
            )
            lines.append(
                f"                 {row.get('round', ''):>5}  {row.get('sparsity_pct', float('nan')):9.2f}  {metrics}"
            )
    elif isinstance(history, dict):
        lines.append(f"history          {', '.join(f'{k}: {v}' for k, v in history.items())}")
    lines.append(ticket.mask.summary())
    return "\n".join(lines)
