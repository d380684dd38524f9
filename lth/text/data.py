"""GLUE text classification data: loading, tokenising once, and length-grouped dynamic-padding batches.

Offline, SST-2 and QQP are read from the data root's `glue/SST-2/{train,dev}.tsv` and
`glue/QQP/{train,dev}.tsv` (tab separated, no quote processing, as GLUE's own readers do); online,
when those files are absent, they come from the Hugging Face hub through `datasets`.

Texts are tokenised once into one padded id tensor per split (kept on the training device) plus the
true lengths (kept on the CPU, so choosing a batch's width never waits on the device). A batch is
cut to its own longest sequence. Training batches group similar lengths: each epoch is a seeded
permutation, cut into chunks of many batches, each chunk sorted by length and split into batches,
and the batch order shuffled again; batch `i` is a pure function of (seed, i), so a resumed run
sees exactly the batches an uninterrupted one would.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lth.datasets import resolve_data_root
from lth.environment import hub_offline
from lth.errors import UserError
from lth.rewinding import derived_seed
from lth.stopping import check_during_evaluation
from lth.text.glue import GlueTask, glue_task
from lth.training import autocast_for

SPLIT_FILES = {"train": "train.tsv", "dev": "dev.tsv"}


@dataclass
class TextSplit:
    """Raw examples of one split: each text is a tuple (one sentence, or a pair)."""

    texts: list[tuple[str, ...]]
    labels: list[int]
    source: str  # where they were read from, for messages

    def __len__(self) -> int:
        return len(self.labels)

    def select(self, indices: Sequence[int]) -> TextSplit:
        return TextSplit([self.texts[i] for i in indices], [self.labels[i] for i in indices], self.source)


# --- reading ------------------------------------------------------------------------------------
def read_glue_tsv(path: Path, task: GlueTask) -> TextSplit:
    """One GLUE TSV file; a missing column is a one-line error naming the file."""
    try:
        handle = open(path, newline="", encoding="utf-8")
    except OSError as error:
        raise UserError(f"GLUE file {path} cannot be read ({error.strerror})") from None
    with handle:
        reader = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(reader, None)
        if header is None:
            raise UserError(f"GLUE file {path} is empty; expected a header with {', '.join(task.text_columns)}")
        wanted = [*task.text_columns, task.label_column]
        missing = [c for c in wanted if c not in header]
        if missing:
            raise UserError(f"GLUE file {path} has no column {', '.join(missing)} (header: {', '.join(header)})")
        text_at = [header.index(c) for c in task.text_columns]
        label_at = header.index(task.label_column)
        texts, labels, malformed = [], [], 0
        for line_number, row in enumerate(reader, start=2):
            if len(row) != len(header):
                malformed += 1  # GLUE's own QQP has a few broken lines; its readers skip them too
                continue
            try:
                label = int(row[label_at])
            except ValueError:
                raise UserError(
                    f"GLUE file {path} line {line_number}: label {row[label_at]!r} is not an integer"
                ) from None
            texts.append(tuple(row[i] for i in text_at))
            labels.append(label)
    if malformed:
        print(f"warning: skipped {malformed} malformed line(s) of {path}", file=sys.stderr)
    if not labels:
        raise UserError(f"GLUE file {path} holds no examples")
    return TextSplit(texts, labels, str(path))


def _load_from_hub(task: GlueTask) -> dict[str, TextSplit]:
    from datasets import load_dataset

    dataset = load_dataset("glue", task.name)
    splits = {}
    for ours, theirs in (("train", "train"), ("dev", "validation")):
        part = dataset[theirs]
        columns = [part[c] for c in task.text_columns]
        splits[ours] = TextSplit(
            list(zip(*columns, strict=True)), list(part["label"]), f"hub glue/{task.name}/{theirs}"
        )
    return splits


def load_glue(task_name: str, data_dir: str | None = None) -> dict[str, TextSplit]:
    """Train and dev splits of a GLUE task: the data root's TSV files, else the hub (online only)."""
    task = glue_task(task_name)
    folder = resolve_data_root(data_dir) / "glue" / task.folder
    paths = {split: folder / name for split, name in SPLIT_FILES.items()}
    if all(p.is_file() for p in paths.values()):
        return {split: read_glue_tsv(path, task) for split, path in paths.items()}
    absent = ", ".join(str(p) for p in paths.values() if not p.is_file())
    how = f"put GLUE's {task.folder} train.tsv and dev.tsv there, or point --data_dir / $LTH_DATA_DIR at a data root holding them"
    if hub_offline():
        raise UserError(f"GLUE {task.name} not found offline (looked for {absent}); {how}")
    try:
        return _load_from_hub(task)
    except Exception as error:  # no network, hub down, datasets missing: say where we looked
        raise UserError(
            f"GLUE {task.name}: {absent} missing and the hub download failed ({type(error).__name__}); {how}"
        ) from None


def seeded_subset(split: TextSplit, size: int | None, seed: int, flag: str = "--subset") -> TextSplit:
    """A seeded random draw of `size` examples (not the first rows); all of them when size is None. A size
    above the split's is refused (silently training on the whole split would misreport the run)."""
    if size is not None and size > len(split):
        raise UserError(f"{flag} {size} is larger than the {len(split):,} examples of {split.source}")
    if size is None or size == len(split):
        return split
    generator = torch.Generator().manual_seed(seed)
    chosen = torch.randperm(len(split), generator=generator)[:size].tolist()
    return split.select(chosen)


# --- tokenising ---------------------------------------------------------------------------------
@dataclass
class EncodedText:
    """A tokenised split: ids padded to the split's longest sequence, lengths on the CPU."""

    input_ids: torch.Tensor  # [N, L] long, on the training device
    token_type_ids: torch.Tensor  # [N, L] long
    labels: torch.Tensor  # [N] long
    lengths: torch.Tensor  # [N] long, CPU
    pad_id: int = 0

    def __len__(self) -> int:
        return len(self.labels)

    def to(self, device: torch.device | str) -> EncodedText:
        return EncodedText(
            self.input_ids.to(device), self.token_type_ids.to(device), self.labels.to(device), self.lengths, self.pad_id
        )

    def batch(self, index: torch.Tensor, pad_to: int | None = None) -> dict[str, torch.Tensor]:
        """Rows `index` (CPU long tensor), cut to their longest sequence (or padded to `pad_to`)."""
        width = int(self.lengths[index].max()) if pad_to is None else pad_to
        device_index = index.to(self.input_ids.device)
        ids = self.input_ids[device_index, :width]
        types = self.token_type_ids[device_index, :width]
        if ids.shape[1] < width:  # pad_to wider than the split's longest sequence
            ids = F.pad(ids, (0, width - ids.shape[1]), value=self.pad_id)
            types = F.pad(types, (0, width - types.shape[1]))
        positions = torch.arange(width, device=ids.device)
        attention = (positions.unsqueeze(0) < self.lengths[index].to(ids.device).unsqueeze(1)).long()
        return {
            "input_ids": ids,
            "attention_mask": attention,
            "token_type_ids": types,
            "labels": self.labels[device_index],
        }


def encode(split: TextSplit, tokenizer, max_length: int, device: torch.device | str = "cpu") -> EncodedText:
    """Tokenise every example once (truncated to max_length) into padded tensors."""
    columns = list(zip(*split.texts, strict=True)) if split.texts else [[]]
    first = list(columns[0])
    second = list(columns[1]) if len(columns) > 1 else None
    encoded = tokenizer(first, second, truncation=True, max_length=max_length, return_token_type_ids=True)
    ids_list = encoded["input_ids"]
    types_list = encoded["token_type_ids"]
    lengths = torch.tensor([len(ids) for ids in ids_list], dtype=torch.long)
    width = int(lengths.max()) if len(lengths) else 1
    pad_id = tokenizer.pad_token_id or 0
    input_ids = torch.full((len(ids_list), width), pad_id, dtype=torch.long)
    token_type_ids = torch.zeros((len(ids_list), width), dtype=torch.long)
    for row, (ids, types) in enumerate(zip(ids_list, types_list, strict=True)):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        token_type_ids[row, : len(types)] = torch.tensor(types)
    labels = torch.tensor(split.labels, dtype=torch.long)
    return EncodedText(input_ids.to(device), token_type_ids.to(device), labels.to(device), lengths, pad_id)


# --- batches ------------------------------------------------------------------------------------
class LengthGroupedBatches:
    """Training batch `i`: length-grouped within seeded chunks, padded to its own longest sequence.

    Every epoch visits every example once (the last batch of an epoch may be smaller).
    `pad_to=128` reproduces the earlier study's fixed padding (for the benchmark's baseline);
    `group_batches=1` turns grouping off (plain shuffled batches).
    """

    def __init__(
        self, data: EncodedText, batch_size: int, seed: int, group_batches: int = 64, pad_to: int | None = None
    ):
        if len(data) == 0:
            raise ValueError("no training examples")
        self.data, self.seed, self.pad_to = data, seed, pad_to
        self.batch_size = min(batch_size, len(data))
        self.group_batches = group_batches
        self.steps_per_epoch = math.ceil(len(data) / self.batch_size)
        self._epoch, self._plan = -1, []

    def plan(self, epoch: int) -> list[torch.Tensor]:
        """The epoch's batches as CPU index tensors."""
        if epoch != self._epoch:
            generator = torch.Generator().manual_seed(derived_seed(self.seed, 1, epoch))
            order = torch.randperm(len(self.data), generator=generator)
            chunk = self.batch_size * self.group_batches
            batches = []
            for start in range(0, len(order), chunk):
                part = order[start : start + chunk]
                if self.group_batches > 1:
                    part = part[torch.sort(self.data.lengths[part], descending=True, stable=True).indices]
                batches.extend(part.split(self.batch_size))
            shuffle = torch.randperm(len(batches), generator=generator).tolist()
            self._plan = [batches[i] for i in shuffle]
            self._epoch = epoch
        return self._plan

    def indices(self, iteration: int) -> torch.Tensor:
        epoch, step = divmod(iteration, self.steps_per_epoch)
        return self.plan(epoch)[step]

    def __call__(self, iteration: int) -> dict[str, torch.Tensor]:
        return self.data.batch(self.indices(iteration), self.pad_to)


# --- evaluation ---------------------------------------------------------------------------------
def sequence_logits(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    output = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], token_type_ids=batch["token_type_ids"]
    )
    return output.logits.float()


@torch.no_grad()
def evaluate_text(
    model: nn.Module,
    data: EncodedText,
    metrics: Sequence[str] = ("accuracy",),
    batch_size: int = 256,
    prefix: str = "dev",
) -> dict[str, float]:
    """Loss, accuracy (%) and, if asked, F1 (%) over a whole split, in length-sorted batches. F1 is scikit-learn's
    of the positive class (GLUE's for QQP), 0 where no example is positive in the predictions or the labels."""
    was_training = model.training
    model.eval()
    device = data.input_ids.device
    order = torch.sort(data.lengths, descending=True, stable=True).indices
    loss_sum = torch.zeros((), device=device)
    predictions = torch.empty(len(data), dtype=torch.long, device=device)
    with autocast_for(device):
        for index in order.split(batch_size):
            check_during_evaluation()
            batch = data.batch(index)
            logits = sequence_logits(model, batch)
            loss_sum += F.cross_entropy(logits, batch["labels"], reduction="sum")
            predictions[index.to(device)] = logits.argmax(1)
    model.train(was_training)
    result = {
        f"{prefix}_loss": loss_sum.item() / len(data),
        f"{prefix}_accuracy": 100.0 * int((predictions == data.labels).sum()) / len(data.labels),
    }
    if "f1" in metrics:
        from sklearn.metrics import f1_score  # loaded by the runs that report F1 only

        score = f1_score(data.labels.cpu().numpy(), predictions.cpu().numpy(), pos_label=1, zero_division=0.0)
        result[f"{prefix}_f1"] = 100.0 * float(score)
    return result
