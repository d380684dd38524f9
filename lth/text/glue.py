"""The GLUE tasks this toolkit reads: their folders, text and label columns and metrics (no torch, so settings
can name them before the heavy imports)."""

from __future__ import annotations

from dataclasses import dataclass

from lth.errors import UserError


@dataclass(frozen=True)
class GlueTask:
    name: str
    folder: str  # under <data root>/glue/
    text_columns: tuple[str, ...]
    label_column: str  # in the TSV files (the hub calls every label column "label")
    metrics: tuple[str, ...]


GLUE_TASKS = {
    "sst2": GlueTask("sst2", "SST-2", ("sentence",), "label", ("accuracy",)),
    "qqp": GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate", ("accuracy", "f1")),
}


def glue_task(name: str) -> GlueTask:
    if name not in GLUE_TASKS:
        raise UserError(f"--task {name}: expected one of {', '.join(GLUE_TASKS)}")
    return GLUE_TASKS[name]
