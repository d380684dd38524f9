"""GLUE loading and length-grouped dynamic padding (lth.text.data)."""

from __future__ import annotations

import types
import warnings

import pytest
import torch
from test_bert_support import make_tiny_glue, tiny_glue, tiny_model  # noqa: F401

from lth.errors import UserError
from lth.text.data import (
    EncodedText,
    LengthGroupedBatches,
    TextSplit,
    encode,
    evaluate_text,
    glue_task,
    load_glue,
    read_glue_tsv,
    seeded_subset,
)


def test_tsv_is_read_without_quote_processing(tmp_path):
    folder = tmp_path / "glue" / "SST-2"
    folder.mkdir(parents=True)
    text = 'the " so-called " movie'
    for split in ("train", "dev"):
        (folder / f"{split}.tsv").write_text(f'sentence\tlabel\n{text} \t1\n"quoted start\t0\n')
    splits = load_glue("sst2", str(tmp_path))
    assert splits["train"].texts == [(f"{text} ",), ('"quoted start',)]
    assert splits["train"].labels == [1, 0]


def test_missing_column_names_the_file(tmp_path):
    path = tmp_path / "train.tsv"
    path.write_text("question1\tis_duplicate\nwhat\t1\n")
    with pytest.raises(UserError, match=r"train\.tsv has no column question2"):
        read_glue_tsv(path, glue_task("qqp"))


def test_missing_data_offline_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match=r"not found offline \(looked for .*glue/QQP/train\.tsv"):
        load_glue("qqp", str(tmp_path))
    with pytest.raises(UserError, match="--task mnli"):
        load_glue("mnli", str(tmp_path))


def test_subset_is_a_seeded_random_draw():
    split = TextSplit([(str(i),) for i in range(1000)], [i % 2 for i in range(1000)], "memory")
    a, b, c = seeded_subset(split, 50, 1), seeded_subset(split, 50, 1), seeded_subset(split, 50, 2)
    assert a.texts == b.texts
    assert a.texts != c.texts
    assert a.texts != split.texts[:50]  # not the first rows
    assert seeded_subset(split, None, 1) is split


def test_qqp_pairs_get_segment_ids(tiny_model, tiny_glue):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    encoded = encode(load_glue("qqp", str(tiny_glue))["dev"], tokenizer, max_length=32)
    first = encoded.batch(torch.tensor([0]))
    assert set(first["token_type_ids"].unique().tolist()) == {0, 1}
    assert int(encoded.lengths.max()) <= 32


def _encoded(tiny_model, tiny_glue):  # noqa: F811
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    return encode(load_glue("sst2", str(tiny_glue))["train"], tokenizer, max_length=64)


def test_batches_are_a_pure_function_of_seed_and_iteration(tiny_model, tiny_glue):  # noqa: F811
    data = _encoded(tiny_model, tiny_glue)
    walked = LengthGroupedBatches(data, 16, seed=3, group_batches=4)
    sequence = [walked(i) for i in range(3 * walked.steps_per_epoch)]
    fresh = LengthGroupedBatches(data, 16, seed=3, group_batches=4)
    for i in (2 * walked.steps_per_epoch + 1, 4, 0):  # any order, e.g. after a resume
        for key, value in fresh(i).items():
            assert torch.equal(value, sequence[i][key])
    other = LengthGroupedBatches(data, 16, seed=4, group_batches=4)
    assert not torch.equal(other.indices(0), walked.indices(0))


def test_each_epoch_visits_every_example_once_padded_to_its_longest(tiny_model, tiny_glue):  # noqa: F811
    data = _encoded(tiny_model, tiny_glue)
    batches = LengthGroupedBatches(data, 16, seed=0, group_batches=4)
    for epoch in range(2):
        seen = torch.cat([batches.indices(epoch * batches.steps_per_epoch + s) for s in range(batches.steps_per_epoch)])
        assert sorted(seen.tolist()) == list(range(len(data)))
    batch = batches(1)
    index = batches.indices(1)
    assert batch["input_ids"].shape[1] == int(data.lengths[index].max())
    assert torch.equal(batch["attention_mask"].sum(1), data.lengths[index])
    fixed = LengthGroupedBatches(data, 16, seed=0, group_batches=4, pad_to=128)(1)
    assert fixed["input_ids"].shape[1] == 128
    assert torch.equal(fixed["input_ids"][:, : batch["input_ids"].shape[1]], batch["input_ids"])


def test_length_grouping_cuts_padding(tiny_model, tiny_glue):  # noqa: F811
    data = _encoded(tiny_model, tiny_glue)

    def padded_tokens(batches):
        return sum(len(idx) * int(data.lengths[idx].max()) for idx in batches.plan(0))

    assert padded_tokens(LengthGroupedBatches(data, 8, seed=0, group_batches=64)) < padded_tokens(
        LengthGroupedBatches(data, 8, seed=0, group_batches=1)
    )


class Predicts(torch.nn.Module):
    """A stand-in classifier that predicts each example's first token id (0 or 1)."""

    def forward(self, input_ids, attention_mask, token_type_ids):
        return types.SimpleNamespace(logits=torch.nn.functional.one_hot(input_ids[:, 0], 2).float())


def dev_f1(predictions: list[int], labels: list[int]) -> float:
    lengths = torch.tensor([2 + i % 3 for i in range(len(labels))])  # length-sorted batches reorder the examples
    ids = torch.tensor(predictions)[:, None].repeat(1, 4)
    data = EncodedText(ids, torch.zeros_like(ids), torch.tensor(labels), lengths)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no ill-defined-metric warning where nothing is positive
        return evaluate_text(Predicts(), data, ("accuracy", "f1"), batch_size=2)["dev_f1"]


def test_f1_is_scikit_learns_of_the_positive_class_in_percent():
    # tp 2, fp 1, fn 1: precision 2/3, recall 2/3
    assert dev_f1([1, 1, 0, 0, 1, 0], [1, 0, 0, 1, 1, 0]) == pytest.approx(100 * 2 / 3, abs=1e-12)
    # tp 1, fp 3, fn 0: precision 1/4, recall 1: 2 x 1 / (2 x 1 + 3) = 40%
    assert dev_f1([1, 1, 1, 1, 0], [1, 0, 0, 0, 0]) == pytest.approx(40.0, abs=1e-12)
    assert dev_f1([0, 0, 0, 0], [1, 1, 0, 1]) == 0.0  # no positive predictions (a collapsed run)
    assert dev_f1([0, 0, 0], [0, 0, 0]) == 0.0  # nothing positive anywhere
    assert dev_f1([1, 1, 1], [0, 0, 0]) == 0.0
    assert dev_f1([1, 0, 1], [1, 0, 1]) == 100.0
