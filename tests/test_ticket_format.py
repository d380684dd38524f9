"""The ticket format without pickle (lth/tickets.py on lth/mask_file.py): what it stores, what it reads back, how the
earlier files convert, and what `lth ticket` says about them."""

from __future__ import annotations

import json

import pytest
import torch
from test_bert_support import make_tiny_model, tiny_model  # noqa: F401
from test_bert_tickets import classifier, earlier_file, random_mask

from lth.cli import main as lth
from lth.errors import UserError
from lth.mask_file import load_mask_file
from lth.tickets import STORED, TICKET_FORMAT, describe_ticket, load_ticket, make_ticket, save_ticket


def pretrained_ticket(folder, path, sparsity=0.5, seed=21, metadata=None):
    model = classifier(folder)
    mask = random_mask(model, sparsity, seed)
    meta = {"task": "sst2", "seed": 1, "rewind_to": "pretrained", "target_sparsity": sparsity} | (metadata or {})
    return model, mask, save_ticket(path, make_ticket(str(folder), mask, model.state_dict(), meta))


def test_a_pretrained_ticket_stores_the_mask_and_head_only_and_reads_back_exactly(tmp_path):
    folder = make_tiny_model(tmp_path / "base", seed=5)
    model, mask, path = pretrained_ticket(folder, tmp_path / "t.safetensors")
    stored_mask, header, tensors = load_mask_file(path)
    ticket_header = header["ticket"]
    assert ticket_header["format"] == TICKET_FORMAT and ticket_header["weights"] == "base model"
    assert sorted(tensors) == ["head/classifier.bias", "head/classifier.weight"]  # no encoder weights in the file
    assert stored_mask.equals(mask)
    assert ticket_header["weights_remaining_pct"] == pytest.approx(
        {n: 100 * (1 - s) for n, s in mask.layer_sparsity().items()}
    )
    assert ticket_header["base_model_identity"]["weights_sha256"] and ticket_header["provenance"]["libraries"]["torch"]
    ticket = load_ticket(path)
    reference = model.state_dict()
    for name, weight in ticket.rewind_weights.items():
        keep = mask.layers.get(name)
        expected = reference[name] * keep if keep is not None else reference[name]
        assert torch.equal(weight, expected), name
    # A base model folder that now holds another model is refused, in one line naming both.
    make_tiny_model(folder, seed=6)
    with pytest.raises(UserError, match=r"t\.safetensors was made from the model bert-[0-9a-f]+; .* is bert-"):
        _ = load_ticket(path).rewind_weights


def test_warmup_weights_are_stored_as_the_survivors_only(tmp_path):
    folder = make_tiny_model(tmp_path / "base", seed=5)
    model = classifier(folder)
    state = {k: v + 0.5 for k, v in model.state_dict().items()}  # not the pre-trained weights
    mask = random_mask(model, 0.75, 3)
    path = save_ticket(tmp_path / "w.safetensors", make_ticket(str(folder), mask, state, {"rewind_to": "warmup"}))
    _, header, tensors = load_mask_file(path)
    assert header["ticket"]["weights"] == STORED
    for name in mask:
        assert tensors[f"kept/{name}"].numel() == int(mask[name].sum())
    ticket = load_ticket(path)
    for name, weight in ticket.rewind_weights.items():
        keep = mask.layers.get(name)
        assert torch.equal(weight, state[name] * keep if keep is not None else state[name]), name


def pickled_ticket(path, folder, mask, model):
    """This toolkit's earlier ticket: a torch-pickled dict."""
    body = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("classifier.")}
    for name in mask:
        body[name] = body[name] * mask[name]
    torch.save(
        {
            "format": "lth-bert-ticket",
            "version": 1,
            "kind": "ticket",
            "base_model": str(folder),
            "masks": mask.state_dict(),
            "rewind_weights": body,
            "head": {k: v for k, v in model.state_dict().items() if k.startswith("classifier.")},
            "metadata": {"task": "qqp", "seed": 7, "rewind_to": "pretrained", "target_sparsity": 0.5},
        },
        path,
    )
    return path


def test_convert_reads_earlier_tickets_and_writes_the_current_format(tmp_path, capsys):
    folder = make_tiny_model(tmp_path / "base", seed=5)
    model = classifier(folder)
    mask = random_mask(model, 0.5, 9)
    old = pickled_ticket(tmp_path / "lottery_ticket_qqp_sparsity50_seed7.pt", folder, mask, model)
    earlier = earlier_file(tmp_path / "lottery_ticket_sst2_sparsity50_seed42.pt", model, mask, sparsity=0.5)
    lth(["ticket", "convert", str(old), str(earlier)])
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and all(" MB) -> " in line for line in printed)
    converted = load_ticket(old.with_suffix(".safetensors"))
    original = load_ticket(old)
    assert converted.mask.equals(original.mask) and converted.metadata["task"] == "qqp"
    assert converted.weights is None  # the pre-trained weights: read again from the base model
    assert all(torch.equal(converted.rewind_weights[k], original.rewind_weights[k]) for k in original.rewind_weights)
    assert converted.metadata["provenance"]["converted_from"]["format"].startswith("lth-bert-ticket")
    again = load_ticket(earlier.with_suffix(".safetensors"))
    before = load_ticket(earlier)
    assert again.kind == "earlier-format" and again.weights is not None  # trained weights: kept in the file
    assert all(torch.equal(again.rewind_weights[k], before.rewind_weights[k]) for k in before.rewind_weights)
    assert again.metadata["earlier_head"] == before.metadata["earlier_head"]
    assert earlier.with_suffix(".safetensors").stat().st_size < earlier.stat().st_size
    assert "converted from" in describe_ticket(earlier.with_suffix(".safetensors"))
    with pytest.raises(SystemExit) as stop:  # never over an existing file
        lth(["ticket", "convert", str(old)])
    assert stop.value.code == 2 and "exists" in capsys.readouterr().err


def test_lth_ticket_explains_a_stored_sparsity_that_counts_the_head(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.3, 17)
    total, pruned = mask.total(), mask.total() - mask.kept()
    path = earlier_file(tmp_path / "lottery_ticket_sst2_sparsity30_seed42.pt", model, mask, head_zeros=0.5)
    raw = torch.load(path, weights_only=True)
    head = raw["model_state_dict"]
    head_weights = head["classifier.0.weight"].numel() + head["classifier.3.weight"].numel()
    head_zeros = int((head["classifier.0.weight"] == 0).sum() + (head["classifier.3.weight"] == 0).sum())
    raw["sparsity"] = (pruned + head_zeros) / (total + head_weights)  # as the earlier code counted it
    torch.save(raw, path)
    text = describe_ticket(path)
    assert f"counts its head's {head_weights:,} weights ({head_zeros:,} of them pruned)" in text
    assert (
        f"over the prunable weights alone (the toolkit's measure, as in Chen et al.) it is {100 * mask.sparsity():.2f}%"
        in text
    )
    raw["sparsity"] = mask.sparsity() + 0.05  # a difference the head does not explain
    torch.save(raw, path)
    assert "+5.00 points from the" in describe_ticket(path) and "None" not in describe_ticket(path)


def test_lth_ticket_reads_the_task_from_the_summary_before_the_name_and_never_prints_none(tmp_path):
    folder = make_tiny_model(tmp_path / "base", seed=5)
    _, _, path = pretrained_ticket(
        folder, tmp_path / "ensemble_x.safetensors", metadata={"task": None, "seed": None, "target_sparsity": None}
    )
    (tmp_path / "ensemble_x_summary.json").write_text(json.dumps({"source_tasks": ["qqp", "sst2"]}))
    text = describe_ticket(path)
    assert "task             qqp+sst2" in text and "None" not in text
    assert "seed             not recorded" in text and "target not recorded" in text
    (tmp_path / "ensemble_x_summary.json").unlink()
    assert "task             unknown" in describe_ticket(path)
    named = tmp_path / "lottery_ticket_qqp_x.safetensors"
    named.write_bytes(path.read_bytes())
    assert "task             qqp" in describe_ticket(named)  # the name, when nothing else says
