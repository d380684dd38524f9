"""Shared test fixtures: the real data root and loading a family folder's modules."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from lth.sweep import _script_folder_on_path

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get("LTH_DATA_DIR") or REPO.parent / "shared" / "data")

# Test models are tiny: extra intra-op threads only spin against each other (and against other
# processes on a 2-core machine), so one thread is both faster and steadier.
torch.set_num_threads(1)


def family_module(folder: str, name: str):
    """Import `<folder>/<name>.py` the way its entry script sees it (folder first on sys.path)."""
    import importlib.util

    path = REPO / folder / f"{name}.py"
    with _script_folder_on_path(path.parent):
        spec = importlib.util.spec_from_file_location(f"{folder.replace('-', '_')}_{name}", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    return module


def require_data(*relative: str) -> Path:
    """The real data root, or skip the test saying what is missing."""
    for item in relative:
        if not (DATA_ROOT / item).exists():
            pytest.skip(f"real data not available: {DATA_ROOT / item} is missing (set LTH_DATA_DIR)")
    return DATA_ROOT
