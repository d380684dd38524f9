"""BERT's data recipe: a GLUE task's train split (optionally a seeded random subset) and its full
dev split, tokenised once and kept on the training device."""

from __future__ import annotations

from dataclasses import dataclass

from lth.rewinding import derived_seed
from lth.text.data import EncodedText, encode, load_glue, seeded_subset
from lth.text.glue import GlueTask, glue_task

from .settings import MAX_LENGTH


@dataclass
class TaskData:
    task: GlueTask
    train: EncodedText
    dev: EncodedText


def load_task_data(
    task: str,
    tokenizer,
    data_dir: str | None,
    max_length: int = MAX_LENGTH,
    train_size: int | None = None,
    seed: int = 0,
    device: str = "cpu",
    draw_purpose: int = 0,
    size_flag: str = "--subset",
) -> TaskData:
    """`train_size` examples drawn with the seed (all when None); the dev split always whole.

    `draw_purpose` separates draws that share a seed (an LTH subset vs a few-shot sample).
    """
    spec = glue_task(task)
    splits = load_glue(task, data_dir)
    train = seeded_subset(splits["train"], train_size, derived_seed(seed, 11, draw_purpose), size_flag)
    return TaskData(
        spec, encode(train, tokenizer, max_length, device), encode(splits["dev"], tokenizer, max_length, device)
    )
