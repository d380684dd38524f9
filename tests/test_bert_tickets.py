"""Ticket files (lth.tickets), ensemble tickets and few-shot transfer on a tiny BertConfig model."""

from __future__ import annotations

import pytest
import torch
from test_bert_support import bert_module, make_tiny_model, tiny_glue, tiny_model  # noqa: F401

from lth.errors import UserError
from lth.masks import Mask
from lth.results import read_csv_rows
from lth.storage import load_checkpoint
from lth.tickets import (
    MINILM_BASE_MODEL,
    describe_ticket,
    head_replacement_note,
    load_ticket,
    load_ticket_into,
    make_ticket,
    save_ticket,
)


def classifier(tiny_model, seed=0):  # noqa: F811
    torch.manual_seed(seed)
    return bert_module("model").sequence_classifier(str(tiny_model))


def prunable(model):
    return bert_module("pruning").bert_prunable_names(model)


def random_mask(model, sparsity, seed):
    generator = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return Mask({n: torch.rand(params[n].shape, generator=generator) >= sparsity for n in prunable(model)})


def ticket_file(tmp_path, tiny_model, name, mask, task="sst2", seed=42, base=None):  # noqa: F811
    model = classifier(tiny_model)
    metadata = {"task": task, "seed": seed, "rewind_to": "pretrained", "history": [], "target_sparsity": 0.5}
    return save_ticket(tmp_path / name, make_ticket(base or str(tiny_model), mask, model.state_dict(), metadata))


def test_ticket_round_trip(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.4, seed=1)
    path = ticket_file(tmp_path, tiny_model, "t.pt", mask)
    ticket = load_ticket(path)
    assert ticket.mask.equals(mask) and ticket.base_model == str(tiny_model)
    assert ticket.metadata["task"] == "sst2" and ticket.metadata["sparsity"] == pytest.approx(mask.sparsity())
    assert set(ticket.head) == {"classifier.weight", "classifier.bias"}
    fresh = classifier(tiny_model, seed=7)
    load_ticket_into(fresh, ticket)
    params = dict(fresh.named_parameters())
    for name in mask:
        assert torch.count_nonzero(params[name][~mask[name]]) == 0
        assert torch.equal(params[name][mask[name]], dict(model.named_parameters())[name][mask[name]])
    assert not torch.equal(params["classifier.weight"], model.classifier.weight)  # the head stays fresh
    text = describe_ticket(path)
    assert "sparsity" in text and f"{100 * mask.sparsity():.2f}%" in text and "bert.pooler.dense.weight" in text


def earlier_state(model, prefix="", head_zeros=0.0):
    """The earlier study's BertForCustomTask layout: bert.* plus its CLS-token head
    Sequential(Linear(h, h), ReLU, Dropout, Linear(h, 2)), the head's first weight pruned by `head_zeros`."""
    state = {f"{prefix}{k}": v.clone() for k, v in model.state_dict().items() if k.startswith("bert.")}
    hidden = model.config.hidden_size
    first = torch.randn(hidden, hidden)
    first[torch.rand(hidden, hidden, generator=torch.Generator().manual_seed(0)) < head_zeros] = 0
    state[f"{prefix}classifier.0.weight"] = first
    state[f"{prefix}classifier.0.bias"] = torch.randn(hidden)
    state[f"{prefix}classifier.3.weight"] = torch.randn(2, hidden)
    state[f"{prefix}classifier.3.bias"] = torch.randn(2)
    return state


@pytest.mark.parametrize("prefix", ["", "model."])
def test_earlier_format_recovers_the_mask_from_zeros(tiny_model, tmp_path, prefix):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.6, seed=2)
    mask.apply(model)
    path = tmp_path / "lottery_ticket_qqp_sparsity70_seed123.pt"
    torch.save(
        {
            "model_state_dict": earlier_state(model, prefix),
            "mask_dict": None,
            "sparsity": 0.7,
            "seed": 123,
            "history": {"sparsity": [0, 0.1], "val_acc": [0.8, 0.81]},
        },
        path,
    )
    ticket = load_ticket(path)
    # A tiny model (hidden 32, 2 layers) matches no known base model: named after its shapes.
    assert ticket.kind == "earlier-format" and ticket.base_model == "unknown-bert(hidden=32,layers=2)"
    assert ticket.mask.equals(mask)
    assert ticket.metadata["task"] == "qqp" and ticket.metadata["seed"] == 123
    assert ticket.metadata["mask_source"] == "zeros of the weights"
    fresh = classifier(tiny_model, seed=3)
    load_ticket_into(fresh, ticket)  # fits the model it came from
    assert "earlier-format" in describe_ticket(path)


def test_earlier_format_mask_dict_wins_over_zeros(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.3, seed=4)
    names = mask.names()
    mask_dict = {n.removesuffix(".weight") + ".weight_mask": mask[n].float() for n in names}
    path = tmp_path / "old.pt"
    torch.save(
        {"model_state_dict": earlier_state(model), "mask_dict": mask_dict, "sparsity": 0.3, "seed": 1, "history": {}},
        path,
    )
    ticket = load_ticket(path)
    assert ticket.mask.equals(mask) and ticket.metadata["mask_source"] == "mask_dict"
    for n in names:  # the unmasked trained weights are zeroed where the mask says pruned
        assert torch.count_nonzero(ticket.rewind_weights[n][~mask[n]]) == 0


def earlier_file(path, model, mask, sparsity=0.7, seed=42, mask_dict=None, head_zeros=0.0, history=None):
    """An earlier-study ticket file of `model` pruned by `mask` (the trained weights, zeros where pruned)."""
    pruned = {k: v.clone() for k, v in model.state_dict().items()}
    for name in mask:
        pruned[name] = pruned[name] * mask[name]
    state = earlier_state(model, head_zeros=head_zeros)
    state.update({k: v for k, v in pruned.items() if k in state})
    torch.save(
        {
            "model_state_dict": state,
            "mask_dict": mask_dict,
            "sparsity": sparsity,
            "seed": seed,
            "history": history if history is not None else {"sparsity": [0, 0.1], "val_acc": [0.8, 0.81]},
        },
        path,
    )
    return path


@pytest.mark.parametrize(
    "hidden, layers, expected",
    [(768, 12, "bert-base-uncased"), (384, 6, MINILM_BASE_MODEL), (1024, 24, "bert-large-uncased"), (512, 4, None)],
)
def test_earlier_base_model_is_inferred_from_the_shapes(tmp_path, hidden, layers, expected):
    # Only the first dimension of the query weight and the layer indices matter: thin weights keep this cheap.
    parts = ("attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense")
    parts += ("intermediate.dense", "output.dense")
    state = {f"bert.encoder.layer.{i}.{part}.weight": torch.ones(hidden, 2) for i in range(layers) for part in parts}
    state["bert.pooler.dense.weight"] = torch.ones(hidden, 2)
    torch.save(
        {"model_state_dict": state, "mask_dict": None, "sparsity": 0.0, "seed": 1, "history": {}}, tmp_path / "e.pt"
    )
    ticket = load_ticket(tmp_path / "e.pt")
    assert ticket.base_model == (expected or f"unknown-bert(hidden={hidden},layers={layers})")
    assert ticket.metadata["base_model_source"] == f"inferred from the weight shapes (hidden {hidden}, {layers} layers)"


def test_earlier_minilm_shaped_file_is_named_like_minilm_tickets_and_ensembles_with_them(tmp_path):
    assert MINILM_BASE_MODEL == bert_module("model").OFFLINE_MODEL_ALIAS  # the name --model_name_or_path minilm records
    folder = make_tiny_model(tmp_path / "minilm-shaped", hidden=384, layers=6)
    model = classifier(folder)
    mask_a, mask_b = random_mask(model, 0.6, seed=11), random_mask(model, 0.7, seed=12)
    a = ticket_file(
        tmp_path, folder, "lottery_ticket_sst2_sparsity60_seed42.safetensors", mask_a, base=MINILM_BASE_MODEL
    )
    b = earlier_file(tmp_path / "lottery_ticket_qqp_sparsity70_seed42.pt", model, mask_b)
    earlier = load_ticket(b)
    assert earlier.base_model == MINILM_BASE_MODEL and earlier.mask.equals(mask_b)
    script = bert_module("create_ensemble_tickets")
    # the earlier file holds trained weights: the pre-trained ones are read from the folder
    out = script.main(
        ["--ticket_a", str(a), "--ticket_b", str(b), "--save_dir", str(tmp_path / "ens")]
        + ["--model_name_or_path", str(folder)]
    )
    union = load_ticket(out)
    assert union.base_model == MINILM_BASE_MODEL and union.kind == "ensemble"
    assert union.mask.equals(mask_a.union(mask_b))
    reference = model.state_dict()
    for n in union.mask:
        assert torch.equal(union.rewind_weights[n][union.mask[n]], reference[n][union.mask[n]])
    assert union.metadata["sparsity_b"] == pytest.approx(mask_b.sparsity())


def test_earlier_head_is_described_and_the_stored_sparsity_is_the_one_reached(tiny_model, tmp_path):  # noqa: F811
    import numpy as np

    model = classifier(tiny_model)
    mask = random_mask(model, 0.5, seed=13)
    head_mask = torch.rand(32, 32, generator=torch.Generator().manual_seed(1)) >= 0.25
    mask_dict = {n.removesuffix(".weight") + ".weight_mask": mask[n].float() for n in mask.names()}
    mask_dict["classifier.0.weight_mask"] = head_mask.float()
    history = {"sparsity": [np.float64(0.0), np.float64(0.5)], "val_acc": [np.float64(0.8), np.float32(0.75)]}
    path = earlier_file(
        tmp_path / "lottery_ticket_sst2_sparsity50_seed7.pt",
        model,
        mask,
        sparsity=0.4837,
        seed=7,
        mask_dict=mask_dict,
        head_zeros=0.5,
        history=history,
    )
    ticket = load_ticket(path)
    assert ticket.metadata["history"] == {"sparsity": [0.0, 0.5], "val_acc": [0.8, 0.75]}  # numpy scalars, as floats
    assert ticket.metadata["sparsity_reached"] == 0.4837 and ticket.metadata["target_sparsity"] is None
    head = ticket.metadata["earlier_head"]
    assert [layer["type"] for layer in head] == ["Linear", "ReLU", "Dropout", "Linear"]
    first, last = head[0], head[3]
    stored = load_checkpoint(path)["model_state_dict"]
    zeros = float((stored["classifier.0.weight"] == 0).float().mean())
    assert first["layer"] == "classifier.0" and first["shape"] == [32, 32] and first["bias"]
    assert first["sparsity"] == pytest.approx(zeros) and 0.3 < zeros < 0.7
    assert first["mask_sparsity"] == pytest.approx(float((~head_mask).float().mean()))
    assert last["layer"] == "classifier.3" and last["shape"] == [2, 32] and last["out_features"] == 2
    assert last["sparsity"] == 0.0 and "mask_sparsity" not in last
    assert ticket.head == {}  # not Hugging Face's head: described, never loaded into a model

    text = describe_ticket(path)
    assert "head             none" not in text
    assert "Linear-ReLU-Dropout-Linear" in text
    assert f"classifier.0   Linear 32->32 weight (32, 32) + bias, sparsity {100 * zeros:.2f}% (zeros)" in text
    assert f"{100 * first['mask_sparsity']:.2f}% (mask)" in text
    assert "classifier.3   Linear 32->2 weight (2, 32) + bias, sparsity 0.00% (zeros)" in text
    assert "sparsity reached 48.37% (as the earlier file records it)" in text
    assert not [line for line in text.splitlines() if line.startswith("sparsity") and "target" in line]
    assert "unknown-bert(hidden=32,layers=2) (inferred from the weight shapes (hidden 32, 2 layers))" in text


def test_the_callers_model_name_wins_over_the_inferred_one(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    path = earlier_file(tmp_path / "old.pt", model, random_mask(model, 0.5, seed=14))
    ticket = load_ticket(path, model_name_or_path=str(tiny_model))
    assert ticket.base_model == str(tiny_model)
    assert ticket.metadata["base_model_in_file"] == "unknown-bert(hidden=32,layers=2)"
    assert f"base model       {tiny_model} (given (--model_name_or_path))" in describe_ticket(
        path, model_name_or_path=str(tiny_model)
    )
    toolkit = ticket_file(tmp_path, tiny_model, "t.pt", random_mask(model, 0.5, seed=15), base="bert-base-uncased")
    assert load_ticket(toolkit, model_name_or_path="minilm").base_model == "minilm"
    assert load_ticket(toolkit).base_model == "bert-base-uncased"


def test_head_replacement_note_only_for_earlier_files(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.5, seed=16)
    toolkit = load_ticket(ticket_file(tmp_path, tiny_model, "t.pt", mask))
    assert head_replacement_note(toolkit) is None
    path = earlier_file(tmp_path / "lottery_ticket_qqp_sparsity70_seed1.pt", model, mask)
    note = head_replacement_note(load_ticket(path))
    assert note is not None and len(note.splitlines()) == 1 and note.startswith(f"note: {path} ")
    assert "Linear-ReLU-Dropout-Linear" in note and "classifier.0 32->32, classifier.3 32->2" in note
    assert "trained for qqp" in note and "reads the pooler" in note


def test_not_a_ticket_and_corrupt_files_are_one_line(tmp_path):
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(UserError, match="--checkpoint .*other.pt is not a ticket file .*expected"):
        load_ticket(tmp_path / "other.pt")
    torch.save(torch.ones(3), tmp_path / "tensor.pt")
    with pytest.raises(UserError, match="--checkpoint .*tensor.pt is not a ticket file .*expected"):
        load_ticket(tmp_path / "tensor.pt")
    (tmp_path / "broken.pt").write_bytes(b"not a torch file")
    with pytest.raises(UserError, match="--checkpoint .*broken.pt is not a ticket file .*expected"):
        load_ticket(tmp_path / "broken.pt")
    torch.save({"x": torch.ones(1000)}, tmp_path / "cut.pt")
    (tmp_path / "cut.pt").write_bytes((tmp_path / "cut.pt").read_bytes()[:500])
    with pytest.raises(UserError, match="--checkpoint .*cut.pt is corrupt or truncated") as info:
        load_ticket(tmp_path / "cut.pt")
    assert "delete" not in str(info.value) and len(str(info.value).splitlines()) == 1
    with pytest.raises(UserError, match="--checkpoint .*missing.pt does not exist"):
        load_ticket(tmp_path / "missing.pt")


def test_ensemble_union_and_intersection_on_hand_made_masks(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    mask_a, mask_b = random_mask(model, 0.6, seed=5), random_mask(model, 0.7, seed=6)
    a = ticket_file(tmp_path, tiny_model, "lottery_ticket_sst2_sparsity60_seed42.safetensors", mask_a, "sst2")
    b = ticket_file(tmp_path, tiny_model, "lottery_ticket_qqp_sparsity70_seed42.safetensors", mask_b, "qqp")
    script = bert_module("create_ensemble_tickets")
    reference = model.state_dict()
    for combine, expected in (("union", mask_a.union(mask_b)), ("intersection", mask_a.intersection(mask_b))):
        out = script.main(
            ["--ticket_a", str(a), "--ticket_b", str(b), "--save_dir", str(tmp_path / "ens"), "--combine", combine]
        )
        ticket = load_ticket(out)
        assert out.name == f"ensemble_ticket_sst2_qqp_{combine}_seed42.safetensors"
        for n in expected:
            assert torch.equal(ticket.mask[n], expected[n])
            manual = (mask_a[n] | mask_b[n]) if combine == "union" else (mask_a[n] & mask_b[n])
            assert torch.equal(ticket.mask[n], manual)
            # On the pre-trained weights: every surviving weight is its pre-trained value.
            assert torch.equal(ticket.rewind_weights[n][ticket.mask[n]], reference[n][ticket.mask[n]])
            assert torch.count_nonzero(ticket.rewind_weights[n][~ticket.mask[n]]) == 0
        meta = ticket.metadata
        assert meta["jaccard"] == pytest.approx(mask_a.jaccard(mask_b))
        assert meta["sparsity_a"] == pytest.approx(mask_a.sparsity()) and meta["sparsity_b"] == pytest.approx(
            mask_b.sparsity()
        )
        if combine == "union":
            assert ticket.sparsity <= min(mask_a.sparsity(), mask_b.sparsity())
        else:
            assert ticket.sparsity >= max(mask_a.sparsity(), mask_b.sparsity())
        layers = read_csv_rows(out.with_name(out.stem + "_layers.csv"))
        assert len(layers) == len(mask_a) and {"jaccard", "sparsity_a_pct", "sparsity_result_pct"} <= set(layers[0])


def test_ensemble_rebuilds_the_same_inputs_but_never_replaces_another(tiny_model, tmp_path, capsys):  # noqa: F811
    model = classifier(tiny_model)
    a = ticket_file(
        tmp_path, tiny_model, "lottery_ticket_sst2_sparsity60_seed42.safetensors", random_mask(model, 0.6, 5), "sst2"
    )
    b = ticket_file(
        tmp_path, tiny_model, "lottery_ticket_qqp_sparsity70_seed42.safetensors", random_mask(model, 0.7, 6), "qqp"
    )
    other = ticket_file(
        tmp_path, tiny_model, "lottery_ticket_qqp_sparsity50_seed42.safetensors", random_mask(model, 0.5, 7), "qqp"
    )
    script = bert_module("create_ensemble_tickets")
    argv = ["--ticket_a", str(a), "--save_dir", str(tmp_path / "ens")]
    out = script.main([*argv, "--ticket_b", str(b)])
    assert script.main([*argv, "--ticket_b", str(b)]) == out  # the same ensemble again: fine
    before = out.read_bytes()
    with pytest.raises(SystemExit) as stop:
        script.main([*argv, "--ticket_b", str(other)])  # same name, other tickets
    assert stop.value.code == 2
    assert "already holds the union of" in capsys.readouterr().err
    assert out.read_bytes() == before


def test_keep_pooler_tickets_make_their_own_ensemble_name(tiny_model, tmp_path):  # noqa: F811
    model = classifier(tiny_model)
    tickets = []
    for task, seed in (("sst2", 5), ("qqp", 6)):
        full = random_mask(model, 0.6, seed)
        encoder_only = Mask({n: keep for n, keep in full.layers.items() if "pooler" not in n})
        ticket = load_ticket(ticket_file(tmp_path, tiny_model, f"{task}_keep-pooler.pt", encoder_only, task))
        ticket.metadata["keep_pooler"] = True
        tickets.append(ticket)
    script = bert_module("create_ensemble_tickets")
    assert script.ensemble_name(*tickets, "union") == "ensemble_ticket_sst2_qqp_union_seed42_keep-pooler.safetensors"


def test_ensemble_refuses_other_base_models_and_shapes(tiny_model, tmp_path, capsys):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.5, seed=8)
    a = ticket_file(tmp_path, tiny_model, "a.pt", mask)
    b = ticket_file(tmp_path, tiny_model, "b.pt", mask, base="bert-base-uncased")
    other_folder = make_tiny_model(tmp_path / "wider", hidden=16)
    wide = classifier(other_folder)
    c = ticket_file(tmp_path, other_folder, "c.pt", random_mask(wide, 0.5, seed=9))
    script = bert_module("create_ensemble_tickets")
    for other, needle in ((b, "different base models"), (c, "different base models")):
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--ticket_a", str(a), "--ticket_b", str(other), "--save_dir", str(tmp_path / "ens")])
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1
    # Same base name but other shapes (a folder overwritten in between): refused on the shapes.
    c_as_a = load_ticket(c)
    c_as_a.base_model, c_as_a.base_identity = str(tiny_model), None  # identified again: now the tiny model
    save_ticket(tmp_path / "c_renamed.pt", c_as_a)
    with pytest.raises(SystemExit):
        script.main(
            ["--ticket_a", str(a), "--ticket_b", str(tmp_path / "c_renamed.pt"), "--save_dir", str(tmp_path / "ens")]
        )
    assert "shape" in capsys.readouterr().err
    assert not (tmp_path / "ens").exists() or not list((tmp_path / "ens").glob("*.pt"))


def fewshot_argv(ticket, tiny_glue, tmp_path, mode, seed=42, k=32):  # noqa: F811
    return [
        "--checkpoint",
        str(ticket),
        "--target",
        "qqp",
        "--mode",
        mode,
        "--fewshot_size",
        str(k),
        "--seed",
        str(seed),
        "--data_dir",
        str(tiny_glue),
        "--save_dir",
        str(tmp_path / "fewshot"),
        "--lr",
        "1e-2",
        "--epochs",
        "2",
        "--device",
        "cpu",
    ]


def trained_model_after(script, argv, monkeypatch):
    """Run the few-shot script and capture the model it trained."""
    captured = {}
    original = script.fine_tune.__globals__["train_round"]

    def spy(model, *args, **kwargs):
        captured["model"] = model
        return original(model, *args, **kwargs)

    monkeypatch.setitem(script.fine_tune.__globals__, "train_round", spy)
    row = script.main(argv)
    return captured["model"], row


def test_fewshot_full_keeps_the_mask_and_headonly_changes_only_the_head(tiny_model, tiny_glue, tmp_path, monkeypatch):  # noqa: F811
    model = classifier(tiny_model)
    mask = random_mask(model, 0.6, seed=10)
    path = ticket_file(tmp_path, tiny_model, "lottery_ticket_sst2_sparsity60_seed42.safetensors", mask)
    ticket = load_ticket(path)
    script = bert_module("few_shot_training")

    full, row = trained_model_after(script, fewshot_argv(path, tiny_glue, tmp_path, "full"), monkeypatch)
    params = dict(full.named_parameters())
    for name in mask:
        assert torch.count_nonzero(params[name][~mask[name]]) == 0
    changed = [n for n in mask if not torch.equal(params[n], ticket.rewind_weights[n])]
    assert changed  # the encoder did train
    assert (
        row["mode"] == "full" and row["k"] == 32 and row["source_sparsity_pct"] == pytest.approx(100 * mask.sparsity())
    )

    head_only, _ = trained_model_after(script, fewshot_argv(path, tiny_glue, tmp_path, "headonly"), monkeypatch)
    torch.manual_seed(42)
    fresh = bert_module("model").sequence_classifier(str(tiny_model))
    for name, value in head_only.state_dict().items():
        if name.startswith("classifier."):
            assert not torch.equal(value, fresh.state_dict()[name])  # the fresh head trained
        else:
            assert torch.equal(value, ticket.rewind_weights[name]), name

    rows = read_csv_rows(tmp_path / "fewshot" / "transfer.csv")
    assert sorted(r["mode"] for r in rows) == ["full", "headonly"]
    assert {"source", "source_sparsity_pct", "target", "mode", "k", "seed", "dev_accuracy", "dev_f1"} <= set(rows[0])
    # Started again: finished, the CSV keeps one row per run.
    assert script.main(fewshot_argv(path, tiny_glue, tmp_path, "full")) is None
    assert len(read_csv_rows(tmp_path / "fewshot" / "transfer.csv")) == 2


def test_fewshot_draws_are_seeded_and_differ_across_seeds(tiny_model, tiny_glue):  # noqa: F811
    tokenizer = bert_module("model").load_tokenizer(str(tiny_model))
    draw = [
        bert_module("data")
        .load_task_data("sst2", tokenizer, str(tiny_glue), train_size=16, seed=s, draw_purpose=1)
        .train
        for s in (1, 1, 2)
    ]
    assert torch.equal(draw[0].input_ids, draw[1].input_ids) and torch.equal(draw[0].labels, draw[1].labels)
    assert not torch.equal(draw[0].input_ids, draw[2].input_ids)


def test_fewshot_missing_source_is_one_line_naming_it(tiny_glue, tmp_path, capsys):  # noqa: F811
    script = bert_module("few_shot_training")
    missing = tmp_path / "ensemble_ticket_sst2_qqp_union_seed42.safetensors"
    with pytest.raises(SystemExit) as exit_info:
        script.main(fewshot_argv(missing, tiny_glue, tmp_path, "full"))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert str(missing) in err and "create_ensemble_tickets.py" in err and len(err.splitlines()) == 1
