"""CNN/run_experiments.sh and configs.txt: array sized to the config, the right line under LSF and SLURM."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from lth.families import family_module
from lth.sweep import read_config, sweep

CNN = Path(__file__).resolve().parents[1] / "CNN"
SCRIPT = CNN / "run_experiments.sh"
main = family_module(CNN, "main")


def run_lines() -> list[list[str]]:
    return [line.argv for line in read_config(CNN / "configs.txt")]


def test_config_is_the_60_run_sweep_with_distinct_directories():
    lines = run_lines()
    assert len(lines) == 60
    parsed = [main.parse_args(argv) for argv in lines]
    assert len({main.run_directory(a).name for a in parsed}) == 60
    conditions = {(a.arch, a.run_type, a.dropout_rate) for a in parsed}
    assert len(conditions) == 12 and all(
        sum((a.arch, a.run_type, a.dropout_rate) == c for a in parsed) == 5 for c in conditions
    )
    assert {a.output_prune_rate for a in parsed} == {0.1} and {a.fc_prune_rate for a in parsed} == {0.2}
    assert {(a.arch, a.train_iterations, a.conv_prune_rate) for a in parsed} == {
        ("Conv-2", 20_000, 0.1),
        ("Conv-4", 25_000, 0.1),
        ("Conv-6", 30_000, 0.15),
    }
    assert main.run_directory(parsed[30]).name == "Conv-2_winning_ticket_d0p5_lr0p0003_it20000_seed1"


def test_array_headers_match_the_config():
    text = SCRIPT.read_text()
    assert re.search(r'#BSUB -J "\w+\[1-60\]', text)
    assert re.search(r"#SBATCH --array=1-60\b", text)
    assert os.access(SCRIPT, os.X_OK)


def dry_run(env_extra: dict[str, str]) -> str:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LSB_JOBINDEX", "SLURM_ARRAY_TASK_ID", "LS_SUBCWD", "SLURM_SUBMIT_DIR")
    }
    env.update(env_extra, LTH_PYTHON=sys.executable)
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run"], env=env, capture_output=True, text=True, timeout=120, cwd="/"
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("variable,index", [("LSB_JOBINDEX", 7), ("SLURM_ARRAY_TASK_ID", 42)])
def test_array_job_runs_the_line_of_its_index(variable, index):
    out = dry_run({variable: str(index)})
    would = [line for line in out.splitlines() if line.startswith("would run")]
    assert len(would) == 1
    assert would[0].endswith("main.py " + shlex.join(run_lines()[index - 1]))


def test_workstation_runs_every_line(monkeypatch, capsys):
    """Outside an array job every line is listed (in-process: the script's body is the same command)."""
    for variable in ("LSB_JOBINDEX", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(variable, raising=False)
    assert sweep(CNN / "configs.txt", CNN / "main.py", dry_run=True) == 0
    out = capsys.readouterr().out
    listed = [line for line in out.splitlines() if line.startswith("would run") or "finished earlier" in line]
    assert len(listed) == 60
