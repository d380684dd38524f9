"""Leases on run directories: one process at a time works in a run, renewing its lease by a heartbeat; a lease not
renewed within its timeout is stale whatever host wrote it. Imports no torch (status and sweeps read leases)."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from lth.atomic import atomic_write_text
from lth.errors import RunLockedError, UserError


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


DEFAULT_LEASE_TIMEOUT = 120.0  # seconds without a heartbeat after which a lease is stale, whatever host wrote it


def lease_timeout() -> float:
    """$LTH_LEASE_TIMEOUT seconds (default 120): well under the minutes a cluster takes to requeue a job."""
    text = os.environ.get("LTH_LEASE_TIMEOUT")
    if not text:
        return DEFAULT_LEASE_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        raise UserError(f"$LTH_LEASE_TIMEOUT={text!r}: expected seconds, e.g. 120") from None
    if not value > 0:
        raise UserError(f"$LTH_LEASE_TIMEOUT={text!r}: expected a positive number of seconds")
    return value


def heartbeat_interval(timeout: float) -> float:
    """How often a holder renews its lease: six beats per timeout, so a few slow beats do not make it stale."""
    return max(0.05, timeout / 6)


@dataclass(frozen=True)
class Holder:
    host: str
    pid: int
    heartbeat: float  # time.time() of the holder's last renewal
    token: str  # unique per acquisition: a renewal checks the lease is still its own
    timeout: float | None = None  # the holder's own lease timeout and renewal interval (None: a record without them)
    interval: float | None = None

    def describe(self) -> str:
        age = time.time() - self.heartbeat
        return f"pid {self.pid} on host {self.host} (last heartbeat {age:.0f} s ago)"


class DirectoryLock:
    """A lease on a run directory, held by one process at a time, renewed by a heartbeat thread.

    The lease file records host, pid and the time of the last heartbeat. It is stale when its heartbeat is
    older than the lease timeout (whatever host wrote it: a node that failed or a job killed at its time limit
    renews nothing), or at once when its process is gone on this host. A stale lease is taken over with one
    printed line naming the old holder. Creating the lease file is the only way in: its record is written aside
    and hard-linked into place, so no process ever sees it empty or half written. A stale or unreadable file is
    removed only after checking it is still the one found, so two racing processes leave one writer.
    """

    def __init__(self, directory: str | os.PathLike, timeout: float | None = None):
        self.path = Path(directory) / ".lock"
        self.timeout = timeout if timeout is not None else lease_timeout()
        self.held = False
        self.lost = False  # set by the heartbeat if another process took the lease over
        self._token = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- reading --------------------------------------------------------------------------------
    def _read(self) -> tuple[Holder | None, str | None]:
        """(holder, raw text); holder None when the file is missing or not (yet) readable."""
        try:
            text = self.path.read_text(errors="replace")  # not a lease's record at all: unreadable, not a crash
        except OSError:
            return None, None
        try:
            data = json.loads(text)
            timeout, interval = data.get("timeout"), data.get("interval")
            return Holder(
                data["host"],
                int(data["pid"]),
                float(data["heartbeat"]),
                data["token"],
                float(timeout) if timeout is not None else None,
                float(interval) if interval is not None else None,
            ), text
        except (ValueError, KeyError, TypeError):
            pass
        try:  # a lock of the earlier format, "host pid": its file time is its heartbeat
            host, pid = text.split()
            return Holder(host, int(pid), self.path.stat().st_mtime, ""), text
        except (OSError, ValueError):
            return None, text

    def timeout_for(self, holder: Holder) -> float:
        """The silence after which `holder`'s lease is stale: the holder's own timeout where its record says (it
        renews at its own pace, six times per timeout, whatever timeout the process judging it was given), else
        this process's."""
        return holder.timeout if holder.timeout else self.timeout

    def _stale(self, holder: Holder) -> bool:
        """On this host the holder's process is checked directly (alive: live, whatever its heartbeat, e.g. a
        run started before leases had heartbeats); on another host only its heartbeat tells."""
        if holder.host == socket.gethostname():
            return not _pid_alive(holder.pid)
        return time.time() - holder.heartbeat > self.timeout_for(holder)

    def live_holder(self) -> Holder | None:
        """The process holding a live lease; None when the lease is free, unreadable or stale."""
        holder, _ = self._read()
        return holder if holder is not None and not self._stale(holder) else None

    def in_use(self, holder: Holder) -> RunLockedError:
        """The refusal of a start while `holder`'s lease is live."""
        return RunLockedError(
            f"run directory {self.path.parent} is in use by {holder.describe()}; wait for it, or "
            f"delete {self.path} if that process is gone (a lease without heartbeat for "
            f"{self.timeout_for(holder):.0f} s is taken over by itself)"
        )

    def stale_holder(self) -> Holder | None:
        """The holder of a lease that has gone stale (its run was interrupted), if any."""
        holder, _ = self._read()
        return holder if holder is not None and self._stale(holder) else None

    # --- taking and renewing ------------------------------------------------------------------------
    def _record(self) -> str:
        return json.dumps(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "heartbeat": time.time(),
                "token": self._token,
                "timeout": self.timeout,
                "interval": heartbeat_interval(self.timeout),
            }
        )

    def _take_over(self, holder: Holder | None, text: str) -> None:
        """Remove a stale (or unreadable) lease file, but only if it is still the one found."""
        aside = self.path.with_name(f".lock.stale.{self._token}")
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return  # someone else removed it first
        if aside.read_text(errors="replace") != text:  # renewed or replaced meanwhile: put it back untouched
            try:
                os.link(aside, self.path)
            except FileExistsError:
                pass
            except OSError:  # no hard links here: move it back unless a new lease appeared meanwhile
                if not self.path.exists():
                    os.rename(aside, self.path)
            aside.unlink(missing_ok=True)
            return
        aside.unlink(missing_ok=True)
        if holder is not None:
            why = f"the lease of {holder.describe()} is stale"
        else:
            why = f"its lease file was unreadable ({text[:80]!r}{'...' if len(text) > 80 else ''})"
        print(f"taking over run directory {self.path.parent}: {why}", flush=True)

    def _create(self) -> bool:
        """Create the lease file holding this process's record; False if a lease file exists. The record is written
        to a draft of this attempt's own (named by its token) and hard-linked into place, so the file appears whole.
        Where the file system has no hard links: an exclusive create, then the write (another process waits for
        the record, `acquire`)."""
        draft = self.path.with_name(f".lock.new.{self._token}")
        try:
            with open(draft, "x") as handle:
                handle.write(self._record())
            os.link(draft, self.path)
            return True
        except FileExistsError:
            return False
        except OSError:
            return self._create_exclusively()
        finally:
            with contextlib.suppress(OSError):  # (a read-only directory fails even to unlink a missing file)
                draft.unlink(missing_ok=True)

    def _create_exclusively(self) -> bool:
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        try:
            with os.fdopen(fd, "w") as handle:
                handle.write(self._record())
        except OSError:  # a full disk: leave no empty lease behind
            self.path.unlink(missing_ok=True)
            raise
        return True

    def acquire(self) -> DirectoryLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._token = uuid.uuid4().hex
        for _ in range(5):
            if self._create():
                break
            holder, text = self._read()
            if text is None:
                continue  # removed since: try again
            if holder is not None and holder.token == self._token:
                break  # ours after all (NFS can report a link it made, then retransmitted, as existing)
            if holder is None:
                # Unreadable: a crash mid-write without hard links, or a file not written by a lease. Taken over
                # only if it stays the same while a writer would have finished.
                time.sleep(0.2)
                if self._read()[1] == text:
                    self._take_over(None, text)
                continue
            if self._stale(holder):
                self._take_over(holder, text)
                continue
            raise self.in_use(holder)
        else:
            raise RunLockedError(f"could not lock run directory {self.path.parent}")
        self.held, self.lost = True, False
        self._start_heartbeat()
        return self

    def _start_heartbeat(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._beat, name=f"lease {self.path.parent.name}", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        interval = heartbeat_interval(self.timeout)
        while not self._stop.wait(interval):
            if not self.renew():
                from lth.stopping import request_stop

                request_stop("lease lost")  # the loop stops at its next step; its writes are refused
                return

    def renew(self) -> bool:
        """Refresh the heartbeat; False (and `lost`) if the lease is no longer this process's."""
        holder, _ = self._read()
        if holder is None or holder.token != self._token:
            self.lost = True
            return False
        with contextlib.suppress(OSError):  # a full or flaky disk: the next beat tries again
            atomic_write_text(self.path, self._record())
        return True

    def release(self) -> None:
        if not self.held:
            return
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        holder, _ = self._read()
        if holder is not None and holder.token == self._token:
            self.path.unlink(missing_ok=True)
        self.held = False

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()
