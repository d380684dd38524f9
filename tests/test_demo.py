"""The README's quick demo: runs offline and writes its CSVs and figure."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest


@pytest.mark.slow
def test_demo_command_writes_csvs_and_figure(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "lth", "demo", "--output_dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    figure = tmp_path / "demo" / "digits_imp.png"
    assert figure.stat().st_size > 20_000 and str(figure) in result.stdout
    rounds = pd.concat(pd.read_csv(p) for p in (tmp_path / "demo").glob("*/rounds.csv"))
    assert set(rounds.run_type) == {"winning_ticket", "random_reinit"}
    assert rounds["round"].max() == 10
    dense = rounds[rounds["round"] == 0]["test_accuracy_early_stop"]
    assert (dense > 90).all(), "the digits MLP learns the task"
    # Started again, the demo changes nothing and says so.
    again = subprocess.run(
        [sys.executable, "-m", "lth", "demo", "--output_dir", str(tmp_path / "demo")],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert again.returncode == 0 and "nothing to do" in again.stdout
