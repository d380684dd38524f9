"""Crash-safe files: atomic writes, checked checkpoint loads, and a per-directory lock.

Every file the toolkit writes goes through `atomic_write_*`: the bytes land in a temporary file in
the same directory, are flushed to disk, then renamed over the target, so a kill at any moment
leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import errno
import io
import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from lth.errors import RunLockedError, UserError


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def atomic_savefig(figure, path: str | os.PathLike, **kwargs) -> None:
    """Save a matplotlib figure atomically (format taken from the target's suffix)."""
    buffer = io.BytesIO()
    kwargs.setdefault("format", Path(path).suffix.lstrip(".") or "png")
    figure.savefig(buffer, **kwargs)
    atomic_write_bytes(path, buffer.getvalue())


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint") -> Any:
    """Load a torch file whole or fail with one line naming it (truncated, corrupt, not torch)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:  # torch raises many types for a damaged archive
        raise UserError(
            f"{what} {path} is corrupt or truncated ({type(error).__name__}); delete it to start that step again"
        ) from None


def read_json(path: str | os.PathLike, what: str = "file") -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError) as error:
        raise UserError(f"{what} {path} cannot be read as JSON ({error})") from None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


class DirectoryLock:
    """An exclusive lock on a run directory, held by one process at a time.

    The lock file records host and pid. A lock left by a dead process on this host is stale and
    is taken over; a live holder makes the second process stop with a line naming it.
    """

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / ".lock"
        self.held = False

    def _holder(self) -> tuple[str, int] | None:
        try:
            host, pid = self.path.read_text().split()
            return host, int(pid)
        except (OSError, ValueError):
            return None

    @staticmethod
    def _alive(holder: tuple[str, int]) -> bool:
        """A holder on another host cannot be checked and counts as live."""
        host, pid = holder
        return host != socket.gethostname() or _pid_alive(pid)

    def live_holder(self) -> tuple[str, int] | None:
        """(host, pid) of the process holding the lock; None when the lock is free, unreadable, or left by a
        process on this host that is gone."""
        holder = self._holder()
        return holder if holder is not None and self._alive(holder) else None

    def acquire(self) -> DirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        me = f"{socket.gethostname()} {os.getpid()}"
        for _ in range(3):
            try:
                fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                holder = self._holder()
                if holder is None:
                    # Being written right now, or a crash between create and write: treat as stale
                    # only if it stays unreadable.
                    time.sleep(0.2)
                    if self._holder() is None:
                        self.path.unlink(missing_ok=True)
                    continue
                if not self._alive(holder):
                    self.path.unlink(missing_ok=True)  # stale: its process is gone
                    continue
                host, pid = holder
                raise RunLockedError(
                    f"run directory {self.path.parent} is in use by pid {pid} on host {host}; "
                    f"wait for it, or delete {self.path} if that process is gone"
                ) from None
            with os.fdopen(fd, "w") as handle:
                handle.write(me)
            self.held = True
            return self
        raise RunLockedError(f"could not lock run directory {self.path.parent}")

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
