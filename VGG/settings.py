"""VGG-19's settings, declared once: flags, settings.json, run names and identity columns.

`TrainingSettings` decide what a round's training computes; `train.py` (the dense round) and `main.py`
(the IMP rounds) share them, so a dense round trained by one is reused by the other only when they agree.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from lth.arguments import fraction, non_negative_float, non_negative_int, positive_float, positive_int
from lth.errors import UserError
from lth.settings import (
    INPUT,
    NO_CHANGE,
    OPERATIONAL,
    Alias,
    ImageFamilySettings,
    ImageRunSettings,
    batch_size_setting,
    checkpoint_every_setting,
    data_dir_setting,
    eval_every_setting,
    lr_setting,
    output_dir_setting,
    prune_rate_setting,
    readable_name,
    rewind_iteration_setting,
    rounds_setting,
    run_type_setting,
    seed_setting,
    setting,
    train_iterations_setting,
)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VALIDATION_SIZE = 5000
TRAIN_SIZE = 50_000 - VALIDATION_SIZE
PRUNE_RATE = 0.2  # of the remaining conv weights per round, ranked together across layers (pruning.py)


def steps_per_epoch(batch_size: int, train_size: int = TRAIN_SIZE) -> int:
    """Full batches per epoch (ShuffledBatches drops the last partial one)."""
    return max(1, train_size // batch_size)


@dataclass
class TrainingSettings(ImageRunSettings):
    """SGD with momentum 0.9, weight decay 1e-4, batch 64, lr 0.1 dropped 10x at 50% and 75% of training."""

    NAME_FIELDS = ("width", "seed")

    seed: int = seed_setting(42)
    width: float = setting(1.0, "channel multiplier (1: VGG-19; 0.125 for CPU runs and tests)", parse=positive_float)
    train_iterations: int | None = train_iterations_setting(None, "training iterations of every round")
    epochs: int | None = setting(
        160,
        "training length of every round in epochs of 45,000 images (unless --train_iterations)",
        parse=positive_int,
        kind=INPUT,
    )
    batch_size: int = batch_size_setting(64, aliases=[Alias("--bs")])
    lr: float = lr_setting(0.1, "peak SGD learning rate", aliases=[Alias("--learning-rate")])
    momentum: float = setting(0.9, "SGD momentum, in [0, 1)", parse=fraction)
    weight_decay: float = setting(1e-4, "SGD weight decay, >= 0", parse=non_negative_float, aliases=[Alias("--wd")])
    milestones: tuple[int, ...] | None = setting(
        None,
        "iterations at which the lr drops by --gamma (default: 50% and 75% of training)",
        parse=non_negative_int,
        nargs="+",
    )
    schedule: tuple[int, ...] | None = setting(
        None,
        "epochs at which the lr drops by --gamma (instead of --milestones)",
        parse=positive_int,
        nargs="+",
        kind=INPUT,
    )
    gamma: float = setting(0.1, "lr factor at each milestone", parse=positive_float)
    warmup_iterations: int = setting(0, "linear lr warmup over the first N iterations", parse=non_negative_int)
    augment: bool = setting(
        True,
        "random crop + flip of training batches",
        aliases=[Alias("--no_augment", "train without random crop + flip", const=False)],
    )
    eval_every: int = eval_every_setting(2000)
    checkpoint_every: int = checkpoint_every_setting(2000)
    data_dir: str | None = data_dir_setting("cifar-10-batches-py/")
    output_dir: str = output_dir_setting(str(RESULTS_DIR))
    workers: int | None = setting(
        None, "accepted for compatibility; data stay on the device, no loader workers", parse=int, kind=INPUT
    )

    def resolve(self) -> None:
        # The derived lengths first: the shared checks (super, last) read train_iterations.
        per_epoch = steps_per_epoch(self.batch_size)
        if self.train_iterations is None:
            self.train_iterations = self.epochs * per_epoch
        total = self.train_iterations
        if self.schedule is not None:
            if self.milestones is not None:
                raise UserError("--schedule (epochs) and --milestones (iterations) say the same thing; give one")
            self.milestones = tuple(epoch * per_epoch for epoch in self.schedule)
        if self.milestones is None:
            self.milestones = (total // 2, (3 * total) // 4)
        self.epochs = self.schedule = self.workers = None  # resolved into train_iterations and milestones
        if self.warmup_iterations >= total:
            raise UserError(
                f"--warmup_iterations {self.warmup_iterations} must be below the {total} training iterations"
            )
        if not self.width * 64 >= 0.5:
            raise UserError(f"--width {self.width} leaves VGG's first layer without channels; use at least 1/128")
        super().resolve()

    def training(self) -> DenseSettings:
        """The dense round these settings train (what train.py would run)."""
        names = {f.name for f in dataclasses.fields(TrainingSettings) if f.metadata["kind"] != INPUT}
        return DenseSettings(**{name: getattr(self, name) for name in names}, save_iterations=())


@dataclass
class DenseSettings(TrainingSettings):
    PROG = "VGG/train.py"
    DESCRIPTION = "Pre-train the dense VGG-19 (round 0) and keep its weights at the iterations main.py rewinds to."

    save_iterations: tuple[int, ...] = setting(
        (500, 2000),
        "iterations whose weights are kept for rewinding (the initialisation is always kept)",
        parse=non_negative_int,
        nargs="+",
        kind=OPERATIONAL,
    )

    def resolve(self) -> None:
        super().resolve()
        self.save_iterations = tuple(sorted(set(self.save_iterations)))
        too_late = [i for i in self.save_iterations if i >= self.train_iterations]
        if too_late:
            raise UserError(
                f"--save_iterations {too_late[0]} is not below the {self.train_iterations} training iterations"
            )

    def name_prefix(self) -> str:
        """vgg19-w1_dense_seed0: the dense round main.py looks for."""
        return readable_name([("vgg19-w", self.width), ("", "dense"), ("seed", self.seed)])


def _pruning_alias(kind: str):
    return "random_prune" if kind == "random" else NO_CHANGE


@dataclass
class VGGSettings(TrainingSettings, ImageFamilySettings):
    PROG = "VGG/main.py"
    DESCRIPTION = (
        "VGG-19 on CIFAR-10: global IMP with rewinding to iteration 0 or k of the dense run, and its controls."
    )
    NAME_FIELDS = (
        "width",
        "run_type",
        "control_mask",
        "rewind_iteration",
        "seed",
        "pai_method",
        "pai_round",
        "pai_scope",
        "pai_ablation",
    )

    run_type: str = run_type_setting(
        aliases=[
            Alias(
                "--pruning",
                "global: magnitude pruning (IMP); random: random-pruning control",
                convert=_pruning_alias,
                choices=("global", "random"),
            ),
            Alias(
                "--prunning", "misspelt earlier name of --pruning", convert=_pruning_alias, choices=("global", "random")
            ),
            Alias("--random_reinit", "control: the magnitude masks on fresh random weights", const="random_reinit"),
        ]
    )
    rewind_iteration: int = rewind_iteration_setting(aliases=[Alias("--iterations")])
    rounds: int = rounds_setting(
        19,
        aliases=[
            Alias(
                "--prune_iterations",
                "rounds INCLUDING the dense round 0 (as the earlier study: 20)",
                convert=lambda n: n - 1,
                parse=positive_int,
            )
        ],
    )
    global_prune_rate: float = prune_rate_setting(
        PRUNE_RATE, "conv weights, ranked together across layers", aliases=[Alias("--prune_rate")]
    )
    dense_dir: str = setting(
        "auto",
        "finished train.py run to use as round 0: auto (the matching one under --output_dir, if any), none, or a path",
        kind=OPERATIONAL,
    )
    model_name: str | None = setting(
        None, "accepted for compatibility (the run directory is named from the settings)", kind=INPUT
    )

    def resolve(self) -> None:
        super().resolve()
        self.model_name = None

    def name_prefix(self) -> str:
        """vgg19-w1_winning_ticket_rewind2000_seed0"""
        return readable_name(
            [
                ("vgg19-w", self.width),
                ("", self.pai_label() or self.run_label()),
                ("rewind", self.rewind_iteration),
                ("seed", self.seed),
            ]
        )
