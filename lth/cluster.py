"""Cluster array jobs for a config file (LSF and SLURM) and the sweep status view."""

from __future__ import annotations

import csv
import math
import os
import re
import shlex
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from lth.errors import UserError
from lth.results import is_finished
from lth.storage import DirectoryLock, atomic_write_text

# The warning signal and requeue: five minutes before the time limit the job gets SIGUSR1 (LSF -wa/-wt; SLURM
# --signal, B: so that it reaches the batch shell, which `exec` made the sweep); the run saves its progress and
# the sweep requeues its task (see requeue_self). LSF -r and SLURM --requeue rerun a task whose node failed.
STOP_HEADERS = {
    "lsf": ["#BSUB -wa USR1", "#BSUB -wt 5", "#BSUB -r"],
    "slurm": ["#SBATCH --signal=B:USR1@300", "#SBATCH --requeue"],
}
DEFAULT_HEADERS = {
    "lsf": [
        "#BSUB -n 4",
        "#BSUB -W 12:00",
        '#BSUB -R "rusage[mem=16G]"',
        '#BSUB -R "span[hosts=1]"',
        '#BSUB -gpu "num=1:mode=exclusive_process"',
        *STOP_HEADERS["lsf"],
    ],
    "slurm": [
        "#SBATCH --gres=gpu:1",
        "#SBATCH --cpus-per-task=4",
        "#SBATCH --mem=16G",
        "#SBATCH --time=12:00:00",
        *STOP_HEADERS["slurm"],
    ],
}
SUBMIT_COMMAND = {"lsf": "bsub", "slurm": "sbatch"}


def folder_headers(folder: Path, system: str) -> list[str]:
    """The resource lines of the folder's run script (its #BSUB or #SBATCH lines, less job name,
    array and log lines, which are made per config file)."""
    prefix = "#BSUB" if system == "lsf" else "#SBATCH"
    skip = ("-J", "-o", "-e") if system == "lsf" else ("--job-name", "--array", "--output", "--error")
    headers = []
    for script in sorted(folder.glob("run_*.sh")):
        for line in script.read_text().splitlines():
            if line.startswith(prefix):
                option = line[len(prefix) :].strip().split(" ")[0].split("=")[0]
                if option not in skip and line not in headers:
                    headers.append(line)
        if headers:
            break
    if not headers:
        return DEFAULT_HEADERS[system]
    return headers + [line for line in STOP_HEADERS[system] if line not in headers]


def array_job_script(
    system: str,
    config: Path,
    script: Path,
    runs: int,
    max_parallel: int = 8,
    batch: bool = False,
    max_batch: int | None = None,
) -> str:
    """An array job sized to the config file: task i runs run line i through `lth sweep`."""
    if system not in SUBMIT_COMMAND:
        raise UserError(f"--submit {system}: expected lsf or slurm")
    name = re.sub(r"[^A-Za-z0-9_]+", "_", f"{config.parent.name}_{config.stem}")
    limit = f"%{max_parallel}" if max_parallel else ""
    if system == "lsf":
        head = [
            f'#BSUB -J "{name}[1-{runs}]{limit}"',
            *folder_headers(config.parent, "lsf"),
            f"#BSUB -o outputs/{name}_%J_%I.out",
            f"#BSUB -e outputs/{name}_%J_%I.err",
        ]
        workdir = "${LS_SUBCWD:-$PWD}"
    else:
        head = [
            f"#SBATCH --job-name={name}",
            f"#SBATCH --array=1-{runs}{limit}",
            *folder_headers(config.parent, "slurm"),
            f"#SBATCH --output=outputs/{name}_%A_%a.out",
            f"#SBATCH --error=outputs/{name}_%A_%a.err",
        ]
        workdir = "${SLURM_SUBMIT_DIR:-$PWD}"
    body = [
        "set -euo pipefail",
        f'cd "{workdir}"',
        "mkdir -p outputs",
        f'exec "${{LTH_PYTHON:-python}}" -m lth sweep {shlex.quote(config.name)} --script {shlex.quote(script.name)}'
        + (" --batch" if batch else "")
        + (f" --max_batch {max_batch}" if batch and max_batch else ""),
    ]
    return (
        "\n".join(
            [
                "#!/bin/bash",
                f"# {runs} {'batches of runs' if batch else 'runs'} of {config.name}; written by `lth sweep --submit {system}`",
                *head,
                *body,
            ]
        )
        + "\n"
    )


def submit(
    system: str, config: Path, script: Path, runs: int, yes: bool, batch: bool = False, max_batch: int | None = None
) -> Path:
    job = config.parent / f"{config.stem}.{system}.sh"
    (config.parent / "outputs").mkdir(exist_ok=True)
    atomic_write_text(job, array_job_script(system, config, script, runs, batch=batch, max_batch=max_batch))
    job.chmod(0o755)
    print(job.read_text(), end="")
    command = f"{SUBMIT_COMMAND[system]} < {job.name}" if system == "lsf" else f"sbatch {job.name}"
    if not yes:
        print(f"# written {job}; submit with: cd {config.parent} && {command}   (or add --yes)")
        return job
    try:
        subprocess.run(command, shell=True, cwd=config.parent, check=True)
    except (OSError, subprocess.CalledProcessError) as error:
        raise UserError(f"`{command}` failed ({error}); is this a {system.upper()} login node?") from None
    return job


def requeue_command() -> list[str] | None:
    """The command that puts this array task back in the queue (SLURM or LSF), or None outside a cluster job."""
    if os.environ.get("SLURM_JOB_ID"):
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return ["scontrol", "requeue", f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]]
    if os.environ.get("LSB_JOBID"):
        index = os.environ.get("LSB_JOBINDEX", "0")
        job = os.environ["LSB_JOBID"]
        return ["brequeue", f"{job}[{index}]" if index not in ("", "0") else job]
    return None


def requeue_self() -> None:
    """After the time-limit warning (SIGUSR1): requeue this task, which resumes where it stopped."""
    command = requeue_command()
    if command is None:
        return
    try:
        subprocess.run(command, check=True, timeout=60)
        print(f"requeued: {' '.join(command)}", flush=True)
    except (OSError, subprocess.SubprocessError) as error:
        print(f"could not requeue ({' '.join(command)}: {error}); resubmit the array to resume", flush=True)


def run_status(run_path: Path) -> str:
    """finished, running (a live lease), failed (last attempt raised), interrupted (a stale lease, or saved
    progress and no lease), or missing."""
    if is_finished(run_path):
        return "finished"
    if not run_path.exists():
        return "missing"
    lease = DirectoryLock(run_path)
    holder = lease.live_holder()
    if holder is not None:
        here = holder.host == socket.gethostname()
        return f"running (pid {holder.pid})" if here else f"running (host {holder.host})"
    if (run_path / "failed").exists():
        return "failed: " + (run_path / "failed").read_text().strip().splitlines()[-1][:120]
    stale = lease.stale_holder()
    if stale is not None:
        return f"interrupted (stale lease of host {stale.host}; start it again to resume)"
    return (
        "interrupted (start it again to resume)"
        if (run_path / "state.pt").exists() or (run_path / "progress.pt").exists()
        else "started"
    )


@dataclass
class RoundProgress:
    """A run's finished rounds, out of how many (where its rounds.csv says: the image families' `rounds` column,
    plus the dense round), and what a round has cost it so far."""

    done: int
    total: int | None
    seconds_per_round: float | None

    @property
    def seconds_left(self) -> float | None:
        """At its rounds' pace so far; None where the total or the pace is unknown."""
        if self.total is None or self.seconds_per_round is None:
            return None
        return max(0, self.total - self.done) * self.seconds_per_round

    def __str__(self) -> str:
        if self.done == 0 and self.total is None:
            return "-"
        shown = (
            f"{self.done}/{self.total} rounds" if self.total else f"{self.done} round{'s' if self.done != 1 else ''}"
        )
        left = self.seconds_left
        return shown + (f", ~{duration(left)} left" if left else "")


def round_progress(run_path: Path) -> RoundProgress:
    path = run_path / "rounds.csv"
    if not path.exists():
        return RoundProgress(0, None, None)
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return RoundProgress(0, None, None)
    rounds = str(rows[-1].get("rounds") or "")
    total = int(rounds) + 1 if rounds.isdigit() else None
    times = [t for t in (_seconds(r.get("wall_time_s")) for r in rows) if t is not None]
    return RoundProgress(len(rows), total, sum(times) / len(times) if times else None)


def _seconds(cell: str | None) -> float | None:
    """A wall_time_s cell as a finite number of seconds; None for an empty, missing or unreadable one."""
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def duration(seconds: float) -> str:
    if seconds < 60:
        return "<1 min"
    return f"{seconds / 3600:.1f} h" if seconds >= 5400 else f"{seconds / 60:.0f} min"
