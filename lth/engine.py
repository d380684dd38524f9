"""The seam beneath the IMP driver (lth.imp): a round engine trains one round of R runs at once.

The driver decides everything a round's result depends on (its mask, the weights it starts from, the seed of its
dropout draws, whether it resumes) and everything it costs and writes (wall time, energy, progress, rows); the
engine only turns those starts into trained weights and curves. Two engines:

- `lth.training.OneNetwork`: one run, one network, trained by `train_round` (R = 1);
- `lth.batched.StackedNetworks`: R runs of one architecture, their parameters stacked so one step trains them all.

A run's progress inside a round is the engine's (its optimiser and RNG state); a run is continued only by the
engine that wrote it (`batched`), since the two keep their random draws in different places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from lth.masks import Mask
    from lth.training import RoundSchedule


@dataclass
class RoundStart:
    """Where one replicate's round starts."""

    mask: Mask  # the round's mask (on the CPU)
    weights: dict | None  # the weights it trains from; None where it resumes
    resume: dict | None  # what the engine handed to `RoundHooks.checkpoint` for it (`loop` and its own keys)
    dropout_seed: int  # seeds its dropout draws where the round starts afresh


@dataclass
class RoundHooks:
    """What the driver does while an engine trains (every list and index is over the round's replicates)."""

    schedule: RoundSchedule
    checkpoint: Callable[[list[dict]], None]  # each replicate's engine state: {"loop": ..., **engine's own keys}
    capture: Callable[[int, int, Callable[[], dict]], None]  # (replicate, iteration, its weights): rewind points
    evaluated: Callable[[int, dict], None]  # (replicate, curve point)
    description: str = "training"
    progress: bool = True


@dataclass
class TrainedRound:
    curve: list[dict]  # one row per evaluation
    weights: dict  # the trained weights, on the CPU


class RoundEngine(Protocol):
    """Trains one round of the replicates the driver hands it (all at the same round)."""

    batched: bool  # its progress is marked batched: continued only by a batched job

    def prepare(self, replicates: list[Any]) -> None:
        """Refuse runs the engine cannot train together (before anything is written) and build its networks."""

    def train(
        self, round_index: int, replicates: list[Any], starts: list[RoundStart], hooks: RoundHooks
    ) -> list[TrainedRound]:
        """Train the round from `starts`; one TrainedRound per replicate, in order."""
