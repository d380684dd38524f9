"""An optional experiment tracker: `--report_to tensorboard` logs the curve and the round rows as a run goes.

Event files go to `<run directory>/tensorboard/`; `tensorboard --logdir <results>` shows every run. TensorBoard is
an optional extra (`pip install -e '.[track]'`).
"""

from __future__ import annotations

import math
from pathlib import Path

from lth.errors import UserError
from lth.settings import ReportingSettings


class NoTracker:
    def log_curve(self, round_index: int, point: dict) -> None:
        pass

    def log_round(self, row: dict) -> None:
        pass

    def close(self) -> None:
        pass


class TensorBoardTracker(NoTracker):
    def __init__(self, run_path: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise UserError(
                "--report_to tensorboard needs the tensorboard package: pip install -e '.[track]'"
            ) from None
        self.writer = SummaryWriter(str(Path(run_path) / "tensorboard"))

    def log_curve(self, round_index: int, point: dict) -> None:
        for key, value in point.items():
            if key != "iteration" and isinstance(value, (int, float)) and not math.isnan(value):
                self.writer.add_scalar(f"round{round_index:02d}/{key}", value, point["iteration"])
        self.writer.flush()

    def log_round(self, row: dict) -> None:
        for key, value in row.items():
            if key != "round" and isinstance(value, (int, float)) and not isinstance(value, bool):
                if not math.isnan(value):
                    self.writer.add_scalar(f"rounds/{key}", value, row["round"])
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


def tracker_for(settings: ReportingSettings, run_path: Path) -> NoTracker:
    return TensorBoardTracker(run_path) if settings.report_to == "tensorboard" else NoTracker()
