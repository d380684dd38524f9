"""IMP with the controls on a model of your own: a small CNN (not one of the four families) on scikit-learn's
bundled 8x8 digits, winning ticket vs random re-initialisation, with the toolkit's run directories, CSVs,
resume and figure. Offline, about 15 seconds on an idle CPU core.

    python examples/own_model.py [--output_dir runs/own-model] [--rounds 4] [--train_iterations 300]
"""

from dataclasses import dataclass

import torch
from torch import nn

import lth


class DigitsCNN(nn.Module):
    def __init__(self, channels: int = 16):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(channels * 16, 64), nn.ReLU(), nn.Linear(64, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x.view(-1, 1, 8, 8)))


@dataclass
class OwnSettings(lth.StudySettings):
    """The generic settings (run type, seed, rounds, iterations, ...) plus this study's own."""

    name: str = lth.setting("digits-cnn", "label of the experiment")
    channels: int = lth.setting(16, "conv channels", parse=int)
    lr: float = lth.setting(2e-3, "Adam learning rate", parse=float)
    rounds: int = lth.setting(4, "pruning rounds after the dense round 0", parse=int)
    train_iterations: int = lth.setting(300, "training iterations per round", parse=int)
    eval_every: int = lth.setting(50, "evaluate every N iterations", parse=int)
    output_dir: str = lth.setting("runs/own-model", "where run directories go", kind="operational")


def main(argv=None) -> None:
    base = OwnSettings.from_argv(argv)
    for run_type in ("winning_ticket", "random_reinit"):
        settings = OwnSettings(**{**base.to_json(), "run_type": run_type})
        data = lth.load_digits(seed=settings.seed)
        lth.run_lottery(
            settings,
            model_factory=lambda: DigitsCNN(base.channels),
            policy=lth.LayerwisePruning(lth.conv_fc_rates(DigitsCNN(base.channels), conv_rate=0.1, fc_rate=0.2)),
            make_optimizer=lambda model: torch.optim.Adam(model.parameters(), lr=base.lr),
            batches=lth.ShuffledBatches(data.train_x, data.train_y, batch_size=60, seed=settings.seed),
            evaluate=lth.image_evaluator(data.val_x, data.val_y, data.test_x, data.test_y),
        )
    figure = lth.plot_early_stop_panels(
        lth.load_rounds(base.output_dir), f"{base.output_dir}/digits_cnn_imp.png", "IMP on 8x8 digits, small CNN"
    )
    print(f"figure: {figure}")


if __name__ == "__main__":
    main()
