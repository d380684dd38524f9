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
        finished          written after the last round
        failed            the error of the last attempt, if it stopped on one
        batched.json      only for a run trained batched with others: its batch's run names
        .lock             the lease of the process working here (host, pid, heartbeat, token)

`RunFiles` names these files (for code that holds only a run's path); `RunDirectory` adds the settings, the lease
and the writes. No other module spells a run file's name.
"""

from __future__ import annotations

import csv
import io
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lth.atomic import atomic_torch_save, atomic_write_json, atomic_write_text
from lth.checked_load import load_checkpoint, read_json
from lth.energy import ENERGY_COLUMNS
from lth.errors import RunLockedError, UserError
from lth.lease import DirectoryLock
from lth.settings import Settings

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
# Added by the loaders: how the run was trained, "alone" or "batched" (with other runs in one stacked step; its
# batched.json says so). A condition column: batched runs drift from alone ones by rounding (README, "How
# faithful, and when it pays"), so figures and summaries never average the two together.
ENGINE_COLUMN = "engine"


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


class RunFiles:
    """The files of one run directory, by name; reading them needs no lease (status, branches, exports)."""

    SETTINGS = "settings.json"
    ROUNDS = "rounds.csv"
    CURVE = "curve.csv"
    STATE = "state.pt"
    PROGRESS = "progress.pt"
    FINISHED = "finished"
    FAILED = "failed"
    BATCHED = "batched.json"
    PROVENANCE = "provenance.jsonl"
    MASKS = "masks"
    LOCK = ".lock"

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    @property
    def settings_file(self) -> Path:
        return self.path / self.SETTINGS

    @property
    def rounds_csv(self) -> Path:
        return self.path / self.ROUNDS

    @property
    def curve_csv(self) -> Path:
        return self.path / self.CURVE

    @property
    def state_file(self) -> Path:
        return self.path / self.STATE

    @property
    def progress_file(self) -> Path:
        return self.path / self.PROGRESS

    @property
    def batched_file(self) -> Path:
        return self.path / self.BATCHED

    @property
    def failed_file(self) -> Path:
        return self.path / self.FAILED

    def mask_file(self, round_index: int) -> Path:
        return self.path / self.MASKS / f"round_{round_index:02d}.safetensors"

    def is_finished(self) -> bool:
        """Finished runs carry a `finished` marker written after their last round's results."""
        return (self.path / self.FINISHED).exists()

    def has_state(self) -> bool:
        return self.state_file.exists()

    def has_progress(self) -> bool:
        return self.progress_file.exists()

    def trained_batched(self) -> bool:
        """Marked as trained batched with other runs (batched.json, written before its first batched step)."""
        return self.batched_file.exists()

    def started_alone(self) -> bool:
        """Saved state or in-round progress, no batched.json: it was being trained alone."""
        return (self.has_state() or self.has_progress()) and not self.trained_batched()

    def failure(self) -> str | None:
        """The last line of the error the last attempt stopped on (None: it did not stop on one)."""
        try:
            text = self.failed_file.read_text().strip()
        except OSError:
            return None
        return text.splitlines()[-1] if text else ""

    def load_state(self, what: str = "run state") -> dict | None:
        return load_checkpoint(self.state_file, what) if self.has_state() else None

    def load_progress(self) -> dict | None:
        return load_checkpoint(self.progress_file, "round checkpoint") if self.has_progress() else None


class RunDirectory(RunFiles):
    """One run's directory; `open()` locks it and checks its settings against the saved ones."""

    def __init__(self, output_dir: str | os.PathLike, settings: Settings, flag: str = "--output_dir"):
        self.root = Path(output_dir)
        self.flag = flag
        self.name = settings.run_name()
        super().__init__(self.root / self.name)
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
        for debris in [*self.path.glob(".*.tmp"), *self.path.glob(f"{self.MASKS}/.*.tmp")]:
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
        if {p.name for p in self.path.iterdir()} <= {self.SETTINGS, self.FAILED, self.LOCK, self.PROVENANCE}:
            shutil.rmtree(self.path, ignore_errors=True)

    def check_lease(self) -> None:
        """Every write checks the lease is still ours (a process frozen past the lease timeout lost it)."""
        if self.lock.lost:
            raise RunLockedError(f"run directory {self.path} was taken over by another process; this one stops")

    def _check_settings(self) -> None:
        settings_path = self.settings_file
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

    # --- writes (the lease held) ----------------------------------------------------------
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

    def save_state(self, state: dict) -> None:
        self.check_lease()
        atomic_torch_save(self.state_file, state)

    def save_progress(self, progress: dict) -> None:
        self.check_lease()
        atomic_torch_save(self.progress_file, progress)

    def clear_progress(self) -> None:
        self.progress_file.unlink(missing_ok=True)

    def mark_finished(self) -> None:
        atomic_write_text(self.path / self.FINISHED, time.strftime("%Y-%m-%dT%H:%M:%S\n"))

    def mark_batched(self, names: list[str]) -> None:
        atomic_write_json(self.batched_file, {"batched": names, "replicates": len(names)})

    def note_failure(self, error: BaseException) -> None:
        """The `failed` note `lth status` shows (cleared by `clear_failure` when an attempt succeeds)."""
        atomic_write_text(self.failed_file, f"{type(error).__name__}: {error}\n")

    def clear_failure(self) -> None:
        self.failed_file.unlink(missing_ok=True)


def engine_of(run_path: str | os.PathLike) -> str:
    return "batched" if RunFiles(run_path).trained_batched() else "alone"


def round_mask_path(run_path: str | os.PathLike, round_index: int) -> Path:
    return RunFiles(run_path).mask_file(round_index)


def rounds_done(run_path: str | os.PathLike) -> set[int]:
    """The rounds a run has finished, as its rounds.csv says (empty before its first)."""
    path = RunFiles(run_path).rounds_csv
    if not path.exists():
        return set()
    return {int(row["round"]) for row in read_csv_rows(path) if row.get("round", "").strip()}


def is_finished(run_path: str | os.PathLike) -> bool:
    """Finished runs carry a `finished` marker written after their last round's results."""
    return RunFiles(run_path).is_finished()


def read_csv_rows(path: str | os.PathLike) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
