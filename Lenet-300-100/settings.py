"""LeNet-300-100's settings, declared once: flags, settings.json, run name and identity columns."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lth.settings import (
    OPERATIONAL,
    Alias,
    ImageFamilySettings,
    checkpoint_every_setting,
    data_dir_setting,
    imp_mode_setting,
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
FC_RATE = 0.2
OUTPUT_RATE = 0.1  # half the fc rate, as in Frankle & Carbin
FIRST_SEED = 42  # the earlier study's trials: seed = 42 + trial


@dataclass
class LenetSettings(ImageFamilySettings):
    PROG = "Lenet-300-100/main.py"
    DESCRIPTION = "LeNet-300-100 on MNIST: iterative or one-shot IMP, winning ticket vs controls, one run per call."
    NAME_FIELDS = (
        "imp_mode",
        "run_type",
        "control_mask",
        "seed",
        "pai_method",
        "pai_round",
        "pai_scope",
        "pai_ablation",
    )

    imp_mode: str = imp_mode_setting(aliases=[Alias("--mode")])
    run_type: str = run_type_setting(
        aliases=[
            Alias("--random_reinit", "control: same masks, fresh random weights each round", const="random_reinit"),
            Alias("--random_prune", "control: random masks with the same per-layer sparsity", const="random_prune"),
        ]
    )
    seed: int = seed_setting(
        FIRST_SEED,
        aliases=[Alias("--trial", f"trial index t: seed {FIRST_SEED} + t", convert=lambda t: FIRST_SEED + t)],
    )
    train_iterations: int = train_iterations_setting(50_000, aliases=[Alias("--iterations")])
    rounds: int = rounds_setting(20)
    fc_prune_rate: float = prune_rate_setting(FC_RATE, "hidden-layer weights", aliases=[Alias("--fc_rate")])
    output_prune_rate: float = prune_rate_setting(OUTPUT_RATE, "output-layer weights", aliases=[Alias("--output_rate")])
    lr: float = lr_setting(1.2e-3, "Adam learning rate")
    checkpoint_every: int = checkpoint_every_setting(5000)
    data_dir: str | None = data_dir_setting("MNIST/")
    output_dir: str = output_dir_setting(str(HERE / "results"))
    fast_mode: bool = setting(
        False, "accepted for compatibility (cuDNN autotuning is on whenever CUDA is used)", kind=OPERATIONAL
    )

    def name_prefix(self) -> str:
        """lenet300-100-iterative_winning_ticket_trial0, as the earlier study named its trials."""
        trial = ("trial", self.seed - FIRST_SEED) if self.seed >= FIRST_SEED else ("seed", self.seed)
        return readable_name([("lenet300-100-", self.imp_mode), ("", self.pai_label() or self.run_label()), trial])

    @property
    def trial(self) -> int:
        return self.seed - FIRST_SEED
