"""The quick offline demo: IMP on a small MLP for scikit-learn's 8x8 digits, in about a minute.

Runs iterative IMP twice, winning ticket and random re-initialisation, with the same machinery as
the real experiments (layer-wise pruning, hidden layers 20% and output 10% per round, early stop
on a validation split), writes the CSVs and draws the Figure-4-style comparison.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from lth.api import StudySettings, run_lottery
from lth.batches import ShuffledBatches
from lth.datasets import load_digits
from lth.plotting import load_rounds, plot_early_stop_panels
from lth.pruning import LayerwisePruning, conv_fc_rates
from lth.training import image_evaluator


class DigitsMLP(nn.Module):
    """64-100-50-10: LeNet-300-100's shape scaled to 8x8 inputs."""

    def __init__(self):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Flatten(), nn.Linear(64, 100), nn.ReLU(), nn.Linear(100, 50), nn.ReLU(), nn.Linear(50, 10)
        )
        for module in self.layers:
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


def run_demo(
    output_dir: str | Path = "lth-demo", rounds: int = 10, iterations: int = 500, seeds: tuple[int, ...] = (0, 1)
) -> Path:
    output_dir = Path(output_dir)
    if "OMP_NUM_THREADS" not in os.environ:
        # A 64-100-50-10 MLP gains nothing from a second thread, and on a busy machine two threads spin against
        # the other processes (measured: 8 s with one thread, 2 min with two, while two other jobs ran).
        torch.set_num_threads(1)
    for seed in seeds:
        data = load_digits(seed=seed)
        for run_type in ("winning_ticket", "random_reinit"):
            settings = StudySettings(
                name="digits-mlp",
                run_type=run_type,
                seed=seed,
                rounds=rounds,
                train_iterations=iterations,
                eval_every=25,
                output_dir=str(output_dir),
                quiet=True,
            )
            print(f"== {settings.run_name()}")
            run_lottery(
                settings,
                model_factory=DigitsMLP,
                policy=LayerwisePruning(conv_fc_rates(DigitsMLP(), conv_rate=0.0, fc_rate=0.2)),
                make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=1.2e-3),
                batches=ShuffledBatches(data.train_x, data.train_y, batch_size=60, seed=seed),
                evaluate=image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y),
            )
    figure = plot_early_stop_panels(
        load_rounds(output_dir), output_dir / "digits_imp.png", "IMP on 8x8 digits (MLP 64-100-50-10)"
    )
    print(f"CSVs: {output_dir}/*/rounds.csv and curve.csv")
    print(f"figure: {figure}")
    return figure
