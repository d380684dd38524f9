"""Shared test fixtures: the real data root and loading a family folder's modules."""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

# One intra-op thread per process, set before torch is imported: pytest-xdist runs one worker per core, and
# the scripts the tests start as subprocesses inherit the setting (an explicit value is kept).
os.environ.setdefault("OMP_NUM_THREADS", "1")
# codecarbon sets itself up in about 2 s per process; tests that measure energy turn it on themselves.
os.environ.setdefault("LTH_ENERGY", "off")
# Asking whether CUDA is available (test_cuda.py does, at collection) must not start the CUDA driver on a GPU host:
# the kill and stop tests fork their runs, and a fork of a process with CUDA started cannot use CUDA at all.
os.environ.setdefault("PYTORCH_NVML_BASED_CUDA_CHECK", "1")

import numpy as np
import pytest
import torch
import tqdm.std

from lth import families

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LTH_DATA_DIR") or REPO.parent / "shared" / "data")

# Test models are tiny: extra intra-op threads only spin against each other (and against other
# processes on a 2-core machine), so one thread is both faster and steadier.
torch.set_num_threads(1)

# No progress bar takes a lock shared across fork: tests fork processes and SIGKILL them, and a lock held by a
# killed process would stay taken for every other (the kill harness also gives each life a lock of its own).
tqdm.std.TqdmDefaultWriteLock.mp_lock = None
tqdm.std.tqdm.monitor_interval = 0  # nor does a monitor thread hold tqdm's lock at the moment a test forks


@pytest.fixture(autouse=True)
def outside_any_cluster_job(monkeypatch):
    """Tests run as outside a scheduler's job, whatever machine runs them: an array index in the environment
    would make `lth sweep` run one line, and a lease timeout would change the lease tests."""
    for name in list(os.environ):
        if name.startswith(("LSB_", "SLURM_")) or name == "LTH_LEASE_TIMEOUT":
            monkeypatch.delenv(name)


def family_module(folder: str, name: str):
    """`<folder>/<name>.py` of this repository, as a module of its family's package."""
    return families.family_module(REPO / folder, name)


def require_data(*relative: str) -> Path:
    """The real data root, or skip the test saying what is missing."""
    for item in relative:
        if not (DATA_ROOT / item).exists():
            pytest.skip(f"real data not available: {DATA_ROOT / item} is missing (set LTH_DATA_DIR)")
    return DATA_ROOT


def tiny_mnist(root, source) -> None:
    """A small MNIST data root (5,600 train / 500 test real images) so each life starts fast."""
    from lth.datasets import MNIST_FILES, _find_mnist_file, _read_idx

    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    sizes = {"train_x": 5600, "train_y": 5600, "test_x": 500, "test_y": 500}
    for key, stem in MNIST_FILES.items():
        array = _read_idx(_find_mnist_file(source / "MNIST" / "raw", stem))[: sizes[key]]
        header = struct.pack(">HBB", 0, 8, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
        (raw / f"{stem}.gz").write_bytes(gzip.compress(header + np.ascontiguousarray(array).tobytes(), compresslevel=1))
