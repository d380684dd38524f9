"""A mask on disk without pickle: one bit per weight in a safetensors file, with a JSON header.

Each layer is stored as its survival bits packed eight to a byte (`uint8`, row-major over the weight's
flattened entries); the safetensors metadata carries the format name, each layer's shape and whatever header
the caller adds (round, weights remaining, the run it came from). A LeNet-300-100 mask takes 33 kB this way
against 266 kB as bool tensors in a pickle, and reading it runs no code.

A file may also carry other tensors beside the mask (a ticket's weights that cannot be loaded again from its base
model, lth/tickets.py): their names start with TENSOR_PREFIX, so they never clash with a layer's name.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save as save_numpy

from lth.atomic import atomic_write_bytes
from lth.errors import UserError
from lth.masks import Mask

FORMAT = "lth-mask/1"
TENSOR_PREFIX = "tensor:"


def pack(mask: Mask) -> dict[str, np.ndarray]:
    return {name: np.packbits(bits.detach().cpu().numpy().reshape(-1)) for name, bits in mask.layers.items()}


def unpack(packed: dict[str, np.ndarray], shapes: dict[str, list[int]]) -> Mask:
    layers = {}
    for name, shape in shapes.items():
        count = int(np.prod(shape)) if shape else 1
        bits = np.unpackbits(packed[name], count=count).astype(bool).reshape(shape)
        layers[name] = torch.from_numpy(bits)
    return Mask(layers)


def mask_to_bytes(
    mask: Mask, header: dict[str, Any] | None = None, tensors: dict[str, torch.Tensor] | None = None
) -> bytes:
    shapes = {name: list(bits.shape) for name, bits in mask.layers.items()}
    metadata = {"format": FORMAT, "layers": json.dumps(list(shapes)), "shapes": json.dumps(shapes)}
    metadata["header"] = json.dumps(header or {}, sort_keys=True, default=str)
    arrays = pack(mask)
    for name, value in (tensors or {}).items():
        arrays[TENSOR_PREFIX + name] = value.detach().cpu().contiguous().numpy()
    return _canonical_header(save_numpy(arrays, metadata=metadata))


def _canonical_header(data: bytes) -> bytes:
    """The same file with its JSON header's keys sorted: safetensors writes its metadata map in hash order, which
    changes from one write to the next, so the same mask would give other bytes each time."""
    length = int.from_bytes(data[:8], "little")
    header = json.dumps(json.loads(data[8 : 8 + length]), sort_keys=True, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the tensors' data stays 8-byte aligned, as safetensors pads it
    return len(header).to_bytes(8, "little") + header + data[8 + length :]


def save_mask(
    path: str | os.PathLike,
    mask: Mask,
    header: dict[str, Any] | None = None,
    tensors: dict[str, torch.Tensor] | None = None,
) -> None:
    """Write `mask` (and `header`, any JSON, and `tensors`, if any) to `path` atomically."""
    atomic_write_bytes(path, mask_to_bytes(mask, header, tensors))


def load_mask(path: str | os.PathLike) -> tuple[Mask, dict[str, Any]]:
    """The mask and header of a file written by `save_mask`; a damaged or foreign file is one clear error."""
    mask, header, _ = load_mask_file(path)
    return mask, header


def load_mask_file(path: str | os.PathLike) -> tuple[Mask, dict[str, Any], dict[str, torch.Tensor]]:
    """The mask, header and other tensors of a file written by `save_mask`."""
    path = Path(path)
    try:
        data = path.read_bytes()
        packed = load_numpy(data)
        metadata = _metadata(data)
        if metadata.get("format") != FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}, not {FORMAT}")
        shapes = json.loads(metadata["shapes"])
        order = json.loads(metadata["layers"])
        mask = unpack(packed, {name: shapes[name] for name in order})
        tensors = {
            name[len(TENSOR_PREFIX) :]: torch.from_numpy(value.copy())
            for name, value in packed.items()
            if name.startswith(TENSOR_PREFIX)
        }
        return mask, json.loads(metadata.get("header") or "{}"), tensors
    except OSError as error:
        raise UserError(f"mask file {path} cannot be read ({error.strerror})") from None
    except (SafetensorError, ValueError, KeyError, TypeError) as error:
        raise UserError(f"mask file {path} is not a readable mask ({error})") from None


def is_safetensors(path: str | os.PathLike) -> bool:
    """Whether a file starts like a safetensors file (an 8-byte header length, then a JSON object)."""
    try:
        with open(path, "rb") as handle:
            start = handle.read(9)
    except OSError:
        return False
    return len(start) == 9 and start[8:9] == b"{" and int.from_bytes(start[:8], "little") < (1 << 30)


def _metadata(data: bytes) -> dict[str, str]:
    """The safetensors header's `__metadata__` (the numpy loader returns tensors only)."""
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length]).get("__metadata__") or {}
