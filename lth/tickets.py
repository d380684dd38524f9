"""BERT ticket files: masks, base model, head and metadata, without pickle.

A ticket is a safetensors file (lth/mask_file.py: the masks bit-packed, one bit per prunable weight) whose JSON
header (`ticket`, format TICKET_FORMAT) holds:

    kind                 "ticket" (found by IMP), "ensemble" (union/intersection of two tickets), "earlier-format"
    base_model           the --model_name_or_path the weights came from (e.g. bert-base-uncased, minilm)
    base_model_identity  what that model is (lth/model_identity.py: config and weights digests, or hub name and
                         revision); a base model read back must match it
    weights              "base model": the rewind weights are the base model's pre-trained weights under the mask,
                         read from it when used; "stored": they are in the file (warmup rewinding, the earlier
                         study's trained weights), the surviving values of each pruned layer only
    task, sparsity (measured over the prunable weights), target_sparsity, weights_remaining_pct (per layer),
    accuracy (dev metrics of the round this mask was trained in), seed, rewind_to, history, settings, owner
    (the settings that make the file; another run's file is never overwritten), provenance (code and library
    versions, when, converted from what)

Tensors: the head at the rewind point (`head/...`, Hugging Face's classifier) and, where stored, the weights
(`kept/<layer>` surviving values in row-major order, `weights/<name>` for the others).

Earlier files still read: this toolkit's torch-pickled tickets (format "lth-bert-ticket", version 1: masks,
rewind_weights, head, metadata) and the earlier study's (keys model_state_dict / mask_dict / sparsity / seed /
history): their weights are the TRAINED weights (the earlier code saved after training), the mask comes from
`mask_dict` or, where it is empty, from the zeros of the prunable weights. Their base model is inferred from the
weight shapes (hidden size, layer count); their own head (an MLP on the CLS token) is described in
metadata["earlier_head"], not used. Torch files are read with weights_only=True: nothing in them can run code.
`lth ticket convert FILE` writes any of them in the current format.
"""

from __future__ import annotations

import functools
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from lth.checked_load import CheckpointLoadError, load_checkpoint
from lth.errors import UserError
from lth.mask_file import is_safetensors, load_mask_file, save_mask
from lth.masks import Mask
from lth.model_identity import identify_model, resolve_model_path
from lth.settings import TICKET_SUFFIX

TICKET_FORMAT = "lth-ticket/1"
# This toolkit's earlier tickets: a torch-pickled dict (read, never written).
PICKLED_TICKET_FORMAT = "lth-bert-ticket"
PICKLED_TICKET_VERSION = 1
FROM_BASE = "base model"
STORED = "stored"
HEAD_PREFIX = "classifier."
# How BERT/model.py spells the packaged MiniLM-L6-H384 (its OFFLINE_MODEL_ALIAS): tickets made with
# `--model_name_or_path minilm` record this name, so an earlier file of MiniLM's shapes must too.
MINILM_BASE_MODEL = "minilm"
# (hidden size, encoder layers) -> the base model an earlier-format file's weights came from.
EARLIER_BASES_BY_SHAPE = {
    (768, 12): "bert-base-uncased",
    (384, 6): MINILM_BASE_MODEL,
    (1024, 24): "bert-large-uncased",
}
EXPECTED_TICKET = (
    "expected a ticket written by lottery_ticket_bert.py or create_ensemble_tickets.py, "
    "or the earlier study's file with model_state_dict/mask_dict"
)

# Chen et al.'s prunable set: every encoder linear weight and the pooler; never embeddings,
# LayerNorm, biases or the classification head.
_PRUNABLE = re.compile(
    r"(^|\.)(encoder\.layer\.\d+\.(attention\.self\.(query|key|value)|attention\.output\.dense|"
    r"intermediate\.dense|output\.dense)|pooler\.dense)\.weight$"
)


def is_prunable_bert_weight(name: str) -> bool:
    return bool(_PRUNABLE.search(name))


def prunable_bert_names(names, include_pooler: bool = True) -> list[str]:
    return [n for n in names if is_prunable_bert_weight(n) and (include_pooler or "pooler." not in n)]


@dataclass
class Ticket:
    base_model: str
    mask: Mask
    # The encoder at the rewind point, pruned entries zero; None: the base model's pre-trained weights under the
    # mask, read from the base model on first use (a ticket file need not carry what the base model holds).
    weights: dict[str, torch.Tensor] | None
    head: dict[str, torch.Tensor] = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    kind: str = "ticket"  # ticket | ensemble | earlier-format
    path: Path | None = None
    base_identity: dict | None = None  # recorded in the file: what the base model is (lth/model_identity.py)
    file_format: str = TICKET_FORMAT  # what the file it was read from is (pickled and earlier files convert)

    @property
    def sparsity(self) -> float:
        return self.mask.sparsity()

    @property
    def label(self) -> str:
        return self.path.stem if self.path is not None else self.metadata.get("task", "ticket")

    @property
    def rewind_weights(self) -> dict[str, torch.Tensor]:
        if self.weights is None:
            base = base_model_body(self.base_model, self.base_identity, f"ticket {self.path or ''}".strip())
            self.weights = apply_mask(base, self.mask)
        return self.weights


def apply_mask(body: dict[str, torch.Tensor], mask: Mask) -> dict[str, torch.Tensor]:
    body = dict(body)
    for name, keep in mask.layers.items():
        body[name] = body[name] * keep.to(body[name].dtype).cpu()
    return body


@functools.lru_cache(maxsize=1)
def _pretrained_body(resolved: str) -> dict[str, torch.Tensor]:
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging

    from lth.environment import hub_offline

    logging.set_verbosity_error()
    model = AutoModelForSequenceClassification.from_pretrained(resolved, local_files_only=hub_offline())
    body, _ = split_head(model.state_dict())
    return {k: v.detach().clone() for k, v in body.items()}


def base_model_body(base_model: str, recorded: dict | None, what: str) -> dict[str, torch.Tensor]:
    """The base model's pre-trained weights without the head, after checking it is the model `recorded` names."""
    if recorded:
        found = identify_model(base_model)
        if found.key != recorded.get("key"):
            raise UserError(
                f"{what} was made from the model {recorded.get('key')}; {base_model} is {found.key} "
                "(pass the ticket's base model as --model_name_or_path)"
            )
    try:
        return _pretrained_body(resolve_model_path(base_model))
    except (OSError, ValueError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise UserError(
            f"{what}: its base model {base_model} cannot be loaded ({first}); pass it as --model_name_or_path"
        ) from None


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
    return Ticket(base_model, mask.to("cpu"), apply_mask(body, mask), head, metadata, kind)


def weights_are_the_base_models(ticket: Ticket) -> bool:
    """Whether the ticket's weights are its base model's pre-trained weights under its mask (then the file need
    not hold them). False where the base model cannot be loaded here: the weights are kept, never lost."""
    if ticket.weights is None:
        return True
    try:
        base = base_model_body(ticket.base_model, None, "ticket")
    except UserError:
        return False
    weights = ticket.weights
    if set(base) != set(weights) or any(base[k].shape != weights[k].shape for k in base):
        return False
    expected = apply_mask(base, ticket.mask)
    return all(torch.equal(expected[k], weights[k].to(expected[k].dtype)) for k in expected)


def _stored_tensors(ticket: Ticket, with_weights: bool) -> dict[str, torch.Tensor]:
    tensors = {f"head/{k}": v for k, v in ticket.head.items()}
    if with_weights:
        for name, value in ticket.weights.items():
            if name in ticket.mask.layers:
                tensors[f"kept/{name}"] = value[ticket.mask[name]]
            else:
                tensors[f"weights/{name}"] = value
    return tensors


def ticket_header(ticket: Ticket, weights: str) -> dict:
    from lth.provenance import code_version, library_versions

    identity = ticket.base_identity or identify_model(ticket.base_model).to_json()
    meta = dict(ticket.metadata, sparsity=ticket.sparsity)
    provenance = dict(meta.pop("provenance", {}) or {})
    provenance.setdefault("written", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    provenance.setdefault("code", code_version())
    provenance.setdefault("libraries", library_versions())
    return {
        "format": TICKET_FORMAT,
        "kind": ticket.kind,
        "base_model": ticket.base_model,
        "base_model_identity": identity,
        "weights": weights,
        "weights_remaining_pct": {n: 100 * (1 - s) for n, s in ticket.mask.layer_sparsity().items()},
        "prunable_weights": ticket.mask.total(),
        "metadata": meta,
        "provenance": provenance,
    }


def save_ticket(path: str | os.PathLike, ticket: Ticket) -> Path:
    """Write the ticket as a safetensors file (see the module's docstring); the weights only where the base
    model cannot give them back."""
    path = Path(path)
    weights = FROM_BASE if weights_are_the_base_models(ticket) else STORED
    header = ticket_header(ticket, weights)
    save_mask(path, ticket.mask, {"ticket": header}, _stored_tensors(ticket, weights == STORED))
    ticket.path, ticket.base_identity = path, header["base_model_identity"]
    return path


# --- loading ------------------------------------------------------------------------------------
def load_ticket(path: str | os.PathLike, flag: str = "--checkpoint", model_name_or_path: str | None = None) -> Ticket:
    """A ticket file of this toolkit or of the earlier study; anything else is one line naming it.

    `model_name_or_path` (the caller's --model_name_or_path), when given, is the base model whatever the
    file records or its shapes suggest; the file's own value stays in metadata["base_model_in_file"].
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{flag} {path} does not exist")
    if is_safetensors(path):
        ticket = _from_safetensors(path, flag)
        return _with_caller_base(ticket, path, model_name_or_path)
    try:
        raw = load_checkpoint(path, flag, user_file=True)
    except CheckpointLoadError as error:
        if error.reason == "not-torch":
            raise UserError(f"{flag} {path} is not a ticket file (not a torch file; {EXPECTED_TICKET})") from None
        raise
    if not isinstance(raw, dict):
        raise UserError(f"{flag} {path} is not a ticket file (holds a {type(raw).__name__}; {EXPECTED_TICKET})")
    if raw.get("format") == PICKLED_TICKET_FORMAT:
        ticket = _from_pickled(raw, path, flag)
    elif "model_state_dict" in raw:
        ticket = _from_earlier(raw, path, flag)
    else:
        keys = ", ".join(sorted(map(str, raw))[:6]) or "none"
        raise UserError(f"{flag} {path} is not a ticket file (keys {keys}; {EXPECTED_TICKET})")
    return _with_caller_base(ticket, path, model_name_or_path)


def _with_caller_base(ticket: Ticket, path: Path, model_name_or_path: str | None) -> Ticket:
    ticket.metadata["task"] = task_of(path, ticket.metadata.get("task"))
    if model_name_or_path:
        ticket.metadata["base_model_in_file"] = ticket.base_model
        ticket.metadata["base_model_source"] = "given (--model_name_or_path)"
        ticket.base_model = model_name_or_path
    ticket.path = path
    return ticket


def _from_safetensors(path: Path, flag: str) -> Ticket:
    try:
        mask, header, tensors = load_mask_file(path)
    except UserError as error:
        raise UserError(f"{flag} {path} is not a ticket file ({error}; {EXPECTED_TICKET})") from None
    ticket = header.get("ticket")
    if not isinstance(ticket, dict) or ticket.get("format") != TICKET_FORMAT:
        found = ticket.get("format") if isinstance(ticket, dict) else "a mask without a ticket header"
        raise UserError(f"{flag} {path} is not a ticket file ({found}; {EXPECTED_TICKET})")
    head = {k.removeprefix("head/"): v for k, v in tensors.items() if k.startswith("head/")}
    weights = None
    if ticket.get("weights") == STORED:
        weights = {k.removeprefix("weights/"): v for k, v in tensors.items() if k.startswith("weights/")}
        for name, keep in mask.layers.items():
            kept = tensors.get(f"kept/{name}")
            if kept is None or kept.numel() != int(keep.sum()):
                raise UserError(f"{flag} {path}: the stored weights of {name} do not fit its mask")
            full = torch.zeros(keep.shape, dtype=kept.dtype)
            full[keep] = kept
            weights[name] = full
    metadata = dict(ticket.get("metadata") or {})
    metadata.setdefault("provenance", ticket.get("provenance"))
    return Ticket(
        ticket["base_model"],
        mask,
        weights,
        head,
        metadata,
        ticket.get("kind", "ticket"),
        base_identity=ticket.get("base_model_identity"),
    )


def _from_pickled(raw: dict, path: Path, flag: str) -> Ticket:
    if raw.get("version", 0) > PICKLED_TICKET_VERSION:
        raise UserError(
            f"{flag} {path} is ticket format version {raw['version']}; this toolkit reads up to "
            f"{PICKLED_TICKET_VERSION}"
        )
    mask = Mask.from_state_dict(raw["masks"])
    weights = raw["rewind_weights"]
    _check_mask_fits(mask, weights, path, flag)
    return Ticket(
        raw["base_model"],
        mask,
        weights,
        raw.get("head", {}),
        raw.get("metadata", {}),
        raw.get("kind", "ticket"),
        file_format=f"{PICKLED_TICKET_FORMAT} v{raw.get('version', 1)} (torch pickle)",
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
    """The earlier study's BertForCustomTask files: `bert.*` weights (maybe prefixed `model.`) and a head."""
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
    given, head_masks = {}, {}
    for key, value in ((raw.get("mask_dict") or {}) | hook_masks).items():
        name = _normalise_earlier_name(str(key))
        if name in names:
            given[name] = torch.as_tensor(value).bool()
        elif name.startswith(HEAD_PREFIX):
            head_masks[name] = torch.as_tensor(value).bool()
    layers = {n: given.get(n, body[n] != 0) for n in names}
    mask = Mask(layers)
    mask_source = (
        "mask_dict" if len(given) == len(names) else "zeros of the weights" if not given else "mask_dict + zeros"
    )
    _check_mask_fits(mask, body, path, flag)
    for n in names:
        body[n] = body[n] * mask[n].to(body[n].dtype)
    hidden, depth = _encoder_shape(body)
    base_model = EARLIER_BASES_BY_SHAPE.get((hidden, depth), f"unknown-bert(hidden={hidden},layers={depth})")
    reached = raw.get("sparsity")
    metadata = {
        "task": task_of(path, raw.get("task")),
        "target_sparsity": None,  # the earlier files record the sparsity reached, not a target
        "sparsity_reached": _plain(reached),
        "seed": _plain(raw.get("seed")),
        "history": _plain(raw.get("history")),
        "rewind_to": "trained (earlier-format file: weights saved after training)",
        "mask_source": mask_source,
        "base_model_source": f"inferred from the weight shapes (hidden {hidden}, {depth} layers)",
        "hidden_size": hidden,
        "num_layers": depth,
        "earlier_head_keys": sorted(old_head),  # a 2-layer head that HF's classifier cannot take
        "earlier_head": _describe_earlier_head(old_head, head_masks),
    }
    return Ticket(base_model, mask, body, {}, metadata, "earlier-format", file_format="earlier study (torch pickle)")


def _plain(value):
    """NumPy scalars and one-element tensors (an earlier history's accuracies) as Python numbers, so the
    metadata saves and prints like the toolkit's own."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if type(value).__module__ == "numpy" and hasattr(value, "item"):
        return value.item()
    return value


_LAYER_INDEX = re.compile(r"encoder\.layer\.(\d+)\.")


def _encoder_shape(body: dict[str, torch.Tensor]) -> tuple[int | None, int]:
    """(hidden size, number of encoder layers) of a BERT state dict."""
    depth = 1 + max((int(m.group(1)) for k in body if (m := _LAYER_INDEX.search(k))), default=-1)
    hidden = next(
        (int(v.shape[0]) for k, v in body.items() if k.endswith("attention.self.query.weight") and v.dim() == 2),
        None,
    )
    return hidden, depth


def _describe_earlier_head(head: dict[str, torch.Tensor], masks: dict[str, torch.Tensor]) -> list[dict]:
    """The earlier head as a list of layers in order: Linear layers with their shape and sparsity (fraction
    of exact zeros; of pruned entries where the file holds its mask), and the ReLU and Dropout between them
    (the earlier model's classifier = Sequential(Linear, ReLU, Dropout, Linear) on the CLS token)."""
    modules: dict[int, dict] = {}
    for key, value in head.items():
        match = re.fullmatch(rf"{re.escape(HEAD_PREFIX)}(\d+)\.(weight|bias)", key)
        if match is None:
            continue
        entry = modules.setdefault(int(match.group(1)), {"layer": f"{HEAD_PREFIX}{match.group(1)}"})
        if match.group(2) == "bias":
            entry["bias"] = True
            continue
        entry["type"] = "Linear" if value.dim() == 2 else f"{value.dim()}-d weight"
        entry["shape"] = list(value.shape)
        if value.dim() == 2:
            entry["in_features"], entry["out_features"] = int(value.shape[1]), int(value.shape[0])
        entry["sparsity"] = float((value == 0).sum()) / max(value.numel(), 1)
        keep = masks.get(key)
        if keep is not None and tuple(keep.shape) == tuple(value.shape):
            entry["mask_sparsity"] = float((~keep).sum()) / max(keep.numel(), 1)
    indices = sorted(i for i, e in modules.items() if "shape" in e)
    layers: list[dict] = []
    for position, index in enumerate(indices):
        entry = modules[index]
        entry.setdefault("bias", False)
        layers.append(entry)
        following = indices[position + 1] if position + 1 < len(indices) else None
        if following == index + 3:  # the earlier study's ReLU and Dropout sit between its two Linear layers
            layers += [
                {"layer": f"{HEAD_PREFIX}{index + 1}", "type": "ReLU"},
                {"layer": f"{HEAD_PREFIX}{index + 2}", "type": "Dropout"},
            ]
    return layers


def _head_architecture(layers: list[dict]) -> str:
    return "-".join(layer["type"] for layer in layers)


def _head_shapes(layers: list[dict]) -> str:
    return ", ".join(
        f"{layer['layer']} {layer['in_features']}->{layer['out_features']}"
        for layer in layers
        if "in_features" in layer
    )


def head_replacement_note(ticket: Ticket) -> str | None:
    """One line telling that an earlier-format ticket's own head is not used (None for toolkit tickets, and
    for earlier files without a head)."""
    layers = ticket.metadata.get("earlier_head") if ticket.kind == "earlier-format" else None
    if not layers:
        return None
    where = ticket.path or "the earlier-format ticket"
    task = ticket.metadata.get("task") or "its source task"
    return (
        f"note: {where} carries the earlier study's CLS-token head ({_head_architecture(layers)}, "
        f"{_head_shapes(layers)}); few-shot training uses a fresh Hugging Face head that reads the pooler "
        f"instead (the earlier head was trained for {task} on the CLS token and its pooler was never used, "
        "so the head cannot be reused for another target); the pooler keeps its weights from the file "
        "(the pre-trained ones, pruned, never fine-tuned)"
    )


def _task_from_name(filename: str) -> str | None:
    match = re.search(r"(sst2|qqp)", filename)
    return match.group(1) if match else None


def task_of(path: Path, recorded: str | None = None) -> str | None:
    """A ticket's task: what its file records, else what its `<stem>_summary.json` says (an ensemble's source
    tasks), else what its name suggests; None when nothing does."""
    if recorded:
        return recorded
    summary = path.with_name(path.stem + "_summary.json")
    try:
        data = json.loads(summary.read_text()) if summary.is_file() else {}
    except (OSError, ValueError):
        data = {}
    if isinstance(data, dict):
        if data.get("task"):
            return str(data["task"])
        if data.get("source_tasks") and all(data["source_tasks"]):
            return "+".join(map(str, data["source_tasks"]))
    return _task_from_name(path.name)


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


NOT_RECORDED = "not recorded"


def _text(value, missing: str = NOT_RECORDED) -> str:
    """A metadata value as printed: never `None`."""
    return missing if value is None or value == "" else str(value)


def _percent(value) -> str:
    return f"{100 * value:.2f}%" if isinstance(value, (int, float)) else _text(value)


def stored_sparsity_note(ticket: Ticket) -> str | None:
    """Why an earlier file's recorded sparsity differs from the one measured over the prunable weights (None when
    they agree). The earlier code counted its head's weights too; if that accounts for the difference, say so."""
    reached = ticket.metadata.get("sparsity_reached")
    if not isinstance(reached, (int, float)) or abs(reached - ticket.sparsity) < 5e-5:
        return None
    total, pruned = ticket.mask.total(), ticket.mask.total() - ticket.mask.kept()
    head = [layer for layer in ticket.metadata.get("earlier_head") or [] if "shape" in layer]
    head_weights = sum(int(torch.Size(layer["shape"]).numel()) for layer in head)
    head_pruned = sum(
        layer.get("mask_sparsity", layer["sparsity"]) * torch.Size(layer["shape"]).numel() for layer in head
    )
    if head_weights and abs((pruned + head_pruned) / (total + head_weights) - reached) < 5e-5:
        return (
            f"the file's {_percent(reached)} counts its head's {head_weights:,} weights ({round(head_pruned):,} of "
            f"them pruned) beside the {total:,} prunable ones; over the prunable weights alone (the toolkit's "
            f"measure, as in Chen et al.) it is {_percent(ticket.sparsity)}"
        )
    return (
        f"the file records {_percent(reached)}, {100 * (reached - ticket.sparsity):+.2f} points from the "
        f"{_percent(ticket.sparsity)} measured over the {total:,} prunable weights; the earlier code counted "
        "another set of weights (its head does not account for it)"
    )


def describe_ticket(path: str | os.PathLike, model_name_or_path: str | None = None) -> str:
    """A readable summary of a ticket file: what it is, where it came from, and its per-layer sparsity."""
    ticket = load_ticket(path, flag="ticket", model_name_or_path=model_name_or_path)
    meta = ticket.metadata
    earlier = ticket.kind == "earlier-format"
    base = ticket.base_model
    if meta.get("base_model_source"):
        base += f" ({meta['base_model_source']})"
    identity = ticket.base_identity
    measured = f"{100 * ticket.sparsity:.2f}% of {ticket.mask.total():,} prunable weights"
    weights = (
        "read from the base model (not stored: the pre-trained weights under the mask)"
        if ticket.weights is None
        else "stored in the file"
    )
    lines = [
        f"ticket file      {ticket.path} ({ticket.file_format})",
        f"kind             {ticket.kind}",
        f"base model       {base}",
    ]
    if identity:
        lines.append(f"base identity    {_identity_text(identity)}")
    lines += [
        f"task             {_text(meta.get('task'), 'unknown (not in the file, its _summary.json or its name)')}",
        f"seed             {_text(meta.get('seed'))}",
        f"rewound to       {_text(meta.get('rewind_to'))}",
        f"weights          {weights}",
    ]
    if earlier:
        lines += [
            f"sparsity         {measured} (measured from the mask, from {_text(meta.get('mask_source'))})",
            f"sparsity reached {_percent(meta.get('sparsity_reached'))} (as the earlier file records it)",
        ]
        note = stored_sparsity_note(ticket)
        if note:
            lines.append(f"                 {note}")
    elif ticket.kind == "ensemble":
        lines.append(f"sparsity         {measured} (the {_text(meta.get('combine'), 'combination')} of two tickets)")
    else:
        lines.append(f"sparsity         {measured} (target {_percent(meta.get('target_sparsity'))})")
    accuracy = meta.get("accuracy") or {}
    if accuracy:
        metrics = ", ".join(f"{k} {v:.2f}" for k, v in accuracy.items() if k != "round" and isinstance(v, float))
        lines.append(
            f"accuracy         {metrics} (dev, round {_text(accuracy.get('round'))}: the round this mask trained)"
        )
    head_layers = meta.get("earlier_head") if earlier else None
    if head_layers:
        lines.append(
            f"head             the earlier study's CLS-token head, {_head_architecture(head_layers)} "
            "(not used: a fresh head is drawn)"
        )
        for layer in head_layers:
            if "shape" not in layer:
                lines.append(f"                 {layer['layer']:<14} {layer['type']}")
                continue
            text = (
                f"                 {layer['layer']:<14} {layer['type']} {layer.get('in_features')}->"
                f"{layer.get('out_features')} weight {tuple(layer['shape'])}"
                f"{' + bias' if layer.get('bias') else ''}, sparsity {100 * layer['sparsity']:.2f}% (zeros)"
            )
            if "mask_sparsity" in layer:
                text += f", {100 * layer['mask_sparsity']:.2f}% (mask)"
            lines.append(text)
    else:
        lines.append(f"head             {', '.join(ticket.head) or 'none (a fresh head is drawn when it is used)'}")
    if ticket.kind == "ensemble":
        lines.append(f"combined         {_text(meta.get('combine'))} of {', '.join(map(str, meta.get('sources', [])))}")
        lines.append(f"Jaccard overlap  {_text(meta.get('jaccard'))}")
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
    provenance = meta.get("provenance") or {}
    if provenance.get("converted_from"):
        source = provenance["converted_from"]
        lines.append(
            f"converted from   {source.get('path')} ({source.get('format')}, {source.get('bytes', 0):,} bytes)"
        )
    lines.append(ticket.mask.summary())
    return "\n".join(lines)


def _identity_text(identity: dict) -> str:
    if identity.get("source") == "hub":
        return f"{identity.get('key')} (hub name, revision {_text(identity.get('revision'), 'not known here')})"
    return (
        f"{identity.get('key')} (config sha256 {str(identity.get('config_sha256'))[:12]}, "
        f"weights sha256 {str(identity.get('weights_sha256'))[:12]})"
    )


def convert_ticket(
    source: str | os.PathLike, output: str | os.PathLike | None = None, model_name_or_path: str | None = None
) -> Path:
    """Write any readable ticket (this toolkit's pickled .pt, the earlier study's file) in the current format,
    beside it as <stem>.safetensors unless `output` is given; an existing output is never replaced."""
    source = Path(source)
    ticket = load_ticket(source, "ticket", model_name_or_path=model_name_or_path)
    if ticket.file_format == TICKET_FORMAT:
        raise UserError(f"ticket {source} is already in the current format ({TICKET_FORMAT})")
    out = Path(output) if output else source.with_suffix(TICKET_SUFFIX)
    if out.exists():
        raise UserError(f"--output {out} exists; pass another --output or move that file")
    if not out.parent.is_dir():
        raise UserError(f"--output {out}: the folder {out.parent} does not exist")
    provenance = dict(ticket.metadata.get("provenance") or {})
    provenance["converted_from"] = {
        "path": str(source),
        "format": ticket.file_format,
        "bytes": source.stat().st_size,
        "sha256": _sha256(source),
    }
    ticket.metadata["provenance"] = provenance
    if ticket.base_identity is None and ticket.metadata.get("base_model_source", "").startswith("inferred"):
        # An inferred base (from the weight shapes) is a guess: record it as such, not as a digest.
        ticket.base_identity = {"key": ticket.base_model, "source": "inferred from the weight shapes"}
    return save_ticket(out, ticket)


def _sha256(path: Path) -> str:
    import hashlib

    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
