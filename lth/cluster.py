"""Cluster array jobs for a config file (LSF and SLURM) and the sweep status view."""

from __future__ import annotations

import csv
import json
import math
import os
import re
import shlex
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from lth.atomic import atomic_write_text
from lth.errors import UserError
from lth.lease import DirectoryLock
from lth.results import RunFiles, is_finished, rounds_done

# The warning signal and requeue: five minutes before the time limit the job gets SIGUSR1 (LSF -wa/-wt; SLURM
# --signal, B: so that it reaches the batch shell, which `exec` made the sweep); the run saves its progress and
# the sweep requeues its task (see requeue_self). LSF -r and SLURM --requeue rerun a task whose node failed.
# SLURM truncates a log it opens unless told to append: --open-mode=append keeps every allocation's log (LSF's -o
# appends already).
STOP_HEADERS = {
    "lsf": ["#BSUB -wa USR1", "#BSUB -wt 5", "#BSUB -r"],
    "slurm": ["#SBATCH --signal=B:USR1@300", "#SBATCH --requeue", "#SBATCH --open-mode=append"],
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
PREFIX = {"lsf": "#BSUB", "slurm": "#SBATCH"}
# Made per config file (job name, array, working folder, logs), never copied from a folder's script.
PER_CONFIG_OPTIONS = {"lsf": ("-J", "-o", "-e", "-oo", "-eo", "-cwd"), "slurm": ("--job-name", "--array", "--output",
                      "--error", "--chdir", "-J", "-a", "-o", "-e", "-D")}  # fmt: skip
SLURM_EARLY_SIGNAL_S = 60  # SLURM may send --signal's warning up to a minute before the time asked for


def header_option(line: str, system: str) -> str:
    """The option a header line sets: `#SBATCH --time=1:00` -> --time, `#BSUB -W 12:00` -> -W."""
    return line[len(PREFIX[system]) :].strip().split(" ")[0].split("=")[0]


def folder_headers(folder: Path, system: str) -> list[str]:
    """The resource lines of the folder's run script (its #BSUB or #SBATCH lines, less job name,
    array and log lines, which are made per config file)."""
    headers = []
    for script in sorted(folder.glob("run_*.sh")):
        for line in script.read_text().splitlines():
            if line.startswith(PREFIX[system] + " "):
                if header_option(line, system) not in PER_CONFIG_OPTIONS[system] and line not in headers:
                    headers.append(line)
        if headers:
            break
    if not headers:
        return DEFAULT_HEADERS[system]
    return headers + [line for line in STOP_HEADERS[system] if line not in headers]


def option_headers(options: str, system: str) -> list[str]:
    """`--submit_options` as header lines: "--gres=none -c 2" -> #SBATCH --gres=none, #SBATCH -c 2;
    "-q short -n 2" -> #BSUB -q short, #BSUB -n 2. An option's value is what follows `=` or the next word."""
    try:
        words = shlex.split(options)
    except ValueError as error:
        raise UserError(f"--submit_options {options!r}: cannot be split into options ({error})") from None
    lines: list[str] = []
    for word in words:
        if word.startswith("-"):
            lines.append(f"{PREFIX[system]} {word}")
        elif lines and " " not in lines[-1][len(PREFIX[system]) + 1 :] and "=" not in lines[-1]:
            plain = re.fullmatch(r"[\w:.,/+-]+", word)
            lines[-1] += " " + (word if plain or system == "slurm" else f'"{word}"')
        else:
            raise UserError(f"--submit_options {options!r}: {word!r} is not an option (options start with -)")
    for line in lines:
        if header_option(line, system) in PER_CONFIG_OPTIONS[system]:
            raise UserError(
                f"--submit_options: {header_option(line, system)} is made per config file (job name, array, "
                "working folder and logs); use --max_parallel for the array's throttle"
            )
    return lines


def fit_headers(headers: list[str], options: str, system: str) -> list[str]:
    """The headers with every option given in `options` replacing the lines that set the same option. For LSF an
    option given the value `none` removes its lines: bsub has no value meaning "no GPU" (`-gpu none` is the
    GPU-less form; SLURM has its own, `--gres=none`)."""
    given = option_headers(options, system)
    replaced = {header_option(line, system) for line in given}
    if system == "lsf":
        given = [line for line in given if header_value([line], system, header_option(line, system)) != "none"]
    return [line for line in headers if header_option(line, system) not in replaced] + given


def header_value(headers: list[str], system: str, option: str) -> str | None:
    """The value of the last header line setting `option` (without quotes), or None."""
    value = None
    for line in headers:
        if header_option(line, system) == option:
            rest = line[len(PREFIX[system]) :].strip()[len(option) :].lstrip("= ").strip()
            value = rest.strip("\"'")
    return value


def slurm_seconds(text: str) -> int:
    """A SLURM time (minutes, minutes:seconds, hours:minutes:seconds, days-hours[:minutes[:seconds]]) in seconds."""
    try:
        days, _, clock = text.rpartition("-")
        parts = [int(p) for p in clock.split(":")]
        if days:
            hours, minutes, seconds = (parts + [0, 0])[:3]
        elif len(parts) == 3:
            hours, minutes, seconds = parts
        else:
            hours, (minutes, seconds) = 0, (parts + [0])[:2]
        return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + seconds
    except ValueError:
        raise UserError(f"--time={text}: not a SLURM time (minutes, HH:MM:SS or D-HH:MM:SS)") from None


def lsf_seconds(text: str, option: str) -> int:
    """An LSF [hours:]minutes time (-W, -wt) in seconds."""
    try:
        parts = [int(p) for p in text.split(":")]
        return (parts[0] * 60 + parts[1]) * 60 if len(parts) == 2 else parts[0] * 60
    except (ValueError, IndexError):
        raise UserError(f"{option} {text}: not an LSF time ([hours:]minutes)") from None


def check_time_limit(headers: list[str], system: str) -> None:
    """Refuse a time limit that leaves no time before the warning signal: every allocation would be warned as it
    starts, save nothing new and requeue itself, again and again."""
    if system == "slurm":
        limit, signal_spec = header_value(headers, system, "--time"), header_value(headers, system, "--signal")
        if limit is None or signal_spec is None or "USR1" not in signal_spec:
            return
        warning = int(signal_spec.partition("@")[2] or 60)
        seconds, early = slurm_seconds(limit), SLURM_EARLY_SIGNAL_S
        names = f"--time={limit} against --signal={signal_spec}"
    else:
        limit, before = header_value(headers, system, "-W"), header_value(headers, system, "-wt")
        if limit is None or before is None:
            return
        seconds, warning, early = lsf_seconds(limit, "-W"), lsf_seconds(before, "-wt"), 0
        names = f"-W {limit} against -wt {before}"
    if seconds <= warning + early:
        raise UserError(
            f"the job's time limit leaves no time before its warning signal ({names}"
            + (f"; SLURM may send it up to {early} s early" if early else "")
            + "): every allocation would be warned as it starts and requeue itself without progress; give a longer "
            f"time limit (above {warning + early} s) or an earlier warning through --submit_options"
        )


def array_job_script(
    system: str,
    config: Path,
    script: Path,
    runs: int,
    max_parallel: int = 8,
    batch: bool = False,
    max_batch: int | None = None,
    options: str = "",
) -> str:
    """An array job sized to the config file: task i runs run line i through `lth sweep`. Its working folder and
    logs are absolute paths (the config's folder), so it may be submitted from anywhere; its resource lines come
    from the script's folder, with `options` (sbatch/bsub options) replacing the lines they name."""
    if system not in SUBMIT_COMMAND:
        raise UserError(f"--submit {system}: expected lsf or slurm")
    config, script = config.resolve(), script.resolve()
    folder = config.parent
    name = re.sub(r"[^A-Za-z0-9_]+", "_", f"{folder.name}_{config.stem}")
    limit = f"%{max_parallel}" if max_parallel else ""
    resources = fit_headers(folder_headers(script.parent, system), options, system)
    check_time_limit(resources, system)
    if system == "lsf":
        head = [
            f'#BSUB -J "{name}[1-{runs}]{limit}"',
            *resources,
            f"#BSUB -cwd {folder}",
            f"#BSUB -o {folder}/outputs/{name}_%J_%I.out",
            f"#BSUB -e {folder}/outputs/{name}_%J_%I.err",
        ]
    else:
        head = [
            f"#SBATCH --job-name={name}",
            f"#SBATCH --array=1-{runs}{limit}",
            *resources,
            f"#SBATCH --chdir={folder}",
            f"#SBATCH --output={folder}/outputs/{name}_%A_%a.out",
            f"#SBATCH --error={folder}/outputs/{name}_%A_%a.err",
        ]
    body = [
        "set -euo pipefail",
        f"cd {shlex.quote(str(folder))}",
        f'exec "${{LTH_PYTHON:-{sys.executable}}}" -m lth sweep {shlex.quote(str(config))} '
        f"--script {shlex.quote(str(script))}"
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
    system: str,
    config: Path,
    script: Path,
    runs: int,
    yes: bool,
    batch: bool = False,
    max_batch: int | None = None,
    options: str = "",
    max_parallel: int = 8,
) -> Path:
    text = array_job_script(system, config, script, runs, max_parallel, batch, max_batch, options)
    job = config.parent / f"{config.stem}.{system}.sh"
    (config.parent / "outputs").mkdir(exist_ok=True)  # SLURM and LSF do not create a log folder
    atomic_write_text(job, text)
    job.chmod(0o755)
    print(text, end="")
    command = f"bsub < {job}" if system == "lsf" else f"sbatch {job}"
    if not yes:
        print(f"# written {job}; submit with: {command}   (or add --yes)")
        return job
    if system == "slurm":  # sbatch accepts a request no node can hold, which then pends for ever: ask first
        ask(["sbatch", "--test-only", str(job)], job, command, "no node can run this job as its header asks "
            "(fit it with --submit_options, e.g. \"--gres=none --cpus-per-task=2\"; `sinfo -o '%N %c %m %G'` "
            "lists what the nodes have)")  # fmt: skip
    done = ask(["bsub"] if system == "lsf" else ["sbatch", str(job)], job, command, "failed")
    print(done.stdout.strip(), flush=True)
    record_submission(config, system, done.stdout, runs, batch)
    return job


SUBMISSIONS = "submitted.jsonl"  # in the config's outputs/: the array jobs submitted for it, for `lth status`


def record_submission(config: Path, system: str, answer: str, tasks: int, batch: bool) -> None:
    """Note the array job the scheduler answered with (sbatch: `Submitted batch job 123`; bsub: `Job <123> is
    submitted ...`), so `lth status --config` can show the tasks that have not started yet."""
    found = re.search(r"<(\d+)>" if system == "lsf" else r"(\d+)", answer)
    if found is None:
        return
    entry = {"config": str(config.resolve()), "system": system, "job": found.group(1), "tasks": tasks, "batch": batch}
    with open(config.parent / "outputs" / SUBMISSIONS, "a") as log:
        log.write(json.dumps(entry) + "\n")


def queued_line_state(config: Path, position: int) -> str | None:
    """Where the latest array job submitted for `config` holds the task of its line at `position` (1-based) that
    has not started a run yet: e.g. 'queued (SLURM task 123_4 PENDING (Resources))'; None when nothing is queued."""
    try:
        entries = [json.loads(line) for line in open(config.parent / "outputs" / SUBMISSIONS)]
    except (OSError, ValueError):
        return None
    mine = [e for e in entries if e.get("config") == str(config.resolve()) and not e.get("batch")]
    if not mine or position > mine[-1]["tasks"]:
        return None
    task = f"{mine[-1]['job']}_{position}"
    state = queued_state(mine[-1]["system"], task)
    return f"queued ({mine[-1]['system'].upper()} task {task} {state})" if state else None


def ask(argv: list[str], job: Path, command: str, failure: str) -> subprocess.CompletedProcess:
    """Run a scheduler command on the job script; its own message, in one line, where it refuses."""
    system = "lsf" if argv[0] == "bsub" else "slurm"
    try:
        with open(job) as stdin:
            done = subprocess.run(
                argv,
                stdin=stdin if system == "lsf" else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
    except FileNotFoundError:
        raise UserError(
            f"--submit {system} --yes: {argv[0]} is not on PATH (not a {system.upper()} login "
            f"node?); {job} is written: submit it from one with `{command}`"
        ) from None
    except subprocess.TimeoutExpired:
        raise UserError(f"`{' '.join(argv)}` did not answer within 120 s (is the scheduler up?)") from None
    if done.returncode != 0:
        why = " ".join(line.strip() for line in (done.stderr or done.stdout).strip().splitlines()[-3:])
        raise UserError(f"`{' '.join(argv)}`: {failure} (exit status {done.returncode}: {why or 'no message'})")
    return done


def job_script_folder(script: str, entry: str) -> Path:
    """The folder a ready-made job script was submitted from, where its config, `entry` script and `outputs/` are.

    Outside a scheduler that is the script's own folder ($0). SLURM runs a copy of the script from its spool, so
    SLURM is asked which file was submitted (else the submit folder); LSF's `bsub <` passes no path at all, only
    the folder it was submitted from. Creates `outputs/` there (later submissions' logs go into it)."""
    folder = Path(script).resolve().parent
    if os.environ.get("SLURM_JOB_ID"):
        shown = subprocess.run(
            ["scontrol", "show", "job", os.environ["SLURM_JOB_ID"], "-o"], capture_output=True, text=True
        ).stdout
        command = re.search(r" Command=(\S+)", shown)
        folder = Path(command.group(1)).parent if command else Path(os.environ.get("SLURM_SUBMIT_DIR", folder))
    elif os.environ.get("LS_SUBCWD"):
        folder = Path(os.environ["LS_SUBCWD"])
    if not (folder / entry).is_file():
        raise UserError(
            f"{Path(script).name}: no {entry} in {folder}; submit it from its own folder (cd there first), "
            f"e.g. cd <repository>/<family> && sbatch {Path(script).name}"
        )
    (folder / "outputs").mkdir(exist_ok=True)
    return folder


def array_task() -> tuple[str, str] | None:
    """(system, task) of this cluster job as its logs name it (SLURM %A_%a, LSF %J_%I; a job that is not an
    array: its job id alone), or None outside a cluster job."""
    if os.environ.get("SLURM_JOB_ID"):
        array = os.environ.get("SLURM_ARRAY_JOB_ID")
        task = os.environ.get("SLURM_ARRAY_TASK_ID")
        return "slurm", f"{array}_{task}" if array and task else os.environ["SLURM_JOB_ID"]
    if os.environ.get("LSB_JOBID"):
        index = os.environ.get("LSB_JOBINDEX", "0")
        job = os.environ["LSB_JOBID"]
        return "lsf", f"{job}_{index}" if index not in ("", "0") else job
    return None


def requeue_command() -> list[str] | None:
    """The command that puts this array task back in the queue (SLURM or LSF), or None outside a cluster job."""
    task = array_task()
    if task is None:
        return None
    system, name = task
    if system == "slurm":
        return ["scontrol", "requeue", name]
    job, _, index = name.partition("_")
    return ["brequeue", f"{job}[{index}]" if index else job]


REQUEUED = "requeued"  # a run directory's marker: the cluster task that will resume it (see run_status)


def requeue_self(directories: list[Path] = ()) -> bool:
    """After the time-limit warning (SIGUSR1): requeue this task, which resumes where it stopped; its runs'
    directories are marked with the task, so that `lth status` shows them as requeued."""
    command = requeue_command()
    if command is None:
        return False
    try:
        subprocess.run(command, check=True, timeout=60, capture_output=True)
    except (OSError, subprocess.SubprocessError) as error:
        detail = getattr(error, "stderr", b"") or b""
        print(
            f"could not requeue ({' '.join(command)}: {error} {detail.decode(errors='replace').strip()}); "
            "resubmit the array to resume",
            flush=True,
        )
        return False
    system, task = array_task()
    for directory in directories:
        if directory.is_dir():
            atomic_write_text(directory / REQUEUED, json.dumps({"system": system, "task": task}) + "\n")
    print(f"requeued: {' '.join(command)}", flush=True)
    return True


def queued_state(system: str, task: str) -> str | None:
    """The scheduler's state of a task (e.g. 'PENDING (BeginTime)', 'RUNNING'), or None where it is not queued
    any more or the scheduler cannot be asked."""
    if system == "slurm":
        command = ["squeue", "-h", "-j", task, "-o", "%T (%r)"]
    else:
        job, _, index = task.partition("_")
        command = ["bjobs", "-noheader", "-o", "stat pend_reason", f"{job}[{index}]" if index else job]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None
    lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    if done.returncode != 0 or not lines:
        return None
    return lines[0].replace(" (None)", "")


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
    files = RunFiles(run_path)
    failure = files.failure()
    if failure is not None:
        return "failed: " + failure[:120]
    requeued = read_requeued(run_path)
    if requeued is not None:
        system, task = requeued
        state = queued_state(system, task)
        if state is not None:
            return f"requeued ({system.upper()} task {task} {state}; it resumes the run when it starts)"
    stale = lease.stale_holder()
    if stale is not None:
        return f"interrupted (stale lease of host {stale.host}; start it again to resume)"
    if files.has_state() or files.has_progress():
        return "interrupted (start it again to resume)"
    if rounds_done(run_path):  # results without run state (committed, moved): it continues from them
        return "interrupted (start it again: it continues from its results)"
    return "started"


def read_requeued(run_path: Path) -> tuple[str, str] | None:
    try:
        data = json.loads((run_path / REQUEUED).read_text())
        return str(data["system"]), str(data["task"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def saved_position(directory: Path) -> tuple:
    """How far a run's saved work has got: finished, rounds written, and the round and iteration of its saved
    in-round progress. Unchanged across an allocation: that allocation made no progress."""
    from lth.results import read_csv_rows

    files = RunFiles(directory)
    rounds = files.rounds_csv
    position: list = [is_finished(directory), len(read_csv_rows(rounds)) if rounds.exists() else 0]
    if files.has_progress():
        try:
            progress = files.load_progress()
            position += [progress.get("round"), progress.get("loop", {}).get("iteration")]
        except UserError:
            position.append("unreadable")
    return tuple(position)


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
    path = RunFiles(run_path).rounds_csv
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
