"""Each family folder is a package of its own: its modules import each other relatively, so two families'
`settings.py` (or `models.py`, `data.py`, ...) never meet in one process, and no importer edits sys.path or
sys.modules to reach them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lth.errors import UserError
from lth.families import FAMILIES, family_module, family_package

REPO = Path(__file__).resolve().parents[1]


def test_every_family_loads_beside_the_others_without_a_bare_module_name():
    settings = {name: family_module(family.path, "settings") for name, family in FAMILIES.items()}
    assert len({id(module) for module in settings.values()}) == len(FAMILIES)
    assert family_module(REPO / "CNN", "settings").ARCHS == {"Conv-2": 1, "Conv-4": 2, "Conv-6": 3}
    assert family_module(REPO / "VGG", "settings").PRUNE_RATE == 0.2
    assert not {"settings", "models", "model", "data", "trainer", "pruning"} & set(sys.modules)
    # A file of the folder names the same package as the folder itself.
    assert family_package(REPO / "CNN" / "main.py") == family_package(REPO / "CNN") == "lth_family_cnn"


def test_a_second_folder_of_the_same_name_is_refused_in_one_line(tmp_path):
    (tmp_path / "CNN").mkdir()
    family_package(REPO / "CNN")
    with pytest.raises(UserError, match="another folder of that name"):
        family_package(tmp_path / "CNN")


def test_an_image_model_builds_from_any_working_directory(tmp_path):
    """`lth export` and `lth cost` build a family's model by its models.py; CNN's imports its settings."""
    code = (
        "from lth.export import build_image_model; "
        "print(type(build_image_model('Conv-2', ['Conv-2', 0.0])).__name__, "
        "type(build_image_model('VGG-19', [0.125])).__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["ConvNet", "VGG"]


@pytest.mark.parametrize("script", ["CNN/main.py", "VGG/train.py", "Lenet-300-100/plot_results.py", "BERT/plotter.py"])
def test_an_entry_script_runs_as_a_script_from_anywhere(tmp_path, script):
    done = subprocess.run(
        [sys.executable, str(REPO / script), "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: ")
