"""Chen et al.'s BERT baselines as branches of the winning ticket, on a tiny BERT: random pruning (the ticket's
per-matrix counts, pre-trained weights), random re-initialisation (the ticket's mask, the whole model drawn afresh)
and standard pruning (the ticket's trained dense model pruned once, fine-tuned without rewinding). Each shares the
ticket's round 0 and trains one round, the ticket's round of its sparsity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import torch
from test_bert_support import BERT_DIR, bert_module, tiny_glue, tiny_lth_argv, tiny_model  # noqa: F401

from lth.branches import dependency, ticket_of
from lth.mask_file import load_mask
from lth.masks import Mask
from lth.plotting import controls_apart
from lth.results import read_csv_rows, round_mask_path
from lth.rewinding import derived_seed, fresh_initialization
from lth.storage import load_checkpoint
from lth.sweep import read_config

TICKET_SPARSITY = "0.3"  # the ticket: rounds 1, 2, 3 at 10, 20, 30%
BASELINE = ("--sparsity", "0.2", "--ticket_sparsity", TICKET_SPARSITY)  # the ticket's round 2
ROUND = 2
MEASURED = ("weights_remaining_pct", "dev_accuracy", "dev_loss", "train_loss", "iterations")


@pytest.fixture(scope="module")
def lth():
    return bert_module("lottery_ticket_bert")


@pytest.fixture(scope="module")
def ticket(lth, tiny_model, tiny_glue, tmp_path_factory):  # noqa: F811
    """A winning ticket to 30%, trained once for the module: (output folder, its run directory)."""
    out = tmp_path_factory.mktemp("ticket")
    argv = tiny_lth_argv(tiny_model, tiny_glue, out, "--sparsity", TICKET_SPARSITY)
    lth.main(argv)
    return out, lth.run_directory(lth.parse_args(argv))


class Steps:
    """The training steps a call makes, and the weights its first step starts from (mask applied)."""

    def __init__(self, lth, monkeypatch):
        trainer = lth.build_recipe.__globals__  # the trainer module the entry script imported
        original = trainer["bert_step_loss"]
        self.count, self.start = 0, None

        def step_loss(model, batch):
            if self.start is None:
                self.start = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self.count += 1
            return original(model, batch)

        monkeypatch.setitem(trainer, "bert_step_loss", step_loss)


def run_baseline(lth, tiny_model, tiny_glue, out: Path, run_type: str, monkeypatch, *extra: str):  # noqa: F811
    """Train a baseline into `out` (its ticket's folder); its run directory, state and what its steps saw."""
    argv = tiny_lth_argv(tiny_model, tiny_glue, out, "--run_type", run_type, *BASELINE, *extra)
    steps = Steps(lth, monkeypatch)
    tickets_before = sorted((out / "models").iterdir())
    lth.main(argv)
    assert sorted((out / "models").iterdir()) == tickets_before, "a baseline writes no ticket files"
    run = lth.run_directory(lth.parse_args(argv))
    return run, load_checkpoint(run / "state.pt"), steps


def ticket_round_mask(ticket_run: Path, round_index: int) -> Mask:
    return load_mask(round_mask_path(ticket_run, round_index))[0]


def assert_branch_of_round(run: Path, ticket_run: Path, state: dict, steps: Steps) -> None:
    """Round 0 is the ticket's (copied, not trained); the one round trained is the ticket's round of its sparsity;
    its mask holds through training."""
    rows, ticket_rows = read_csv_rows(run / "rounds.csv"), read_csv_rows(ticket_run / "rounds.csv")
    assert [r["round"] for r in rows] == ["0", str(ROUND)]
    assert [rows[0][c] for c in MEASURED] == [ticket_rows[0][c] for c in MEASURED]
    assert float(rows[0]["wall_time_s"]) == 0.0 and float(rows[1]["wall_time_s"]) > 0
    assert float(rows[1]["sparsity_pct"]) == pytest.approx(20.0, abs=0.01)
    assert rows[1]["weights_remaining_pct"] == ticket_rows[ROUND]["weights_remaining_pct"]
    ticket_curve = [p for p in read_csv_rows(ticket_run / "curve.csv") if p["round"] == "0"]
    curve = read_csv_rows(run / "curve.csv")
    assert [p["dev_accuracy"] for p in curve if p["round"] == "0"] == [p["dev_accuracy"] for p in ticket_curve]
    assert {p["round"] for p in curve} == {"0", str(ROUND)}
    assert steps.count == int(rows[1]["iterations"]), "one round trained: not round 0, not the rounds before"
    assert sorted(p.name for p in (run / "masks").iterdir()) == [
        "round_00.safetensors",
        f"round_{ROUND:02d}.safetensors",
    ]
    mask = Mask.from_state_dict(state["mask"])
    assert mask.equals(load_mask(round_mask_path(run, ROUND))[0])
    for name, keep in mask.layers.items():
        assert torch.count_nonzero(state["trained"][name][~keep]) == 0, f"{name}: a pruned weight trained"
        assert torch.count_nonzero(steps.start[name][~keep]) == 0, f"{name}: a pruned weight started non-zero"


def test_random_prune_has_the_tickets_count_in_every_matrix(lth, ticket, tiny_model, tiny_glue, monkeypatch):  # noqa: F811
    out, ticket_run = ticket
    run, state, steps = run_baseline(lth, tiny_model, tiny_glue, out, "random_prune", monkeypatch)
    assert_branch_of_round(run, ticket_run, state, steps)
    mine, theirs = Mask.from_state_dict(state["mask"]), ticket_round_mask(ticket_run, ROUND)
    assert mine.kept_counts() == theirs.kept_counts()  # exact, matrix by matrix
    assert all(not torch.equal(mine[n], theirs[n]) for n in mine.layers), "a random structure in every matrix"
    assert mine.jaccard(theirs) < 0.7
    # On the pre-trained weights and the initial head the ticket rewinds to.
    rewind = load_checkpoint(ticket_run / "state.pt")["init"]
    for name, weight in steps.start.items():
        keep = mine.layers.get(name, torch.ones_like(weight, dtype=torch.bool))
        assert torch.equal(weight[keep], rewind[name][keep]), name
    assert "_random_prune-of-ticket30_" in run.name
    # lth status names the ticket, as its settings.json does.
    assert json.loads((run / "settings.json").read_text())["ticket_run"] == ticket_run.name
    assert ticket_of(run) == ticket_run
    assert dependency(run) == f"branch of {ticket_run.name} (finished)"


def test_random_reinit_trains_the_tickets_mask_from_a_fresh_model(lth, ticket, tiny_model, tiny_glue, monkeypatch):  # noqa: F811
    out, ticket_run = ticket
    run, state, steps = run_baseline(lth, tiny_model, tiny_glue, out, "random_reinit", monkeypatch)
    assert_branch_of_round(run, ticket_run, state, steps)
    mask = Mask.from_state_dict(state["mask"])
    assert mask.equals(ticket_round_mask(ticket_run, ROUND))
    ticket_state = load_checkpoint(ticket_run / "state.pt")
    pretrained, trained = ticket_state["init"], ticket_state["trained"]
    reinit = bert_module("model").reinitialized_factory(str(tiny_model))
    # The model's own initialiser, a seeded draw of its own: BERT's N(0, 0.02) weights, LayerNorm at 1.
    fresh = fresh_initialization(reinit, derived_seed(42, 5, ROUND))
    for name, weight in steps.start.items():
        keep = mask.layers.get(name, torch.ones_like(weight, dtype=torch.bool))
        assert torch.equal(weight[keep], fresh[name][keep]), name
        if weight.dtype.is_floating_point and weight.numel() > 1 and weight[keep].std() > 0:
            assert not torch.equal(weight, pretrained[name]), f"{name}: the pre-trained weights again"
            assert not torch.equal(weight, trained[name]), f"{name}: the ticket's weights"
    head = "classifier.weight"
    assert not torch.equal(steps.start[head], pretrained[head]), "the head is drawn afresh too"
    assert steps.start["bert.encoder.layer.0.attention.self.query.weight"].std() == pytest.approx(0.02, rel=0.2)


def test_standard_pruning_prunes_the_trained_dense_model_once(lth, ticket, tiny_model, tiny_glue, monkeypatch):  # noqa: F811
    out, ticket_run = ticket
    run, state, steps = run_baseline(lth, tiny_model, tiny_glue, out, "standard_pruning", monkeypatch)
    assert_branch_of_round(run, ticket_run, state, steps)
    dense_trained = load_checkpoint(ticket_run / "state.pt")["dense_trained"]
    mask = Mask.from_state_dict(state["mask"])
    # Global magnitude over the prunable matrices of the trained dense weights, 20% of them gone.
    magnitudes = torch.cat([dense_trained[n].abs().reshape(-1) for n in mask.layers])
    kept = mask.total() - int(0.2 * mask.total() + 0.5)
    threshold = magnitudes.sort(descending=True).values[kept - 1]
    assert mask.kept() == kept
    for name, keep in mask.layers.items():
        assert torch.equal(keep, dense_trained[name].abs() >= threshold), name
    assert not mask.equals(ticket_round_mask(ticket_run, ROUND))  # not the ticket's iterative mask
    # Fine-tuned from those trained weights (head too), masked: no rewinding.
    for name, weight in steps.start.items():
        keep = mask.layers.get(name, torch.ones_like(weight, dtype=torch.bool))
        assert torch.equal(weight, torch.where(keep, dense_trained[name], torch.zeros_like(weight))), name


def test_a_baseline_before_its_ticket_reached_the_round_does_nothing_wrong(
    lth,
    ticket,
    tiny_model,  # noqa: F811
    tiny_glue,  # noqa: F811
    tmp_path,
    capsys,
    monkeypatch,
):
    """Refused in one line where nobody trains the ticket; resumed once the ticket got there, it ends as a run
    that never waited."""
    _, ticket_run = ticket
    argv = tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--run_type", "random_prune", *BASELINE)
    args = lth.parse_args(argv)
    run = lth.run_directory(args)
    # No ticket at all: nothing is left behind.
    with pytest.raises(SystemExit) as exit_info:
        lth.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "nobody is training" in err and "--run_type winning_ticket" in err and "--sparsity 0.3" in err
    assert not run.exists()
    # A ticket that stopped after round 1 (no live lease): the baseline keeps round 0, trains nothing.
    copy = tmp_path / "runs" / ticket_run.name
    shutil.copytree(ticket_run, copy)
    (copy / "finished").unlink()
    for r in (2, 3):
        round_mask_path(copy, r).unlink()
    for table in ("rounds.csv", "curve.csv"):
        lines = (copy / table).read_text().splitlines(keepends=True)
        round_column = lines[0].split(",").index("round")
        (copy / table).write_text(
            "".join(line for line in lines if line.split(",")[round_column] in ("round", "0", "1"))
        )
    steps = Steps(lth, monkeypatch)
    with pytest.raises(SystemExit):
        lth.main(argv)
    err = capsys.readouterr().err.strip()
    assert "started round 2" in err and len(err.splitlines()) == 1
    assert steps.count == 0
    state = load_checkpoint(run / "state.pt")
    assert state["next_round"] == ROUND and [r["round"] for r in state["rows"]] == [0]
    assert not (run / "progress.pt").exists() and not round_mask_path(run, ROUND).exists()
    assert dependency(run) == f"branch of {ticket_run.name} (at round 2)"
    # The ticket gets there: the same command finishes the baseline as if it had never waited.
    shutil.copy(round_mask_path(ticket_run, ROUND), round_mask_path(copy, ROUND))
    lth.main(argv)
    whole = tmp_path / "whole"
    shutil.copytree(ticket_run, whole / "runs" / ticket_run.name)
    lth.main(tiny_lth_argv(tiny_model, tiny_glue, whole, "--run_type", "random_prune", *BASELINE))
    resumed, never_waited = load_checkpoint(run / "state.pt"), load_checkpoint(whole / "runs" / run.name / "state.pt")
    assert all(torch.equal(resumed["trained"][k], v) for k, v in never_waited["trained"].items())
    assert [r["dev_accuracy"] for r in resumed["rows"]] == [r["dev_accuracy"] for r in never_waited["rows"]]


class Interrupt(Exception):
    pass


def test_a_killed_baseline_resumes_to_the_same_result(lth, ticket, tiny_model, tiny_glue, tmp_path, monkeypatch):  # noqa: F811
    out, ticket_run = ticket
    _, whole, _ = run_baseline(lth, tiny_model, tiny_glue, out, "random_reinit", monkeypatch)  # uninterrupted
    shutil.copytree(ticket_run, tmp_path / "runs" / ticket_run.name)
    argv = tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--run_type", "random_reinit", *BASELINE)
    trainer = lth.build_recipe.__globals__
    original, calls = trainer["bert_step_loss"], {"n": 0}

    def dying_loss(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:  # inside the baseline's round, after its checkpoint at iteration 4
            raise Interrupt
        return original(model, batch)

    monkeypatch.setitem(trainer, "bert_step_loss", dying_loss)
    with pytest.raises(Interrupt):
        lth.main([*argv, "--checkpoint_every", "2"])
    monkeypatch.setitem(trainer, "bert_step_loss", original)
    run = lth.run_directory(lth.parse_args(argv))
    assert load_checkpoint(run / "progress.pt")["round"] == ROUND
    (run / ".lock").unlink(missing_ok=True)  # the 'killed' process is this one, still alive
    steps = Steps(lth, monkeypatch)
    lth.main(argv)
    assert steps.count == 2, "resumed at its checkpoint (iteration 4 of 6), not started again"
    resumed = load_checkpoint(run / "state.pt")
    assert Mask.from_state_dict(resumed["mask"]).equals(Mask.from_state_dict(whole["mask"]))
    assert all(torch.equal(resumed["trained"][k], v) for k, v in whole["trained"].items())
    assert [r["dev_accuracy"] for r in resumed["rows"]] == [r["dev_accuracy"] for r in whole["rows"]]


def test_names_and_status_of_baselines(lth, ticket, tiny_model, tiny_glue, tmp_path):  # noqa: F811
    out, ticket_run = ticket
    ticket_args = lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, out, "--sparsity", TICKET_SPARSITY))
    names = {}
    for run_type in ("random_prune", "random_reinit", "standard_pruning"):
        args = lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, out, "--run_type", run_type, *BASELINE))
        assert args.ticket_run() == ticket_run.name == ticket_args.run_name()
        names[run_type] = args.run_name()
        # The ticket's name with the run type and the ticket's target beside the baseline's own sparsity.
        expected = ticket_run.name.replace("_sparsity30_", f"_sparsity20_{run_type}-of-ticket30_")
        assert names[run_type] == expected
        assert args.baseline_round() == ROUND
    assert len(set(names.values())) == 3
    # Without --ticket_sparsity the ticket is the one to the baseline's own sparsity.
    own = lth.parse_args(tiny_lth_argv(tiny_model, tiny_glue, out, "--run_type", "random_prune", "--sparsity", "0.3"))
    assert own.ticket_sparsity == 0.3 and own.ticket_run() == ticket_run.name and own.baseline_round() == 3
    assert ticket_of(ticket_run) is None and "ticket_run" not in json.loads((ticket_run / "settings.json").read_text())


def test_committed_bert_runs_keep_their_names():
    """The runs under BERT/results/minilm-cpu/ name themselves as before and are the same run (still finished)."""
    lth = bert_module("lottery_ticket_bert")
    runs = sorted((BERT_DIR / "results" / "minilm-cpu" / "lth").iterdir())
    assert len(runs) == 9
    for run in runs:
        saved = json.loads((run / "settings.json").read_text())
        args = bert_module("settings").LotterySettings.from_saved(saved)
        assert args.run_name() == run.name and args.differences(saved) == [] and (run / "finished").exists()
        assert args.run_type == "winning_ticket" and args.ticket_run() is None
        assert "run_type" not in args.ticket_owner(args.sparsity) and "ticket_sparsity" not in args.ticket_owner(0.0)
    minilm = ["--model_name_or_path", "minilm", "--subset", "4000", "--epochs", "1", "--lr", "1e-4"]
    plain = lth.parse_args(minilm)
    assert plain.run_name() == "bert-sst2_minilm_sparsity60_rewind-pretrained_subset4000_seed42_he8686f2f"
    assert (
        plain.ticket_path(0.6).name == "lottery_ticket_sst2_minilm_sparsity60_subset4000_seed42_he8686f2f.safetensors"
    )
    baseline = lth.parse_args([*minilm, "--run_type", "random_prune", "--sparsity", "0.5", "--ticket_sparsity", "0.6"])
    assert baseline.run_name() == (  # as the README says
        "bert-sst2_minilm_sparsity50_random_prune-of-ticket60_rewind-pretrained_subset4000_seed42_he8686f2f"
    )
    assert baseline.ticket_run() == plain.run_name()
    # The study at Chen et al.'s schedule keeps the names its runs were started under.
    study = [lth.parse_args(line.argv) for line in read_config(BERT_DIR / "configs_minilm_sst2_paper_cpu.txt")]
    tickets = [args for args in study if args.run_type == "winning_ticket"]
    for seed, args in enumerate(tickets, start=1):
        assert args.run_name() == f"bert-sst2_minilm_sparsity70_rewind-pretrained_seed{seed}_h419f0559"
        assert args.ticket_path(0.7).name == f"lottery_ticket_sst2_minilm_sparsity70_seed{seed}_h419f0559.safetensors"
    assert len(tickets) == 3 and {args.ticket_run() for args in study if args not in tickets} == {
        t.run_name() for t in tickets
    }, "every baseline of the study branches from one of its three tickets"


def test_figures_draw_baselines_as_branches_of_the_ticket():
    """A baseline has no control_mask setting: its run name says it follows its ticket (not the earlier study's
    own-mask controls)."""
    frame = pd.DataFrame(
        {
            "run_type": ["random_prune", "random_reinit", "winning_ticket"],
            "run": [
                "bert-sst2_minilm_sparsity50_random_prune-of-ticket70_rewind-pretrained_seed1_h419f0559",
                "lenet300-100-iterative_random_reinit_trial0",  # an earlier own-mask control
                "bert-sst2_minilm_sparsity70_rewind-pretrained_seed1_h419f0559",
            ],
        }
    )
    assert list(controls_apart(frame)["run_type"]) == ["random_prune", "random_reinit-own-masks", "winning_ticket"]


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--ticket_sparsity", "0.3"), "--ticket_sparsity"),  # a winning ticket has no ticket
        (("--run_type", "random_prune", "--sparsity", "0.3", "--ticket_sparsity", "0.2"), "--ticket_sparsity"),
        (("--run_type", "random_reinit", "--sparsity", "0.25", "--ticket_sparsity", "0.3"), "no round of its ticket"),
        (("--run_type", "standard_pruning", "--sparsity", "0"), "--sparsity"),
        (("--run_type", "lottery"), "--run_type"),
    ],
)
def test_bad_baseline_flags_are_one_line(lth, tiny_model, tiny_glue, tmp_path, capsys, extra, needle):  # noqa: F811
    with pytest.raises(SystemExit) as exit_info:
        lth.main(tiny_lth_argv(tiny_model, tiny_glue, tmp_path, *extra))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_standard_pruning_refuses_a_ticket_without_its_state(lth, ticket, tiny_model, tiny_glue, tmp_path, capsys):  # noqa: F811
    """The committed runs kept no state.pt: standard pruning has no trained dense weights to prune."""
    _, ticket_run = ticket
    copy = tmp_path / "runs" / ticket_run.name
    shutil.copytree(ticket_run, copy)
    (copy / "state.pt").unlink()
    argv = tiny_lth_argv(tiny_model, tiny_glue, tmp_path, "--run_type", "standard_pruning", *BASELINE)
    with pytest.raises(SystemExit) as exit_info:
        lth.main(argv)
    err = capsys.readouterr().err.strip()
    assert exit_info.value.code == 2 and len(err.splitlines()) == 1
    assert "state.pt" in err and "trained dense weights" in err
    assert not lth.run_directory(lth.parse_args(argv)).exists()


def test_the_methods_table_and_the_sparsity_matching_dense():
    """Chen et al.'s table over seeds: dense is the tickets' round 0, a baseline only its trained round; IMP matches
    up to the highest sparsity whose mean stays within one standard deviation of dense (every lower one too)."""
    plotter = bert_module("plotter")
    rows = []
    for seed, dense, imp in ((1, 90.0, [90.5, 89.6, 88.0]), (2, 88.0, [88.5, 87.8, 86.0])):
        for r, accuracy in enumerate([dense, *imp]):
            rows.append({"task": "sst2", "arch": "m", "run_type": "winning_ticket", "sparsity": 0.7, "round": r,
                         "sparsity_pct": 10.0 * r, "dev_accuracy": accuracy, "seed": seed})  # fmt: skip
        rows.append({"task": "sst2", "arch": "m", "run_type": "random_prune", "sparsity": 0.2, "round": 0,
                     "sparsity_pct": 0.0, "dev_accuracy": dense, "seed": seed})  # fmt: skip
        rows.append({"task": "sst2", "arch": "m", "run_type": "random_prune", "sparsity": 0.2, "round": 2,
                     "sparsity_pct": 20.0, "dev_accuracy": 80.0 + seed, "seed": seed})  # fmt: skip
    table = plotter.method_table(pd.DataFrame(rows))
    as_dict = {(m, s): (mean, n) for m, s, mean, n in table[["method", "sparsity_pct", "mean", "seeds"]].values}
    assert as_dict[("dense", 0.0)] == (89.0, 2), "dense from the tickets' round 0 only, not the baselines' copies"
    assert as_dict[("winning_ticket", 20.0)] == (pytest.approx(88.7), 2)
    assert as_dict[("random_prune", 20.0)] == (81.5, 2)
    assert ("random_prune", 0.0) not in as_dict
    # dense 89.0 +- 1.414: 89.5 and 88.7 are within, 87.0 is not
    assert plotter.matching_sparsity(table) == 20.0


def test_the_methods_figure_of_a_ticket_and_its_baselines(lth, ticket, tiny_model, tiny_glue, monkeypatch, tmp_path):  # noqa: F811
    out, _ = ticket
    for run_type in ("random_prune", "random_reinit"):
        run_baseline(lth, tiny_model, tiny_glue, out, run_type, monkeypatch)
    plotter = bert_module("plotter")
    written = plotter.main([str(out / "runs"), "--output_dir", str(tmp_path / "figures")])
    (table_csv,) = [p for p in written if p.name.endswith("_methods.csv")]
    table = pd.read_csv(table_csv)
    assert {"dense", "winning_ticket", "random_prune", "random_reinit"} <= set(table.method)
    assert set(table[table.method == "random_prune"].sparsity_pct) == {20.0}
    assert table_csv.with_suffix(".png").stat().st_size > 10_000
