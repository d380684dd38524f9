"""What a run reports beside its results: energy and CO2e per round (summed over resumed pieces), provenance
per piece of work, and the optional TensorBoard tracker."""

from __future__ import annotations

import csv
import json

import pytest
from kill_harness import run_once, stop_gracefully
from test_cluster import lenet_command, round_one_started

from lth.cli import main as lth
from lth.results import read_csv_rows
from lth.stopping import EXIT_RESUME_LATER
from lth.storage import load_checkpoint


def rows(run_dir) -> list[dict]:
    with open(run_dir / "rounds.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_energy_per_round_sums_over_resumed_pieces_and_provenance_records_each_piece(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("LTH_ENERGY", "on")
    command = lenet_command(tmp_path, "--carbon_intensity", "100")
    stopped = tmp_path / "stopped"
    code, _ = stop_gracefully(command(stopped), round_one_started(stopped))
    assert code == EXIT_RESUME_LATER
    (progress,) = stopped.rglob("progress.pt")
    before_stop = load_checkpoint(progress)["energy_kwh"]
    assert before_stop > 0, "the stopped piece's energy is saved with its progress"
    run_once(command(stopped))
    (run_dir,) = {p.parent for p in stopped.rglob("rounds.csv")}
    table = rows(run_dir)
    for row in table:
        energy, co2 = float(row["energy_kwh"]), float(row["co2_kg"])
        assert energy > 0 and co2 == pytest.approx(energy * 100 / 1000, rel=1e-3)
        assert row["energy_method"].split(":")[0] in ("estimated", "measured")
        assert row["carbon_source"] == "--carbon_intensity" and float(row["carbon_intensity_g_per_kwh"]) == 100
    assert float(table[1]["energy_kwh"]) >= before_stop * 0.999, "round 1 counts both of its pieces"
    pieces = [json.loads(line) for line in (run_dir / "provenance.jsonl").read_text().splitlines()]
    assert len(pieces) == 2, "one line per piece of work"
    for piece in pieces:
        assert {"git_commit", "git_dirty", "torch", "python", "host", "device", "device_name"} <= set(piece)
        assert piece["torch"] and piece["python"] and piece["host"]
    settings = json.loads((run_dir / "settings.json").read_text())
    assert "git_commit" not in settings and "host" not in settings, "provenance is never part of the identity"
    capsys.readouterr()
    lth(["summarize", str(stopped), "--value", "energy_kwh"])
    total = float(capsys.readouterr().out.strip().splitlines()[-1].split()[-1])
    assert total == pytest.approx(sum(float(r["energy_kwh"]) for r in table), rel=1e-3)


def test_energy_can_be_turned_off(tmp_path, monkeypatch):
    monkeypatch.setenv("LTH_ENERGY", "on")
    short = ("--iterations", "200", "--eval_every", "100")  # no stop to time: a short round is enough
    run_once(lenet_command(tmp_path, "--no-energy", *short)(tmp_path / "runs"))
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("rounds.csv")}
    assert {r["energy_method"] for r in rows(run_dir)} == {"off"}
    assert {r["energy_kwh"] for r in rows(run_dir)} == {""}


def test_tensorboard_tracker_logs_curve_and_rounds(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    short = ("--iterations", "200", "--eval_every", "100")  # three evaluations a round
    run_once(lenet_command(tmp_path, "--report_to", "tensorboard", *short)(tmp_path / "runs"))
    (run_dir,) = {p.parent for p in (tmp_path / "runs").rglob("rounds.csv")}
    events = EventAccumulator(str(run_dir / "tensorboard"))
    events.Reload()
    tags = events.Tags()["scalars"]
    final = events.Scalars("rounds/test_accuracy_final")
    assert [e.step for e in final] == [0, 1]
    assert [round(e.value, 2) for e in final] == [round(float(r["test_accuracy_final"]), 2) for r in rows(run_dir)]
    evaluated = [int(r["iteration"]) for r in read_csv_rows(run_dir / "curve.csv") if r["round"] == "0"]
    assert [e.step for e in events.Scalars("round00/val_loss")] == evaluated and len(evaluated) > 2
    assert "round01/test_accuracy" in tags
