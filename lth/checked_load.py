"""Checked loading: torch checkpoints loaded without running pickled code, and JSON files, each refused in one
line naming the file and what is wrong with it (missing, unsafe, not a torch file, corrupt)."""

from __future__ import annotations

import io
import json
import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from lth.errors import UserError


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
