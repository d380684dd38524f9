"""Runs killed with SIGKILL at random moments and restarted end bitwise identical to uninterrupted runs."""

from __future__ import annotations

import pytest

from conftest import family_module, require_data, tiny_mnist
from imp_fixtures import csv_without_wall_time
from kill_harness import kill_repeatedly, run_once


@pytest.mark.slow
def test_lenet_survives_twenty_kills(tmp_path):
    source = require_data("MNIST/raw")
    tiny_mnist(tmp_path / "data", source)
    main = family_module("Lenet-300-100", "main")

    def command(output):
        return lambda: main.main(["--iterations", "90", "--eval_every", "30", "--rounds", "3", "--checkpoint_every", "20",
                                  "--random_reinit", "--data_dir", str(tmp_path / "data"), "--output_dir", str(output),
                                  "--quiet", "--device", "cpu"])

    duration = run_once(command(tmp_path / "reference"))
    # Each life gets a random slice of up to a quarter of the run: kills land in start-up, training,
    # checkpoint writes and round ends alike, and progress still accumulates across lives.
    killed = kill_repeatedly(command(tmp_path / "killed"), kills=20, seed=2026, span=duration / 4)
    assert killed >= 15, "most lives should have been cut short"
    name = "lenet300-100-iterative_random_reinit_trial0"
    reference, resumed = tmp_path / "reference" / name, tmp_path / "killed" / name
    assert csv_without_wall_time(resumed / "rounds.csv") == csv_without_wall_time(reference / "rounds.csv")
    assert (resumed / "curve.csv").read_bytes() == (reference / "curve.csv").read_bytes()
    assert not list(resumed.glob(".*.tmp")), "no temporary files left behind"
