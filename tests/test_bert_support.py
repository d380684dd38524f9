"""Shared pieces of the BERT tests: a tiny pre-trained-style BERT with its own vocabulary, tiny GLUE
files, and loading the BERT family's modules by plain name (as its scripts do)."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch

from lth.families import family_module

REPO = Path(__file__).resolve().parents[1]
BERT_DIR = REPO / "BERT"
POSITIVE = ["good", "great", "fine", "lovely", "superb"]
NEGATIVE = ["bad", "awful", "poor", "dull", "boring"]
FILLER = ["the", "film", "movie", "plot", "was", "is", "a", "very", "and", "story", "acting", "quite"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def real_data_root() -> Path:
    return Path(os.environ.get("LTH_DATA_DIR") or REPO.parent / "shared" / "data")


def bert_module(name: str):
    """BERT/<name>.py (an entry script or a library module), as a module of the family's package."""
    return family_module(BERT_DIR, name)


def make_tiny_model(folder: Path, seed: int = 0, hidden: int = 32, layers: int = 2) -> Path:
    """A tiny BERT (BertModel with pooler, like the packaged MiniLM) and its tokenizer, saved to `folder`."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    vocab = SPECIAL + POSITIVE + NEGATIVE + FILLER + ["what", "how", "why", "do", "i", "?"]
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(vocab) + "\n")
    try:  # transformers 5 names the argument `vocab`; 4.x `vocab_file`
        tokenizer = BertTokenizerFast(vocab=str(vocab_file), do_lower_case=True)
    except TypeError:
        tokenizer = BertTokenizerFast(vocab_file=str(vocab_file), do_lower_case=True)
    assert tokenizer("good film")["input_ids"][1] == vocab.index("good"), "tiny tokenizer did not read its vocabulary"
    tokenizer.save_pretrained(folder)
    config = BertConfig(
        vocab_size=len(vocab),
        hidden_size=hidden,
        num_hidden_layers=layers,
        num_attention_heads=2,
        intermediate_size=2 * hidden,
        max_position_embeddings=64,
    )
    torch.manual_seed(seed)
    BertModel(config).save_pretrained(folder)
    return folder


def sentence(rng: random.Random, label: int) -> str:
    words = [rng.choice(FILLER) for _ in range(rng.randint(2, 9))]
    words.insert(rng.randint(0, len(words)), rng.choice(POSITIVE if label else NEGATIVE))
    return " ".join(words)


def make_tiny_glue(root: Path, train: int = 96, dev: int = 40, seed: int = 0) -> Path:
    """SST-2 and QQP files in GLUE's layout (tab separated, no quoting) with a learnable signal."""
    rng = random.Random(seed)
    for split, size in (("train", train), ("dev", dev)):
        sst = root / "glue" / "SST-2"
        sst.mkdir(parents=True, exist_ok=True)
        lines = ["sentence\tlabel"]
        for _ in range(size):
            label = rng.randint(0, 1)
            lines.append(f"{sentence(rng, label)} \t{label}")
        (sst / f"{split}.tsv").write_text("\n".join(lines) + "\n")
        qqp = root / "glue" / "QQP"
        qqp.mkdir(parents=True, exist_ok=True)
        lines = ["id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate"]
        for i in range(size):
            label = rng.randint(0, 1)
            q1 = f"what {sentence(rng, label)} ?"
            lines.append(f"{i}\t\t\t{q1}\t{q1 if label else 'how ' + sentence(rng, 0)}\t{label}")
        (qqp / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("tiny_bert"))


@pytest.fixture(scope="session")
def tiny_glue(tmp_path_factory) -> Path:
    return make_tiny_glue(tmp_path_factory.mktemp("tiny_data"))


def tiny_lth_argv(model: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return [
        "--model_name_or_path",
        str(model),
        "--data_dir",
        str(data),
        "--save_dir",
        str(out / "models"),
        "--output_dir",
        str(out / "runs"),
        "--batch_size",
        "16",
        "--lr",
        "1e-3",
        "--epochs",
        "1",
        "--device",
        "cpu",
        "--quiet",
        *extra,
    ]
