"""Config files as sweeps: one run per line, run locally in turn or as a cluster array job.

A config file holds one line of flags per run for an entry script; blank lines and `#` comments
are ignored. Every line is parsed by the script's own parser before anything starts, so a bad
line is reported with its number. Under LSF (`$LSB_JOBINDEX`) or SLURM (`$SLURM_ARRAY_TASK_ID`)
only the line of that index runs (1-based, counting run lines only).

An entry script takes part by defining `parse_args(argv)`, `run_directory(args) -> Path` and
`main(argv)`; an image family's IMP entry script declares them once, as its `ENTRY` (lth.experiment.ImageEntry),
which is also what `--batch`, `lth batch` and `lth stability` read.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm.auto import tqdm

from lth.errors import UserError
from lth.families import EntryScript, family_module
from lth.results import is_finished
from lth.stopping import EXIT_RESUME_LATER, STOP_SIGNALS

ARRAY_INDEX_VARIABLES = ("LSB_JOBINDEX", "SLURM_ARRAY_TASK_ID")


@dataclass
class ConfigLine:
    number: int  # line number in the file, for messages
    argv: list[str]
    batch: list[ConfigLine] | None = None  # with `--batch`: the lines trained together in one process

    @property
    def text(self) -> str:
        if self.batch:
            return "batched: " + " | ".join(shlex.join(line.argv) for line in self.batch)
        return shlex.join(self.argv)


def batch_units(
    entry: EntryScript, script: Path, lines: list[ConfigLine], directories: list[Path], max_batch: int | None = None
):
    """Lines that differ only in seed, trial, run type or IMP mode, grouped: each group (split into batches of at
    most `max_batch` lines, in config order, where given) is one unit of work."""
    from lth.experiment import batch_key  # torch, only where runs are batched

    entry = image_entry(entry, f"--batch: {script.name}", "use --per_device N instead")
    groups: dict[str, list[tuple[ConfigLine, Path]]] = {}
    previous = os.getcwd()
    os.chdir(script.parent)
    try:
        for line, directory in zip(lines, directories, strict=True):
            groups.setdefault(batch_key(entry.parse_args(line.argv)), []).append((line, directory))
    finally:
        os.chdir(previous)
    units = []
    for group in groups.values():
        size = max_batch or len(group)
        for members in (group[start : start + size] for start in range(0, len(group), size)):
            if len(members) == 1:
                units.append(members[0])
            else:
                first = members[0][0]
                unit = ConfigLine(first.number, first.argv, batch=[line for line, _ in members])
                units.append((unit, [directory for _, directory in members]))
    return units


def read_config(path: str | os.PathLike) -> list[ConfigLine]:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as error:
        raise UserError(f"config file {path} cannot be read ({error.strerror})") from None
    lines = []
    for number, raw in enumerate(text.splitlines(), start=1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            argv = shlex.split(stripped, comments=True)
        except ValueError as error:
            raise UserError(f"{path} line {number}: cannot be split into flags ({error})") from None
        lines.append(ConfigLine(number, argv))
    if not lines:
        raise UserError(f"config file {path} holds no runs")
    return lines


def load_script(script: str | os.PathLike) -> EntryScript:
    """The `ENTRY` an entry script declares (an lth.families.EntryScript: its settings, and for an image family's
    IMP script its data, recipe and hooks), imported as a module of its folder's package."""
    script = Path(script).resolve()
    if not script.is_file():
        raise UserError(f"entry script {script} does not exist")
    module = family_module(script, script.stem)
    entry = vars(module).get("ENTRY")
    if not isinstance(entry, EntryScript):
        raise UserError(f"entry script {script} declares no ENTRY (an lth.families.EntryScript); it cannot be swept")
    return entry


def image_entry(entry: EntryScript, what: str, otherwise: str):
    """`entry` as an image family's IMP entry script (lth.experiment.ImageEntry); `what` and `otherwise` word
    the refusal of another script."""
    from lth.experiment import ImageEntry

    if not isinstance(entry, ImageEntry):
        raise UserError(f"{what} is not an image family's IMP entry script; {otherwise}")
    return entry


def check_lines(entry: EntryScript, script: Path, config: Path, lines: list[ConfigLine]) -> list[Path]:
    """Parse every line with the script's parser; returns each run's directory."""
    directories = []
    folder = Path(script).resolve().parent
    previous = os.getcwd()
    os.chdir(folder)  # lines are run from the script's folder, so relative paths resolve there
    try:
        for line in lines:
            try:
                args = entry.parse_args(line.argv)
            except UserError as error:
                raise UserError(f"{config} line {line.number}: {error}") from None
            directories.append((folder / entry.run_directory(args)).resolve())
    finally:
        os.chdir(previous)
    first: dict[Path, int] = {}
    for line, directory in zip(lines, directories, strict=True):
        if directory in first:  # e.g. --trial 0 and --seed 42: one run, two writers
            raise UserError(
                f"{config} lines {first[directory]} and {line.number} name the same run ({directory}); remove one"
            )
        first[directory] = line.number
    return directories


def array_index() -> int | None:
    """The 1-based line this array task runs, or None outside an array job. LSF sets LSB_JOBINDEX=0 for a
    job that is not an array: then every line runs, and the sweep says so."""
    for variable in ARRAY_INDEX_VARIABLES:
        value = os.environ.get(variable)
        if value in (None, ""):
            continue
        try:
            index = int(value)
        except ValueError:
            raise UserError(f"${variable}={value!r} is not an array index") from None
        if index == 0:
            print(f"${variable}=0: not an array job; running every unfinished line", flush=True)
            return None
        return index
    return None


def select_line(lines: list[ConfigLine], index: int, config: Path) -> ConfigLine:
    if not 1 <= index <= len(lines):
        raise UserError(
            f"array index {index} is outside 1..{len(lines)}, the runs in {config}; size the array to the config file"
        )
    return lines[index - 1]


def visible_gpus() -> list[str]:
    """The GPUs this sweep may use, as CUDA_VISIBLE_DEVICES names them: its list where it is set, else every GPU
    torch sees (none without CUDA)."""
    listed = os.environ.get("CUDA_VISIBLE_DEVICES")
    if listed is not None:
        return [device.strip() for device in listed.split(",") if device.strip()]
    import torch

    return [str(index) for index in range(torch.cuda.device_count())]


def device_slots(per_device: int) -> list[str | None]:
    """One slot per line that may run at once: `per_device` on each visible GPU where there are several (a line's
    process then sees only its slot's GPU), else `per_device` on the one device."""
    gpus = visible_gpus()
    if len(gpus) < 2:
        return [None] * per_device
    return [gpu for _ in range(per_device) for gpu in gpus]  # interleaved: a short sweep still uses every GPU


def line_environment(slots: int, gpu: str | None) -> dict[str, str] | None:
    """The environment of a line run beside `slots - 1` others: the CPU cores shared out among them
    (OMP_NUM_THREADS = cores // slots, at least 1; small models slow down when their processes' threads outnumber
    the cores), and its slot's GPU. An OMP_NUM_THREADS the user set is kept; None: the sweep's own environment."""
    env = {}
    if slots > 1 and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        env["OMP_NUM_THREADS"] = str(max(1, cores // slots))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    return {**os.environ, **env} if env else None


def _end_with_the_sweep(sweep_pid: int) -> None:
    """In a line's process before it starts (Linux): SIGTERM when the sweep dies, even by SIGKILL, so the run saves
    its progress and stops instead of training on outside the job (reparented to init)."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != sweep_pid:  # the sweep died before that took effect
        os.kill(os.getpid(), signal.SIGTERM)


def start_line(script: Path, line: ConfigLine, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Run one config line (or a batch of lines, through `lth batch`) as its own process: a crash in one run
    never takes the sweep down. It gets a process group of its own, so a signal reaches it once: forwarded by
    the sweep, not also from the terminal. It stays in the sweep's session, so on Linux it shares the sweep's
    scheduling autogroup and `nice lth sweep ...` lowers its priority against other sessions' work (a session of
    its own would be a new autogroup at normal priority, whatever the sweep's nice value)."""
    if line.batch:
        lines = [shlex.join(member.argv) for member in line.batch]
        command = [sys.executable, "-u", "-m", "lth", "batch", str(script), "--lines", *lines]
    else:
        command = [sys.executable, "-u", str(script), *line.argv]
    linux = sys.platform.startswith("linux")
    sweep_pid = os.getpid()
    return subprocess.Popen(
        command,
        cwd=script.parent,
        process_group=0,
        env=env,
        preexec_fn=(lambda: _end_with_the_sweep(sweep_pid)) if linux else None,
    )


def _finished(directory) -> bool:
    return all(is_finished(d) for d in directory) if isinstance(directory, list) else is_finished(directory)


def wait_for_lease(line: ConfigLine, directory: Path) -> str:
    """In an array task: a run held elsewhere may be a failed node's, whose lease still looks fresh. Wait until
    it is released, goes stale (judged by the holder's own timeout) or the run finishes; its state then."""
    from lth.cluster import run_status
    from lth.lease import DirectoryLock, heartbeat_interval

    lease = DirectoryLock(directory)
    holder = lease.live_holder()
    if holder is None:
        return run_status(directory)
    interval = holder.interval or heartbeat_interval(lease.timeout_for(holder))
    wait = lease.timeout_for(holder) + 2 * interval + 5
    print(
        f"line {line.number}: its run is held by {holder.describe()}; waiting up to {wait:.0f} s for that "
        "lease to be released or go stale",
        flush=True,
    )
    deadline = time.monotonic() + wait
    state = run_status(directory)
    while state.startswith("running") and time.monotonic() < deadline:
        time.sleep(min(2.0, max(0.1, interval / 2)))
        state = run_status(directory)
    return state


def run_lines(
    script: Path, todo: list[tuple[ConfigLine, Path]], config: Path, parallel: int = 1, in_array: bool = False
) -> int:
    """Run the lines, `parallel` at a time on each device (`device_slots`), each holding its own run's lease. A stop
    signal is forwarded to every running line; the sweep then starts no more and returns EXIT_RESUME_LATER.

    A line whose run is held by a live lease elsewhere is not run here, and the sweep does not report success:
    it ends EXIT_RESUME_LATER (run it again once that run has stopped). In an array task (`in_array`) it first
    waits for such a lease to be released or go stale. After the time-limit warning the task requeues itself,
    unless this allocation saved no progress: then the line fails, saying why (requeued, it would only do the
    same again)."""
    from lth.cluster import REQUEUED, requeue_self, run_status, saved_position

    slots = device_slots(parallel) if len(todo) > 1 else [None]
    if len({gpu for gpu in slots if gpu is not None}) > 1:
        print(f"{parallel} line(s) at once on each of the GPUs {', '.join(sorted(set(slots)))}", flush=True)
    running: dict[subprocess.Popen, tuple[ConfigLine, str | None]] = {}
    failures = 0
    held_elsewhere = 0
    stopped = False
    signals: list[int] = []
    started: dict[int, tuple[list[Path], list[tuple]]] = {}  # line number: its directories and where they were

    def forward(signum, frame) -> None:
        nonlocal stopped
        stopped = True
        signals.append(signum)
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in STOP_SIGNALS}
    queue = list(todo)
    free = list(slots)
    bar = tqdm(total=len(todo), desc=f"sweep {config.name}", unit="run", disable=len(todo) < 2)
    try:
        while queue or running:
            while queue and free and not stopped:
                line, directory = queue.pop(0)
                directories = directory if isinstance(directory, list) else [directory]
                state = run_status(directories[0])
                if state.startswith("running") and in_array:
                    state = wait_for_lease(line, directories[0])
                if state.startswith("running") or _finished(directory):
                    if not _finished(directory):
                        held_elsewhere += 1
                        print(
                            f"line {line.number}: {state.replace('running', 'running elsewhere')}; not run here",
                            flush=True,
                        )
                    else:
                        print(f"line {line.number}: finished; skipping", flush=True)
                    bar.update(1)
                    continue
                gpu = free.pop(0)
                print(f"line {line.number}: {script.name} {line.text}" + (f" (GPU {gpu})" if gpu else ""), flush=True)
                started[line.number] = (directories, [saved_position(d) for d in directories])
                for d in directories:
                    with contextlib.suppress(OSError):
                        (d / REQUEUED).unlink(missing_ok=True)  # this task is the one resuming it
                running[start_line(script, line, line_environment(len(slots), gpu))] = (line, gpu)
            if stopped and not running:
                break
            if not running:
                continue
            for child in [c for c in running if c.poll() is not None]:
                line, gpu = running.pop(child)
                free.append(gpu)
                bar.update(1)
                if child.returncode == EXIT_RESUME_LATER:
                    stopped = True
                    print(f"line {line.number} stopped with its progress saved; resume later", flush=True)
                elif child.returncode != 0:
                    failures += 1
                    started.pop(line.number, None)
                    print(f"line {line.number} failed with exit status {child.returncode}", file=sys.stderr)
                else:
                    started.pop(line.number, None)
            time.sleep(0.2)
    finally:
        bar.close()
        for sig, handler in previous.items():
            # A time-limit warning after the lines ended finds nothing left to save: it must not kill the sweep
            # as it exits (SLURM would report the task failed, by signal).
            ignore = sig == signal.SIGUSR1 and handler == signal.SIG_DFL
            signal.signal(sig, signal.SIG_IGN if ignore else handler)
    if stopped:
        print(f"sweep stopped on request; {len(queue)} line(s) not started; run it again to resume", flush=True)
        if signal.SIGUSR1 in signals:  # the cluster's time-limit warning: come back in a new allocation
            stuck = [
                number
                for number, (directories, before) in started.items()
                if [saved_position(d) for d in directories] == before
            ]
            if stuck:
                print(
                    f"error: line {', '.join(map(str, stuck))} saved no progress in this allocation before the "
                    "time-limit warning; not requeued (it would only do the same again): give the job a longer "
                    "time limit against its warning (SLURM --time and --signal, LSF -W and -wt)",
                    file=sys.stderr,
                    flush=True,
                )
                return 1
            requeue_self([d for directories, _ in started.values() for d in directories])
        return EXIT_RESUME_LATER
    if failures:
        return 1
    if held_elsewhere:
        print(
            f"{held_elsewhere} line(s) held by a live run elsewhere were not run here; run the sweep again "
            "once they have stopped",
            flush=True,
        )
        return EXIT_RESUME_LATER
    return 0


def sweep(
    config: str | os.PathLike,
    script: str | os.PathLike,
    dry_run: bool = False,
    submit_to: str | None = None,
    yes: bool = False,
    parallel: int = 1,
    batch: bool = False,
    max_batch: int | None = None,
    submit_options: str = "",
    max_parallel: int = 8,
) -> int:
    """Run the config file's unfinished lines (or, inside an array job, the line of its index)."""
    from lth.cluster import submit

    config, script = Path(config), Path(script)
    lines = read_config(config)
    entry = load_script(script)
    directories = check_lines(entry, script, config, lines)
    todo = list(zip(lines, directories, strict=True))
    if batch:
        todo = batch_units(entry, script.resolve(), lines, directories, max_batch)
        print(
            f"{len(lines)} lines in {len(todo)} batch(es); on a CPU batching is slower than one run after another "
            "(benchmarks/batched.py): it pays on a GPU",
            flush=True,
        )
    if submit_to:
        submit(
            submit_to,
            config.resolve(),
            script.resolve(),
            len(todo),
            yes,
            batch=batch,
            max_batch=max_batch,
            options=submit_options,
            max_parallel=max_parallel,
        )
        return 0
    index = array_index()
    if index is not None:
        units = [line for line, _ in todo]
        todo = [todo[units.index(select_line(units, index, config))]]
    pending = [(line, d) for line, d in todo if not _finished(d)]
    for line, d in todo:
        if _finished(d):
            print(f"line {line.number}: finished earlier; skipping")
    if dry_run:
        for line, _ in pending:
            print(f"would run line {line.number}: {script.name} {line.text}")
        return 0
    return run_lines(script, pending, config, parallel, in_array=index is not None)
