"""The model families of this repository, each registered once here.

A family is a top-level folder holding `settings.py` (its settings dataclasses), `data.py`, `models.py`
(or `model.py`), `pruning.py`, `trainer.py`, `plotter.py`, entry scripts, config files, `run_experiments.sh`,
`requirements.txt` and `results/`. A family folder is a package of its own (`family_package`): its modules import
each other relatively (`from .settings import ...`), so two families' `settings.py` never meet, and an entry
script run as `python main.py` makes its folder that package first. Registering it here is all the `lth` commands
need: `lth sweep` runs any entry script's config lines, `lth status` and `lth summarize` read
run directories and their identity columns, and `lth env --family NAME` checks what the family needs.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import itertools
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lth.errors import UserError, report_and_exit
from lth.lease import DirectoryLock

REPOSITORY = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Family:
    folder: str
    description: str
    entry_scripts: tuple[str, ...]  # the first is what `lth sweep` runs a config of this folder with by default
    needs: tuple[str, ...]  # datasets and models `lth env --family` checks (see lth.environment.NEEDS)

    @property
    def path(self) -> Path:
        return REPOSITORY / self.folder


FAMILIES: dict[str, Family] = {
    family.folder: family
    for family in (
        Family("Lenet-300-100", "LeNet-300-100 on MNIST", ("main.py",), ("mnist",)),
        Family("CNN", "Conv-2/4/6 on CIFAR-10", ("main.py",), ("cifar10",)),
        Family("VGG", "VGG-19 on CIFAR-10, late rewinding", ("main.py", "train.py"), ("cifar10",)),
        Family(
            "BERT",
            "pre-trained BERT on GLUE SST-2 and QQP",
            ("lottery_ticket_bert.py", "few_shot_training.py"),
            ("sst2", "qqp", "bert"),
        ),
    )
}


PACKAGE_PREFIX = "lth_family_"


def family_package(path: str | Path) -> str:
    """The folder holding `path` (a family folder, or a file in one) as an importable package, `lth_family_cnn` for
    CNN/: registered once per process, so every importer (an entry script run as `python main.py`, `lth sweep`, `lth
    export`, the tests) gets the same modules. An entry script sets its `__package__` to this (PEP 366)."""
    folder = Path(path).resolve()
    if folder.is_file():
        folder = folder.parent
    name = PACKAGE_PREFIX + re.sub(r"\W+", "_", folder.name).lower()
    package = sys.modules.get(name)
    if package is None:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(folder)]
        package = importlib.util.module_from_spec(spec)
        sys.modules[name] = package
    elif Path(package.__path__[0]) != folder:
        raise UserError(f"{folder}: another folder of that name ({package.__path__[0]}) is loaded in this process")
    return name


def family_module(path: str | Path, module: str):
    """Module `module` (e.g. "models") of the family folder holding `path`."""
    return importlib.import_module(f"{family_package(path)}.{module}")


@dataclass(frozen=True)
class EntryScript:
    """An entry script declared by its settings class (an lth.settings.Settings): what `lth sweep` asks of it,
    `parse_args(argv)` and `run_directory(settings)`, come from that declaration. An image family's IMP entry
    script declares more (lth.experiment.ImageEntry: its data, recipe and hooks)."""

    settings: Any  # the Settings subclass of the script

    def parse_args(self, argv: list[str] | None = None) -> Any:
        return self.settings.from_argv(argv)

    def run_directory(self, settings: Any) -> Path:
        return Path(settings.output_dir) / settings.run_name()


def family_of(path: str | Path) -> Family | None:
    """The registered family whose folder holds `path` (a config file or script), if any."""
    resolved = Path(path).resolve()
    for family in FAMILIES.values():
        if family.path == resolved or family.path in resolved.parents:
            return family
    return None


def family_named(name: str) -> Family:
    if name not in FAMILIES:
        raise UserError(f"--family {name}: expected one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


SEVERAL = ("--seed", "--trial", "--run_type", "--imp_mode", "--mode")  # flags an entry script takes several of


def several_runs(argv: list[str] | None) -> list[list[str]] | None:
    """An entry script's command line naming several runs at once, e.g. `--trial 0 1 2 --run_type winning_ticket
    random_reinit`, as one command line per run (their cross product); None for a command line of one run."""
    argv = list(sys.argv[1:] if argv is None else argv)
    choices: list[tuple[str, list[str]]] = []
    rest: list[str] = []
    i = 0
    while i < len(argv):
        if argv[i] in SEVERAL:
            values = []
            i += 1
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
            choices.append((argv[i - len(values) - 1], values))
        else:
            rest.append(argv[i])
            i += 1
    if all(len(values) <= 1 for _, values in choices):
        return None
    return [
        rest + [item for (flag, _), value in zip(choices, combination, strict=True) for item in (flag, value)]
        for combination in itertools.product(*(values for _, values in choices))
    ]


def refuse_if_running(settings_class: Any, unless: Callable[[Any], bool] | None = None) -> None:
    """An entry script calls this before its heavy imports (torch alone takes about 3 s to load): a start on a run
    that a live process holds ends here, within a fraction of a second, with the lease's one-line refusal. The
    lease itself is taken later, by the run's RunDirectory, which refuses the same way a start that raced past
    this check. A command line naming several runs (refused one by one as they come) and one that
    `unless(settings)` says trains nothing (CNN's --plot) are left alone; bad flags fail here as they would later."""
    argv = sys.argv[1:]
    if "--batch" in argv or several_runs(argv) is not None:
        return
    try:
        settings = settings_class.from_argv(argv)
        if unless is not None and unless(settings):
            return
        lease = DirectoryLock(EntryScript(settings_class).run_directory(settings))
        holder = lease.live_holder()
        if holder is not None:
            raise lease.in_use(holder)
    except UserError as error:
        report_and_exit(str(error))
