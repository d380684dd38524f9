"""What produced a run: code version, library versions, device and host, one line per piece of work.

`provenance.jsonl` sits beside `settings.json`; a run resumed on another node (or after an upgrade) appends a
line, so every piece of its results can be traced. None of it is part of the run's identity.
"""

from __future__ import annotations

import functools
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[1]


@functools.cache
def code_version() -> dict:
    """The git commit of the toolkit and whether its tree had uncommitted changes (None outside a checkout)."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", "-C", str(REPOSITORY), *args], capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip()

    commit = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if commit else None
    return {"git_commit": commit, "git_dirty": bool(status) if status is not None else None}


def library_versions() -> dict:
    import torch

    versions = {"python": sys.version.split()[0], "torch": torch.__version__}
    for name in ("transformers", "codecarbon"):
        module = sys.modules.get(name)
        if module is not None:
            versions[name] = getattr(module, "__version__", None)
    return versions


def device_name(device: str) -> str:
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:  # Linux names its CPU here; platform.processor() is often empty
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def job_name() -> str | None:
    """The cluster job as its logs name it: SLURM's %A_%a (array job, task), LSF's %J_%I; a plain job's id."""
    from lth.cluster import array_task

    task = array_task()
    return task[1] if task else None


def record(run_path: str | os.PathLike, device: str) -> dict:
    """Append this piece of work's provenance to the run directory's provenance.jsonl."""
    import torch

    entry = {
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": str(device),
        "device_name": device_name(device),
        "threads": torch.get_num_threads(),
        **code_version(),
        **library_versions(),
        "job": job_name(),
    }
    with open(Path(run_path) / "provenance.jsonl", "a") as handle:  # appended whole in one write
        handle.write(json.dumps(entry) + "\n")
    return entry
