"""Crash-safe files: atomic writes, checked checkpoint loads, and a per-directory lock.

Every file the toolkit writes goes through `atomic_write_*`: the bytes land in a temporary file in
the same directory, are flushed to disk, then renamed over the target, so a kill at any moment
leaves either the old file or the new one, never half of either.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import pickle
import socket
import tempfile
import threading
import time
import uuid
import warnings
import zipfile
from dataclasses import dataclass
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


class CheckpointLoadError(UserError):
    """A torch file that `load_checkpoint` refused; `reason` is missing, unsafe, not-torch or corrupt."""

    def __init__(self, message: str, reason: str):
        super().__init__(message)
        self.reason = reason


def _numpy_scalar_globals() -> list:
    """NumPy scalars (e.g. an accuracy kept as numpy.float64 in an earlier study's history) rebuild from a
    dtype code and raw bytes, running nothing: allowed on load, under numpy 1's and 2's module names.
    NumPy arrays, object dtypes and every other class stay refused."""
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy comes with the toolkit's dependencies
        return []
    core = getattr(np, "_core", None) or np.core
    allowed: list = [(core.multiarray.scalar, "numpy.core.multiarray.scalar"), core.multiarray.scalar, np.dtype]
    dtypes = getattr(np, "dtypes", None)
    for name in ("Float64DType", "Float32DType", "Float16DType", "Int64DType", "Int32DType", "BoolDType"):
        if dtypes is not None and hasattr(dtypes, name):
            allowed.append(getattr(dtypes, name))
    return allowed


_SAFE_EXTRA_GLOBALS = _numpy_scalar_globals()
_ZIP_MAGIC = b"PK\x03\x04"
_LEGACY_MAGIC = pickle.dumps(torch.serialization.MAGIC_NUMBER, protocol=2)[2:-1]  # LONG1 opcode + its bytes
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING", "SHORT_BINSTRING"}


def _allowed_global_names() -> set[str]:
    names: set[str] = set()
    try:
        from torch import _weights_only_unpickler as unpickler

        names |= set(unpickler._get_allowed_globals()) | set(unpickler._get_user_allowed_globals())
    except (ImportError, AttributeError):  # pragma: no cover - private torch API moved
        pass
    for entry in _SAFE_EXTRA_GLOBALS:
        names.add(entry[1] if isinstance(entry, tuple) else f"{entry.__module__}.{entry.__qualname__}")
    return names


def _globals_in_pickle(data: bytes, limit: int = 4) -> list[str]:
    """Every class or function the pickle(s) in `data` name, read statically (nothing is imported or run).
    A name pushed in a way this reading cannot follow is reported as unresolved."""
    import pickletools

    found: list[str] = []
    stream = io.BytesIO(data)
    for _ in range(limit):  # a legacy torch file is several pickles in a row
        if stream.tell() >= len(data):
            break
        strings: list[str] = []
        memo: dict[int, object] = {}
        try:
            for opcode, arg, _pos in pickletools.genops(stream):
                name = opcode.name
                if name in _STRING_OPS:
                    strings.append(arg if isinstance(arg, str) else repr(arg))
                elif name in ("BINPUT", "LONG_BINPUT", "PUT"):
                    memo[int(arg)] = strings[-1] if strings else None
                elif name == "MEMOIZE":
                    memo[len(memo)] = strings[-1] if strings else None
                elif name in ("BINGET", "LONG_BINGET", "GET"):
                    value = memo.get(int(arg))
                    if isinstance(value, str):
                        strings.append(value)
                elif name in ("GLOBAL", "INST"):
                    found.append(str(arg).replace(" ", "."))
                elif name == "STACK_GLOBAL":
                    found.append(".".join(strings[-2:]) if len(strings) >= 2 else "<unresolved STACK_GLOBAL>")
        except Exception:  # a damaged pickle: what was read so far still counts
            break
    return found


def _unsafe_globals(path: Path) -> list[str]:
    """The globals in a torch file (or plain pickle) that loading with weights_only=True refuses."""
    try:
        head = path.read_bytes()
    except OSError:
        return []
    pickles: list[bytes] = []
    if head.startswith(_ZIP_MAGIC):
        try:
            with zipfile.ZipFile(io.BytesIO(head)) as archive:
                pickles = [archive.read(n) for n in archive.namelist() if n.endswith(".pkl")]
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            pickles = []
    else:
        pickles = [head]
    allowed = _allowed_global_names()
    unsafe: list[str] = []
    for data in pickles:
        for name in _globals_in_pickle(data):
            if name not in allowed and name not in unsafe:
                unsafe.append(name)
    return unsafe


def _looks_like_torch(path: Path) -> bool:
    try:
        with path.open("rb") as handle:
            head = handle.read(64)
    except OSError:
        return False
    return head.startswith(_ZIP_MAGIC) or head[2 : 2 + len(_LEGACY_MAGIC)] == _LEGACY_MAGIC


def load_checkpoint(path: str | os.PathLike, what: str = "checkpoint", user_file: bool = False) -> Any:
    """Load a torch file whole, reading only tensors, numbers, strings and containers (weights_only=True), or
    fail with one line naming it: missing, holding objects that would run code when unpickled, not a torch
    file, or truncated/corrupt.

    `user_file`: the user passed this file in (a ticket, a --checkpoint); a damaged one is reported without
    the advice to delete it that suits the toolkit's own run state.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointLoadError(f"{what} {path} does not exist", "missing")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols of files it then refuses
            with torch.serialization.safe_globals(_SAFE_EXTRA_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many types for a damaged archive
        failure = error
    unsafe = _unsafe_globals(path)
    message = str(failure)
    if not unsafe and isinstance(failure, pickle.UnpicklingError) and "GLOBAL" in message:
        unsafe = ["a class or function it does not allow"]
    if unsafe:
        raise CheckpointLoadError(
            f"{what} {path} holds pickled objects that would run code when loaded ({', '.join(unsafe[:3])}); "
            "it was not loaded (only tensors, numbers, strings, lists and dicts are read)",
            "unsafe",
        )
    if user_file and not _looks_like_torch(path):
        raise CheckpointLoadError(f"{what} {path} is not a torch file (not written by torch.save)", "not-torch")
    if user_file:
        raise CheckpointLoadError(
            f"{what} {path} is corrupt or truncated ({type(failure).__name__}); it was not loaded: check the file "
            "or copy it again",
            "corrupt",
        )
    raise CheckpointLoadError(
        f"{what} {path} is corrupt or truncated ({type(failure).__name__}); delete it to start that step again",
        "corrupt",
    )


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
            raise RunLockedError(
                f"run directory {self.path.parent} is in use by {holder.describe()}; wait for it, or "
                f"delete {self.path} if that process is gone (a lease without heartbeat for "
                f"{self.timeout_for(holder):.0f} s is taken over by itself)"
            )
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
