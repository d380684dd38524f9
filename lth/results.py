"""Run directories: settings, per-round and curve CSVs, resumable state, and a lock.

Layout of one run (its name is readable and built from its settings):

    <output_dir>/<run name>/
        settings.json     every setting of the run (compared on restart; a mismatch is refused)
        rounds.csv        one row per pruning round (ROUND_COLUMNS, then family-specific columns)
        curve.csv         one row per evaluation (CURVE_COLUMNS)
        state.pt          what the next round needs (masks, rewind weights, rows so far)
        progress.pt       the round in flight: weights, optimiser, RNG, iteration (deleted at round end)
        masks/round_NN.safetensors   the mask of round NN, bits packed (lth.mask_file): a winning ticket's
                          are what its controls branch from
        .lock             the lease of the process working here (host, pid, heartbeat, token)
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
from pathlib import Path
from typing import Any

from lth.energy import ENERGY_COLUMNS
from lth.errors import RunLockedError, UserError
from lth.settings import Settings
from lth.storage import (
    DirectoryLock,
    atomic_torch_save,
    atomic_write_json,
    atomic_write_text,
    load_checkpoint,
    read_json,
)

ROUND_COLUMNS = [
    "round",
    "weights_remaining_pct",
    "sparsity_pct",
    "early_stop_iteration",
    "val_loss",
    "val_accuracy",
    "test_accuracy_early_stop",
    "test_accuracy_final",
    "run_type",
    "arch",
    "seed",
    "wall_time_s",
]
CURVE_COLUMNS = ["round", "iteration", "train_loss", "val_loss", "val_accuracy", "test_loss", "test_accuracy"]

# Columns a run measures; every other column of rounds.csv and curve.csv is a setting of the run (its identity,
# written from the settings declaration) or derived from one. Figures and summaries average runs only when all
# of those agree, except the seed columns: runs that differ only in their seed are trials of one condition.
MEASURED_COLUMNS = frozenset(
    {
        *ROUND_COLUMNS,
        *CURVE_COLUMNS,
        "dev_accuracy",
        "dev_loss",
        "dev_f1",
        "dev_accuracy_best",
        "iterations",
        "train_examples",
        "dev_examples",
        *ENERGY_COLUMNS,
    }
) - {"run_type", "arch", "seed"}
# Measured columns that differ between two runs of the same settings (what a run cost, not what it found).
COST_COLUMNS = ("wall_time_s", "energy_kwh", "co2_kg", "carbon_intensity_g_per_kwh")
SEED_COLUMNS = frozenset({"seed", "trial", "init_seed", "data_order_seed", "transformation_seed"})
RUN_COLUMN = "run"  # added by the loaders: the run directory's name


def condition_columns(columns) -> list[str]:
    """The columns that define a condition: everything but measurements, seeds and the run's name."""
    return [c for c in columns if c not in MEASURED_COLUMNS and c not in SEED_COLUMNS and c != RUN_COLUMN]


def csv_value(value: Any) -> Any:
    """A setting as a CSV cell: exact (a learning rate of 3e-7 is not rounded away), lists as space-separated
    values, None as empty."""
    if isinstance(value, (tuple, list)):
        return " ".join(str(v) for v in value)
    if isinstance(value, float):
        return repr(value)
    return "" if value is None else value


def format_value(value: Any) -> str:
    """Floats to 6 decimals, and tiny ones (energy in kWh of a short round) to 6 significant digits."""
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and abs(value) < 1e-3:
            return repr(float(f"{value:.6g}"))
        return repr(round(value, 6))
    return str(value)


def rows_to_csv(rows: list[dict], columns: list[str]) -> str:
    """CSV text: the given columns first, then any other keys the rows carry, in order of appearance."""
    extra = [k for row in rows for k in row if k not in columns]
    header = columns + list(dict.fromkeys(extra))
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([format_value(row[c]) if c in row else "" for c in header])
    return buffer.getvalue()


def write_csv(path: str | os.PathLike, rows: list[dict], columns: list[str]) -> None:
    atomic_write_text(path, rows_to_csv(rows, columns))


def ensure_output_dir(path: str | os.PathLike, flag: str = "--output_dir") -> Path:
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{flag} {path} is a file; give a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{flag} {path} cannot be created ({error.strerror})") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{flag} {path} is not writable")
    return path


class RunDirectory:
    """One run's directory; `open()` locks it and checks its settings against the saved ones."""

    def __init__(self, output_dir: str | os.PathLike, settings: Settings, flag: str = "--output_dir"):
        self.root = Path(output_dir)
        self.flag = flag
        self.name = settings.run_name()
        self.path = self.root / self.name
        self.settings = settings
        self.lock = DirectoryLock(self.path)

    # --- opening ------------------------------------------------------------------------
    def open(self) -> RunDirectory:
        """Take the lease (before any data or model loads: a second process on a live run stops at once),
        then check or write the settings."""
        ensure_output_dir(self.root, self.flag)
        self.created = not self.path.exists()
        self.path.mkdir(exist_ok=True)
        try:
            self.lock.acquire()
        except BaseException:
            self._remove_if_empty_and_new()
            raise
        # A process killed in the middle of an atomic write leaves its temporary file behind; with the
        # lock held nobody else writes here, so any such file is debris.
        for debris in [*self.path.glob(".*.tmp"), *self.path.glob("masks/.*.tmp")]:
            debris.unlink(missing_ok=True)
        try:
            self._check_settings()
        except BaseException:
            self.lock.release()
            self._remove_if_empty_and_new()
            raise
        return self

    def _remove_if_empty_and_new(self) -> None:
        """A run that stopped on bad input before it computed anything leaves nothing behind."""
        if not getattr(self, "created", False) or not self.path.is_dir():
            return
        if {p.name for p in self.path.iterdir()} <= {"settings.json", "failed", ".lock", "provenance.jsonl"}:
            shutil.rmtree(self.path, ignore_errors=True)

    def check_lease(self) -> None:
        """Every write checks the lease is still ours (a process frozen past the lease timeout lost it)."""
        if self.lock.lost:
            raise RunLockedError(f"run directory {self.path} was taken over by another process; this one stops")

    def _check_settings(self) -> None:
        settings_path = self.path / "settings.json"
        if settings_path.exists():
            saved = read_json(settings_path, "settings file")
            differing = self.settings.differences(saved)
            if differing:
                earlier = type(self.settings).from_saved(saved)
                detail = ", ".join(
                    f"{k}: saved {getattr(earlier, k)!r}, now {getattr(self.settings, k)!r}" for k in differing[:4]
                )
                raise UserError(
                    f"run directory {self.path} holds a run with other settings ({detail}); "
                    f"use another {self.flag} or delete that directory"
                )
        else:
            atomic_write_json(settings_path, self.settings.to_json())

    def close(self) -> None:
        self.lock.release()

    def __enter__(self) -> RunDirectory:
        return self.open()

    def __exit__(self, exc_type, exc, traceback) -> None:
        self.close()
        if exc_type is not None and issubclass(exc_type, UserError) and not issubclass(exc_type, RunLockedError):
            self._remove_if_empty_and_new()

    # --- files --------------------------------------------------------------------------
    @property
    def rounds_csv(self) -> Path:
        return self.path / "rounds.csv"

    @property
    def curve_csv(self) -> Path:
        return self.path / "curve.csv"

    def write_results(
        self,
        rounds: list[dict],
        curve: list[dict],
        round_columns: list[str] = ROUND_COLUMNS,
        curve_columns: list[str] = CURVE_COLUMNS,
    ) -> None:
        """Both CSVs, every row carrying the run's identity columns (so figures never pool conditions)."""
        self.check_lease()
        identity = {k: csv_value(v) for k, v in self.settings.identity().items()}
        write_csv(self.curve_csv, [{**point, **identity} for point in curve], curve_columns)
        write_csv(self.rounds_csv, [{**row, **identity} for row in rounds], round_columns)

    def has_state(self) -> bool:
        return (self.path / "state.pt").exists()

    def load_state(self) -> dict | None:
        path = self.path / "state.pt"
        return load_checkpoint(path, "run state") if path.exists() else None

    def save_state(self, state: dict) -> None:
        self.check_lease()
        atomic_torch_save(self.path / "state.pt", state)

    def load_progress(self) -> dict | None:
        path = self.path / "progress.pt"
        return load_checkpoint(path, "round checkpoint") if path.exists() else None

    def save_progress(self, progress: dict) -> None:
        self.check_lease()
        atomic_torch_save(self.path / "progress.pt", progress)

    def clear_progress(self) -> None:
        (self.path / "progress.pt").unlink(missing_ok=True)


def round_mask_path(run_path: str | os.PathLike, round_index: int) -> Path:
    return Path(run_path) / "masks" / f"round_{round_index:02d}.safetensors"


def rounds_done(run_path: str | os.PathLike) -> set[int]:
    """The rounds a run has finished, as its rounds.csv says (empty before its first)."""
    path = Path(run_path) / "rounds.csv"
    if not path.exists():
        return set()
    return {int(row["round"]) for row in read_csv_rows(path) if row.get("round", "").strip()}


def is_finished(run_path: str | os.PathLike) -> bool:
    """Finished runs carry a `finished` marker written after their last round's results."""
    return (Path(run_path) / "finished").exists()


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
