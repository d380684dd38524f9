"""Crash-safe files, by job: atomic writes (lth.atomic), checked loads (lth.checked_load) and the run directory's
lease (lth.lease). Kept for code that imports them from here."""

from __future__ import annotations

from lth.atomic import atomic_savefig, atomic_torch_save, atomic_write_bytes, atomic_write_json, atomic_write_text
from lth.checked_load import CheckpointLoadError, load_checkpoint, read_json
from lth.lease import DEFAULT_LEASE_TIMEOUT, DirectoryLock, Holder, heartbeat_interval, lease_timeout

__all__ = [
    "DEFAULT_LEASE_TIMEOUT",
    "CheckpointLoadError",
    "DirectoryLock",
    "Holder",
    "atomic_savefig",
    "atomic_torch_save",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "heartbeat_interval",
    "lease_timeout",
    "load_checkpoint",
    "read_json",
]
