"""The Conv nets' settings, declared once: flags, settings.json, run name and identity columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lth.arguments import fraction, positive_int
from lth.errors import UserError
from lth.settings import (
    INPUT,
    OPERATIONAL,
    Alias,
    ImageFamilySettings,
    checkpoint_every_setting,
    data_dir_setting,
    eval_every_setting,
    lr_setting,
    output_dir_setting,
    prune_rate_setting,
    readable_name,
    rounds_setting,
    run_type_setting,
    seed_setting,
    setting,
    train_iterations_setting,
)

HERE = Path(__file__).resolve().parent
ARCHS = {"Conv-2": 1, "Conv-4": 2, "Conv-6": 3}  # conv pairs of each architecture (models.py)
VALIDATION_SIZE = 5000
# Frankle & Carbin's rates: each round a conv layer loses 10% (Conv-2, Conv-4) or 15% (Conv-6) of its remaining
# weights, a hidden fc layer 20%, the output layer half the fc rate.
CONV_RATE = {"Conv-2": 0.10, "Conv-4": 0.10, "Conv-6": 0.15}
FC_RATE = 0.20


def default_output_rate(fc_rate: float) -> float:
    return fc_rate / 2


TRAINING_IMAGES = 50_000 - VALIDATION_SIZE
# Frankle & Carbin's per-arch schedule (the earlier configs: 24/30/36 epochs of 50,000 images at batch 60).
ARCH_LR = {"Conv-2": 2e-4, "Conv-4": 3e-4, "Conv-6": 3e-4}
ARCH_ITERATIONS = {"Conv-2": 20_000, "Conv-4": 25_000, "Conv-6": 30_000}


def _per_arch(values: dict) -> str:
    return ", ".join(f"{arch} {value:g}" for arch, value in values.items())


@dataclass
class ConvSettings(ImageFamilySettings):
    PROG = "CNN/main.py"
    DESCRIPTION = "Conv-2/4/6 on CIFAR-10: layer-wise IMP, winning ticket vs random re-init (or random pruning)."
    NAME_FIELDS = (
        "arch",
        "run_type",
        "control_mask",
        "dropout_rate",
        "lr",
        "train_iterations",
        "seed",
        "pai_method",
        "pai_round",
        "pai_scope",
        "pai_ablation",
    )

    arch: str = setting("Conv-6", "architecture", choices=list(ARCHS))
    run_type: str = run_type_setting(
        aliases=[Alias("--random_prune", "same as --run_type random_prune", const="random_prune")]
    )
    seed: int = seed_setting(1)
    train_iterations: int | None = train_iterations_setting(
        None, f"training iterations per round (default per arch: {_per_arch(ARCH_ITERATIONS)})", [Alias("--iterations")]
    )
    epochs: int | None = setting(
        None,
        f"training per round in epochs of floor({TRAINING_IMAGES}/batch_size) iterations (instead of --train_iterations)",
        parse=positive_int,
        kind=INPUT,
    )
    rounds: int = rounds_setting(20, aliases=[Alias("--prune_iterations")])
    conv_prune_rate: float | None = prune_rate_setting(None, "conv weights (default 0.1, Conv-6 0.15)")
    fc_prune_rate: float = prune_rate_setting(FC_RATE, "hidden fc weights")
    output_prune_rate: float | None = prune_rate_setting(None, "output-layer weights (default: half the fc rate)")
    dropout_rate: float = setting(0.0, "dropout after each hidden fc layer", parse=fraction)
    augment: bool = setting(False, "random crop (pad 4) + horizontal flip on the device (off in the paper)")
    lr: float | None = lr_setting(None, f"Adam learning rate (default per arch: {_per_arch(ARCH_LR)})")
    eval_every: int = eval_every_setting(250)
    eval_batch_size: int | None = setting(
        None,
        "images per evaluation forward pass (default: 1000 on CUDA, 100 on CPU)",
        parse=positive_int,
        kind=OPERATIONAL,
    )
    checkpoint_every: int = checkpoint_every_setting(2500)
    data_dir: str | None = data_dir_setting("cifar-10-batches-py/")
    output_dir: str = output_dir_setting(str(HERE / "results"), "where run directories (and figures) are written")
    plot: bool = setting(
        False,
        "only draw the figures of every run under --output_dir",
        kind=OPERATIONAL,
        aliases=[
            Alias("--mode", "train one run, or plot", convert=lambda mode: mode == "plot", choices=("train", "plot"))
        ],
    )

    def resolve(self) -> None:
        # The per-arch defaults first: the shared checks (super) read train_iterations.
        if self.lr is None:
            self.lr = ARCH_LR[self.arch]
        if self.train_iterations is None:
            steps_per_epoch = TRAINING_IMAGES // self.batch_size
            if steps_per_epoch == 0:
                raise UserError(f"--batch_size {self.batch_size} exceeds the {TRAINING_IMAGES} training images")
            self.train_iterations = self.epochs * steps_per_epoch if self.epochs else ARCH_ITERATIONS[self.arch]
        self.epochs = None  # resolved into train_iterations; only that is a setting of the run
        if self.conv_prune_rate is None:
            self.conv_prune_rate = CONV_RATE[self.arch]
        if self.output_prune_rate is None:
            self.output_prune_rate = default_output_rate(self.fc_prune_rate)
        super().resolve()

    def name_prefix(self) -> str:
        """e.g. Conv-2_winning_ticket_d0p5_lr0p0003_it20000_seed1"""
        return readable_name(
            [
                ("", self.arch),
                ("", self.pai_label() or self.run_label()),
                ("d", self.dropout_rate),
                ("lr", self.lr),
                ("it", self.train_iterations),
                ("seed", self.seed),
            ]
        )
