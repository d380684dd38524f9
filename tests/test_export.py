"""`lth export`: a run's round or a ticket as a folder that loads with from_pretrained or torch, with the same
predictions as the run's own model, its mask and a model card."""

from __future__ import annotations

import pytest
import torch
from conftest import family_module, require_data, tiny_mnist
from test_bert_support import bert_module, make_tiny_model, tiny_glue, tiny_lth_argv  # noqa: F401

from lth.cli import main as lth
from lth.export import load_exported_image_model
from lth.mask_file import load_mask
from lth.masks import Mask
from lth.storage import load_checkpoint
from lth.tickets import load_ticket

TOKENS = torch.tensor([[2, 5, 12, 3, 0], [2, 10, 14, 15, 3]])


@pytest.fixture(scope="module")
def bert_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("export_bert")
    from test_bert_support import make_tiny_glue

    model = make_tiny_model(root / "model", seed=4)
    data = make_tiny_glue(root / "data")
    script = bert_module("lottery_ticket_bert")
    argv = tiny_lth_argv(model, data, root / "out", "--sparsity", "0.2")
    script.main(argv)
    args = script.parse_args(argv)
    return model, script.run_directory(args), args


def front_matter(card: str) -> str:
    assert card.startswith("---\n")
    return card.split("---\n")[1]


def test_a_bert_run_exports_to_a_folder_from_pretrained_loads(bert_run, tmp_path):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    base, run_dir, args = bert_run
    out = tmp_path / "export"
    lth(["export", str(run_dir), str(out)])
    loaded = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert AutoTokenizer.from_pretrained(out)("good film")["input_ids"]
    state = load_checkpoint(run_dir / "state.pt")
    mask = Mask.from_state_dict(state["mask"])
    own = bert_module("model").sequence_classifier(str(base))
    own.load_state_dict(state["trained"])
    mask.apply(own)
    own.eval()
    attention = (TOKENS != 0).long()
    with torch.no_grad():
        assert torch.equal(
            loaded(input_ids=TOKENS, attention_mask=attention).logits,
            own(input_ids=TOKENS, attention_mask=attention).logits,
        )
    params = dict(loaded.named_parameters())
    for name in mask:
        assert torch.count_nonzero(params[name][~mask[name]]) == 0
    stored, header = load_mask(out / "mask.safetensors")
    assert stored.equals(mask) and header["round"] == state["rows"][-1]["round"]
    card = (out / "README.md").read_text()
    front = front_matter(card)
    assert "library_name: transformers" in front and "- glue" in front and "- lottery-ticket" in front
    assert "metrics:\n- accuracy" in front
    assert f"{100 * (1 - mask.sparsity()):.2f}% of its prunable weights" in card
    assert (
        "dev_accuracy" in card
        and "from_pretrained" in card
        and "bert.encoder.layer.0.attention.self.query.weight" in card
    )


def test_a_bert_ticket_exports_its_rewind_weights_and_head(bert_run, tmp_path):
    from transformers import AutoModelForSequenceClassification

    _, _, args = bert_run
    ticket_path = args.ticket_path(args.sparsity)
    out = tmp_path / "ticket-export"
    lth(["export", str(ticket_path), str(out)])
    loaded = AutoModelForSequenceClassification.from_pretrained(out)
    ticket = load_ticket(ticket_path)
    state = loaded.state_dict()
    for name, value in {**ticket.rewind_weights, **ticket.head}.items():
        if not name.endswith("position_ids"):
            assert torch.equal(state[name], value), name
    assert "train it" in (out / "README.md").read_text()


def test_an_image_run_exports_a_state_dict_and_the_line_that_builds_its_model(tmp_path):
    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    main = family_module("Lenet-300-100", "main")
    tiny = ["--iterations", "20", "--eval_every", "10", "--rounds", "1", "--quiet", "--device", "cpu"]
    main.main([*tiny, "--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "results")])
    (run_dir,) = [p.parent for p in (tmp_path / "results").glob("*/state.pt")]
    out = tmp_path / "export"
    lth(["export", str(run_dir), str(out)])
    model = load_exported_image_model(out).eval()
    state = load_checkpoint(run_dir / "state.pt")
    own = family_module("Lenet-300-100", "models").LeNet300100()
    own.load_state_dict(state["trained"])
    own.eval()
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.equal(model(images), own(images))
    mask, _ = load_mask(out / "mask.safetensors")
    assert mask.equals(Mask.from_state_dict(state["mask"])) and mask.sparsity() > 0
    card = (out / "README.md").read_text()
    assert "library_name: pytorch" in front_matter(card) and "- mnist" in front_matter(card)
    assert "family_module('Lenet-300-100', 'models').LeNet300100" in card and "model = LeNet300100()" in card
    # The line in the card builds the model from the repository's root.
    import json

    line = json.loads((out / "lth_model.json").read_text())["load"].replace("FOLDER", str(out))
    namespace: dict = {}
    import os

    cwd = os.getcwd()
    try:
        os.chdir(family_module.__globals__["REPO"])
        exec(line, namespace)  # noqa: S102 (the line the model card gives)
    finally:
        os.chdir(cwd)
    with torch.no_grad():
        assert torch.equal(namespace["model"].eval()(images), own(images))


def test_the_winning_ticket_of_any_round_exports_its_mask_on_the_rewind_weights(tmp_path, capsys):
    """--weights ticket --round r: round r's kept mask on the initial weights (untrained), the card saying so and
    giving the accuracy round r's training reached; the trained weights stay the last round's only."""
    tiny_mnist(tmp_path / "data", require_data("MNIST/raw"))
    main = family_module("Lenet-300-100", "main")
    tiny = ["--iterations", "20", "--eval_every", "10", "--rounds", "2", "--quiet", "--device", "cpu"]
    main.main([*tiny, "--data_dir", str(tmp_path / "data"), "--output_dir", str(tmp_path / "results")])
    (run_dir,) = [p.parent for p in (tmp_path / "results").glob("*/state.pt")]
    state = load_checkpoint(run_dir / "state.pt")
    out = tmp_path / "round1"
    lth(["export", str(run_dir), str(out), "--weights", "ticket", "--round", "1"])
    model = load_exported_image_model(out)
    mask, _ = load_mask(out / "mask.safetensors")
    kept, _ = load_mask(run_dir / "masks" / "round_01.safetensors")
    assert mask.equals(kept) and not mask.equals(Mask.from_state_dict(state["mask"])), "round 1's, not the last's"
    for name, value in model.state_dict().items():
        expected = state["init"][name] * kept.layers[name] if name in kept.layers else state["init"][name]
        assert torch.equal(value, expected), name
    card = (out / "README.md").read_text()
    accuracy = state["rows"][1]["test_accuracy_early_stop"]
    assert "winning ticket of round 1" in card and "untrained" in card and f"{accuracy:.2f}" in card
    with pytest.raises(SystemExit):
        lth(["export", str(run_dir), str(tmp_path / "o"), "--weights", "ticket", "--round", "5"])
    assert "no finished round 5" in capsys.readouterr().err and not (tmp_path / "o").exists()


def test_export_bad_input_is_one_line_and_leaves_nothing(bert_run, tmp_path, capsys, monkeypatch):
    _, run_dir, _ = bert_run
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("keep")
    cases = [
        (["export", str(run_dir), str(full)], "not empty"),
        (["export", str(run_dir), str(tmp_path / "o1"), "--round", "0"], "last finished round only"),
        (["export", str(tmp_path / "nothing"), str(tmp_path / "o2")], "does not exist"),
    ]
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cases.append(
        (["export", str(run_dir), str(tmp_path / "o3"), "--push_to_hub", "me/ticket"], "HF_HUB_OFFLINE is set")
    )
    for argv, needle in cases:
        with pytest.raises(SystemExit) as stop:
            lth(argv)
        err = capsys.readouterr().err.strip()
        assert stop.value.code == 2 and needle in err and len(err.splitlines()) == 1, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full"] and (full / "x").read_text() == "keep"


def test_lth_cost_of_an_export_and_of_a_ticket(bert_run, tmp_path, capsys):
    import json

    _, run_dir, args = bert_run
    out = tmp_path / "export"
    lth(["export", str(run_dir), str(out)])
    capsys.readouterr()
    fast = ["--batch_sizes", "1", "2", "--threads", "1", "--min_run_time", "0.01"]
    lth(["cost", str(out), *fast, "--output", str(tmp_path / "cost.json")])
    text = capsys.readouterr().out
    report = json.loads((tmp_path / "cost.json").read_text())
    mask, _ = load_mask(out / "mask.safetensors")
    assert report["total"]["weights_remaining_pct"] == pytest.approx(100 * (1 - mask.sparsity()))
    query = next(r for r in report["layers"] if r["layer"] == "bert.encoder.layer.0.attention.self.query")
    assert query["flops"] == 32 * 32 * 32  # 32 tokens x a 32x32 weight
    assert query["flops_nz"] == 32 * int(mask["bert.encoder.layer.0.attention.self.query.weight"].sum())
    assert "machine: " in text and "2:4 semi-structured" in text and "dense ms" in text
    lth(["cost", str(args.ticket_path(args.sparsity)), *fast])
    assert "bitmask + nonzero fp32" in capsys.readouterr().out
