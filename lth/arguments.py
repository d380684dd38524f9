"""Command-line parsing shared by every entry script: one-line errors and checked value types."""

from __future__ import annotations

import argparse
import sys

from lth.errors import EXIT_USER_ERROR, UserError


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a bad flag raises `UserError` (one line naming it, exit 2 under `user_facing`),
    so a sweep can also check every config line before it starts anything."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message} (see --help)")


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected an integer >= 0, got {value}")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def fraction(text: str) -> float:
    """A rate or sparsity in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1), got {value}")
    return value


def resolve_device(name: str) -> str:
    import torch  # here: settings parse before the heavy imports (lth.families.refuse_if_running)

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        print(f"error: --device {name}: CUDA is not available on this machine", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    if name != "cpu" and not name.startswith("cuda"):
        print(f"error: --device {name}: expected auto, cpu, cuda or cuda:N", file=sys.stderr)
        raise SystemExit(EXIT_USER_ERROR)
    return name


def non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}") from None
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value}")
    return value
